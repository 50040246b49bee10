"""ament_python package: runtime node in slimseg_ros/, trainer and engine tools mapped under its namespace.

training/ and engines/ stay top-level folders in the repository (the project layout) but install as
slimseg_ros.training and slimseg_ros.engines, so nothing generic lands at the top of site-packages.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "slimseg_ros"
MAPPED = ("training", "engines")  # repository folders installed under the package namespace

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE, *(f"{PACKAGE}.{p}" for p in find_packages(include=["backends*"], where=PACKAGE))]
    + [f"{PACKAGE}.{p}" for top in MAPPED for p in find_packages(where=".", include=[top, f"{top}.*"])],
    package_dir={PACKAGE: PACKAGE, **{f"{PACKAGE}.{top}": top for top in MAPPED}},
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
        "train": ["torch>=2.4", "albumentations>=2.0", "safetensors>=0.4", "tqdm", "pyyaml"],
        "export": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript"],
        "tensorrt": ["tensorrt>=10.0", "pycuda"],
        "demo": ["rich", "matplotlib"],
        "test": ["pytest", "ruff"],
    },
    zip_safe=True,
    maintainer="slimseg_ros maintainers",
    maintainer_email="slimseg@example.org",
    description="Slimmable semantic segmentation for ROS 2: one network, width chosen at run time.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "slimseg = slimseg_ros.cli:main",
            "slimseg_node = slimseg_ros.node:main",
        ],
    },
)
