"""One module per width policy (fixed, battery, fps, budget) and their shared base; the registry that builds
them by name is slimseg_ros/policy.py."""
