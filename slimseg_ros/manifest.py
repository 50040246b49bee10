"""Read, write and validate the per-width deployment manifest (the only file the node needs to read).

The manifest is the contract between export/build/bench (which write it) and the backends and node (which
read it). Validation happens once at load so that a bad file fails with one clear sentence instead of a
KeyError deep inside a backend. Paths inside are relative to the manifest's folder so an export folder can
be copied to a robot as a whole.
"""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path
from typing import Any

import yaml

from slimseg_ros.errors import SlimsegError

FORMAT = "slimseg-manifest/1"
MANIFEST_NAME = "manifest.yaml"
POSTPROCESS_MODES = ("fast", "quarter", "exact")
PRECISIONS = ("fp32", "int8")  # a width's optional `precision` (and `precision_reason`), from export --int8
_WIDTH_TOL = 1e-6


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed so large engine plans do not have to fit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | Path, sha256: str | None) -> None:
    """Raise SlimsegError if a model file is missing or differs from what the manifest recorded."""
    path = Path(path)
    if not path.is_file():
        raise SlimsegError(f"file not found: {path}",
                           "re-run `slimseg export` or copy the whole export folder")
    if sha256 is None:
        return
    actual = sha256_file(path)
    if actual != sha256:
        raise SlimsegError(
            f"sha256 mismatch for {path}: manifest says {sha256[:12]}..., file is {actual[:12]}...",
            "the file is corrupt or was replaced; re-export it or rebuild the engine",
        )


def _fail(path: Path | None, problem: str) -> SlimsegError:
    where = str(path) if path else "manifest"
    return SlimsegError(f"invalid manifest {where}: {problem}",
                        "re-run `slimseg export` to write a valid one")


def _check_file_ref(ref: Any, what: str, path: Path | None) -> None:
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str) or not ref["file"]:
        raise _fail(path, f"{what} needs a mapping with a non-empty 'file'")
    if ref.get("sha256") is not None and not (isinstance(ref["sha256"], str) and len(ref["sha256"]) == 64):
        raise _fail(path, f"{what} sha256 must be a 64-character hex string")


def validate(data: Any, path: Path | None = None) -> None:
    """Check the schema of a manifest mapping; raise SlimsegError naming the first problem found."""
    if not isinstance(data, dict):
        raise _fail(path, "top level must be a mapping")
    if data.get("format") != FORMAT:
        raise _fail(path, f"format is {data.get('format')!r}, expected {FORMAT!r}")
    inp = data.get("input")
    if not isinstance(inp, dict):
        raise _fail(path, "missing 'input' mapping")
    for key in ("height", "width"):
        if not isinstance(inp.get(key), int) or inp[key] <= 0:
            raise _fail(path, f"input.{key} must be a positive integer, got {inp.get(key)!r}")
    expected = {"encoding": "rgb8", "layout": "NHWC", "dtype": "uint8"}
    for key, value in expected.items():
        if inp.get(key, value) != value:
            raise _fail(path, f"input.{key} is {inp.get(key)!r}; only {value!r} is supported")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes:
        raise _fail(path, "'classes' must be a non-empty list")
    for i, cls in enumerate(classes):
        if not isinstance(cls, dict) or cls.get("id") != i or not isinstance(cls.get("name"), str):
            raise _fail(path, f"classes[{i}] must have id {i} and a name")
        color = cls.get("color")
        if not (isinstance(color, list) and len(color) == 3 and all(isinstance(c, int) for c in color)):
            raise _fail(path, f"classes[{i}].color must be a list of 3 integers (RGB)")
    if not isinstance(data.get("ignore_index"), int):
        raise _fail(path, "'ignore_index' must be an integer")
    if data.get("postprocess", "fast") not in POSTPROCESS_MODES:
        raise _fail(path, f"postprocess must be one of {POSTPROCESS_MODES}, got {data.get('postprocess')!r}")
    widths = data.get("widths")
    if not isinstance(widths, list) or not widths:
        raise _fail(path, "'widths' must be a non-empty list")
    seen: list[float] = []
    for entry in widths:
        w = entry.get("width") if isinstance(entry, dict) else None
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not (0.0 < float(w) <= 1.0):
            raise _fail(path, f"each widths[] entry needs a width in (0, 1], got {w!r}")
        if any(abs(float(w) - s) < _WIDTH_TOL for s in seen):
            raise _fail(path, f"width {w} is listed twice")
        seen.append(float(w))
        if "onnx" not in entry and not entry.get("engines"):
            raise _fail(path, f"width {w} has neither an 'onnx' file nor 'engines'")
        if "onnx" in entry:
            _check_file_ref(entry["onnx"], f"width {w} onnx", path)
        if entry.get("precision", "fp32") not in PRECISIONS:
            raise _fail(path, f"width {w} precision is {entry['precision']!r}, expected one of {PRECISIONS}")
        engines = entry.get("engines", [])
        if not isinstance(engines, list):
            raise _fail(path, f"width {w} engines must be a list")
        for plan in engines:
            _check_file_ref(plan, f"width {w} engine", path)


