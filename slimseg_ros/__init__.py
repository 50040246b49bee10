"""slimseg_ros: slimmable semantic segmentation for ROS 2 (runtime side imports no torch)."""
