"""ament_python package: runtime node in slimseg_ros/, trainer and engine tools under its namespace.

training/ and engines/ stay top-level folders in the repository (the project layout) and are reached as
slimseg_ros.training and slimseg_ros.engines through the committed symlinks slimseg_ros/training and
slimseg_ros/engines. One plain package tree, no package_dir mapping: `colcon build`, `colcon build
--symlink-install` (legacy `setup.py develop`), `pip install -e .` and wheels all see the same packages.
See docs/architecture.md ("Packaging").
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "slimseg_ros"

# What each kind of install needs; the ROS wheels are for venv users, a sourced ROS 2 install gives the same.
RUNTIME = ["numpy", "opencv-python-headless", "pyyaml", "onnxruntime>=1.18"]
ROS = ["ros-rclpy", "ros-rmw-fastrtps-cpp", "ros-sensor-msgs", "ros-std-msgs", "ros-std-srvs",
       "ros-diagnostic-msgs"]

setup(
    name=PACKAGE,
    version="0.1.0",
    # find_packages follows the symlinks, so slimseg_ros.training / slimseg_ros.engines are found here
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={f"{PACKAGE}.training": ["configs/*.yaml"], PACKAGE: ["demo_frames/*", "demo_frames/*/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "opencv-python-headless", "pyyaml"],
    extras_require={
        "runtime": RUNTIME,
        "ros": ROS,
        "train": ["torch>=2.4", "albumentations>=2.0", "safetensors>=0.4", "tqdm", "pyyaml"],
        "export": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript"],
        "tensorrt": ["tensorrt>=10.0", "pycuda"],
        "demo": ["rich", "matplotlib", "imageio-ffmpeg"],
        # rosbag2 in and out without a ROS install (slimseg demo --bag/--record, slimseg record)
        "bag": ["rosbags>=0.10", "mcap-ros2-support"],
        "test": ["pytest", "ruff"],
    },
    zip_safe=True,
    maintainer="slimseg_ros maintainers",
    maintainer_email="slimseg@example.org",
    description="Slimmable semantic segmentation for ROS 2: one network, width chosen at run time.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "slimseg = slimseg_ros.cli:main",
            "slimseg_node = slimseg_ros.node_entry:main",
        ],
    },
)
