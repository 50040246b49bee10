"""All TensorRT runtime code in one place: the backend, its CUDA buffers, the plan-compatibility rule, the
plan builder it may call at start, and the plan cache it writes instead of the manifest.

Only compat.py and cache.py are plain Python; the rest imports tensorrt and pycuda when a backend or a build
starts. The offline CLI (`slimseg build-engines`) is engines/tensorrt_build.py and calls into here.
"""
