"""The dependency rule: the runtime (slimseg_ros/ minus its training/engines links) imports no torch, no
training and no engines code, at module level or lazily inside a function (docs/architecture.md).

Two checks, because each misses what the other sees: an AST walk of every import statement in every runtime
file (lazy imports included, whether or not a test ever runs that branch), and a real import of every runtime
module in a fresh interpreter where torch, training and engines cannot be imported at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "slimseg_ros"
LINKS = ("training", "engines")  # committed symlinks to the top-level folders (tests/test_colcon.py)
FORBIDDEN = ("torch", "torchvision", "slimseg_ros.training", "slimseg_ros.engines", "training", "engines")

# Command-line front ends that live in the package for the `slimseg` entry point but are never imported by
# the node, its backends or policies; each entry says why it may reach the offline tools.
OFFLINE_FRONT_ENDS = {
    "demo.py": "`slimseg demo` exports a checkpoint (engines.export, training.checkpoint) before playing it",
}


def runtime_files() -> list[Path]:
    """Every .py file of the runtime, not following the training/engines links."""
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in LINKS:
            continue
        files.append(path)
    return files


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_runtime_files_are_found():
    names = {p.relative_to(PACKAGE).as_posix() for p in runtime_files()}
    assert {"node.py", "manifest.py", "backends/base.py", "backends/tensorrt/backend.py"} <= names
    assert not any(n.startswith(LINKS) for n in names)


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_runtime_module_imports_torch_training_or_engines(path):
    rel = path.relative_to(PACKAGE).as_posix()
    bad = [f"line {line}: {name}" for line, name in imported_modules(path) if _forbidden(name)]
    if rel in OFFLINE_FRONT_ENDS:
        assert bad, f"{rel} no longer reaches the offline tools: drop it from OFFLINE_FRONT_ENDS"
        return
    assert not bad, f"{rel} imports {'; '.join(bad)} (the runtime must not; see docs/architecture.md)"


def test_the_ast_walk_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: an import inside a function and a relative one are both reported."""
    sample = PACKAGE / "backends" / "_layering_sample.py"
    sample.write_text("def f():\n    import torch\n    from ...engines import export\n")
    try:
        names = [name for _, name in imported_modules(sample)]
    finally:
        sample.unlink()
    assert "torch" in names and "engines.export" in names
    assert _forbidden("torch.nn") and _forbidden("slimseg_ros.engines.bench")
    assert not _forbidden("torchaudio_x")


_BLOCKER = """
import importlib, importlib.abc, sys
FORBIDDEN = {forbidden!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            raise ImportError(f"layering: {{name}} is blocked for the runtime")
        return None

sys.meta_path.insert(0, Block())
failed = []
for module in {modules!r}:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if "layering:" in str(exc):
            failed.append(f"{{module}}: {{exc}}")
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
print("FAILED", failed)
print("LOADED", loaded)
sys.exit(1 if failed or loaded else 0)
"""


def test_every_runtime_module_imports_with_torch_training_and_engines_blocked():
    modules = [_module_name(p) for p in runtime_files()]
    code = _BLOCKER.format(forbidden=FORBIDDEN, modules=modules)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
