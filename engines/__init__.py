"""Per-width export, TensorRT engine builds and benchmarks. Installed as slimseg_ros.engines."""
