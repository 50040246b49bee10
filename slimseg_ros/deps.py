"""What to install when an optional dependency is missing, said in one line instead of a traceback.

The package installs in parts (runtime, ROS, train, export, demo; see setup.py's extras), and a robot often
has only some of them. Entry points check what they need up front, before any slow work, and name the
package or extra that brings each missing module.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from slimseg_ros.errors import SlimsegError

_ROS = "source your ROS 2 setup.bash, or in a venv `pip install 'slimseg_ros[ros]'`"
_RUNTIME = "`pip install 'slimseg_ros[runtime]'`"

# importable module -> how to get it
INSTALL: dict[str, str] = {
    **dict.fromkeys(("rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "rcl_interfaces",
                     "builtin_interfaces", "lifecycle_msgs"), _ROS),
    "onnxruntime": "`pip install onnxruntime` (or onnxruntime-gpu), or " + _RUNTIME,
    "numpy": _RUNTIME,
    "cv2": _RUNTIME + " (opencv-python-headless)",
    "yaml": _RUNTIME + " (pyyaml)",
    **dict.fromkeys(("torch", "safetensors", "albumentations", "tqdm"), "`pip install 'slimseg_ros[train]'`"),
    **dict.fromkeys(("onnx", "onnxscript"), "`pip install 'slimseg_ros[export]'`"),
    **dict.fromkeys(("tensorrt", "pycuda"), "TensorRT from JetPack / NVIDIA, or `pip install "
                    "'slimseg_ros[tensorrt]'`"),
    **dict.fromkeys(("rich", "matplotlib", "PIL"), "`pip install 'slimseg_ros[demo]'`"),
    **dict.fromkeys(("rosbags", "mcap", "mcap_ros2"), "`pip install 'slimseg_ros[bag]'`"),
}

# modules any of which lets the node run a model (see slimseg_ros.backends)
BACKEND_MODULES = ("onnxruntime", "tensorrt", "torch")


def install_hint(module: str) -> str:
    """How to install `module` (its top-level name is looked up)."""
    top = module.split(".")[0]
    return INSTALL.get(top, f"`pip install {top}`")


def missing(modules: Iterable[str]) -> list[str]:
    """The modules of `modules` that cannot be found, without importing them (cheap, no side effects)."""
    gone = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package is missing or broken
            found = False
        if not found:
            gone.append(name)
    return gone


def missing_message(modules: Iterable[str]) -> str:
    """'not installed: a, b (how); c (how)': every module, grouped by how to install it, on one line."""
    by_hint: dict[str, list[str]] = {}
    for name in modules:
        by_hint.setdefault(install_hint(name), []).append(name)
    return "not installed: " + "; ".join(f"{', '.join(names)} ({hint})" for hint, names in by_hint.items())


def import_error_message(exc: ImportError) -> str:
    """One line for an ImportError: what is missing and how to install it, or why an installed one failed."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return missing_message([exc.name])
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    name = exc.name or ""
    hint = install_hint(name) if name else _ROS
    return f"a dependency failed to load ({first}); check the install: {hint}"


def require(modules: Iterable[str]) -> None:
    """Raise one SlimsegError naming every missing module of `modules` and how to install it."""
    gone = missing(modules)
    if gone:
        raise SlimsegError(missing_message(gone))


def backend_modules(backend: str) -> list[str]:
    """Modules a backend name needs ("auto" is satisfied by any of BACKEND_MODULES, checked separately)."""
    if backend.startswith("onnxruntime"):
        return ["onnxruntime"]
    if backend.startswith("torch"):
        return ["torch"]
    if backend == "tensorrt":
        return ["tensorrt", "pycuda"]
    return []


def require_backend(backend: str) -> None:
    """Raise when the named backend (or, for "auto", every backend) cannot be imported."""
    if backend == "auto":
        if len(missing(BACKEND_MODULES)) == len(BACKEND_MODULES):
            raise SlimsegError(f"no inference backend is installed ({', '.join(BACKEND_MODULES)}); "
                               f"the CPU one: {install_hint('onnxruntime')}")
        return
    require(backend_modules(backend))