class Manifest:
    """A validated manifest plus the folder its relative paths are resolved against."""

    def __init__(self, data: dict[str, Any], root: str | Path) -> None:
        validate(data)
        self.data = data
        self.root = Path(root)
        self.path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Load and validate; a folder means the manifest.yaml inside it."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise SlimsegError(f"manifest not found: {path}",
                               "pass the manifest.yaml written by `slimseg export`")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SlimsegError(f"manifest {path} is not valid YAML: {exc}",
                               "re-run `slimseg export`") from exc
        validate(data, path)
        manifest = cls(data, path.parent)
        manifest.path = path
        return manifest

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically (temp file + rename) so a reader never sees half a manifest."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise SlimsegError("manifest has no path to save to", "pass a path to save()")
        if path.is_dir():
            path = path / MANIFEST_NAME
        validate(self.data, path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(self.data, sort_keys=False, default_flow_style=None, width=110))
        tmp.replace(path)
        self.path = path
        self.root = path.parent
        return path

    # --- read accessors -------------------------------------------------------------------------------
    @property
    def widths(self) -> list[float]:
        """All widths the manifest lists, ascending."""
        return sorted(float(e["width"]) for e in self.data["widths"])

    def entry(self, width: float) -> dict[str, Any]:
        """The mutable entry of one width; SlimsegError naming the known widths if absent."""
        for e in self.data["widths"]:
            if math.isclose(float(e["width"]), float(width), abs_tol=_WIDTH_TOL):
                return e
        known = ", ".join(f"{w:g}" for w in self.widths)
        raise SlimsegError(f"width {width} is not in the manifest", f"known widths: {known}")

    def resolve(self, relpath: str | Path) -> Path:
        """Path of a file named in the manifest (relative to the manifest's folder unless absolute)."""
        p = Path(relpath)
        return p if p.is_absolute() else self.root / p

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the exported graphs take."""
        return int(self.data["input"]["height"]), int(self.data["input"]["width"])

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.data["classes"]]

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        return [tuple(c["color"]) for c in self.data["classes"]]

    @property
    def num_classes(self) -> int:
        return len(self.data["classes"])

    @property
    def ignore_index(self) -> int:
        return int(self.data["ignore_index"])

    @property
    def postprocess(self) -> str:
        return str(self.data.get("postprocess", "fast"))

    @property
    def normalization(self) -> tuple[list[float], list[float]] | None:
        """(mean, std) on the 0-255 scale as baked into the graphs, or None if the manifest omits them."""
        norm = self.data.get("normalization")
        if not norm:
            return None
        return [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]

    def precision(self, width: float) -> str:
        """fp32 or int8: the precision of the width's ONNX graph (`slimseg export --int8 auto` decides)."""
        return str(self.entry(width).get("precision", "fp32"))

    def onnx_path(self, width: float) -> Path | None:
        ref = self.entry(width).get("onnx")
        return self.resolve(ref["file"]) if ref else None

    def checkpoint_path(self) -> Path | None:
        """The checkpoint the ONNX files were exported from (used by the PyTorch backend)."""
        ckpt = (self.data.get("model") or {}).get("checkpoint")
        return self.resolve(ckpt) if ckpt else None

    def verify(self, width: float, kind: str = "onnx") -> Path:
        """Path of a width's ONNX file after checking it exists and matches its sha256."""
        ref = self.entry(width).get(kind)
        if not ref:
            raise SlimsegError(f"width {width:g} has no {kind} file in the manifest",
                               "re-run `slimseg export`")
        path = self.resolve(ref["file"])
        verify_file(path, ref.get("sha256"))
        return path

    # --- write helpers (export, build-engines, bench) -------------------------------------------------
    def set_latency(self, width: float, backend: str, record: dict[str, Any]) -> None:
        """Record a benchmark result for one width and backend (replacing an older one)."""
        self.entry(width).setdefault("latency", {})[backend] = dict(record)

    def set_engine(self, width: float, record: dict[str, Any]) -> None:
        """Record a TensorRT plan; a plan with the same precision, TRT version and GPU is replaced."""
        engines = self.entry(width).setdefault("engines", [])
        key = ("precision", "trt_version", "gpu")
        engines[:] = [e for e in engines if any(e.get(k) != record.get(k) for k in key)]
        engines.append(dict(record))

    def copy(self) -> Manifest:
        other = Manifest(copy.deepcopy(self.data), self.root)
        other.path = self.path
        return other
