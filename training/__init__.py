"""Offline trainer for the slimmable network (PyTorch). Installed as slimseg_ros.training."""
