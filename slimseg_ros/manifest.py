"""Read, write and validate the per-width deployment manifest (the only file the node needs to read).

The manifest is the contract between the offline tools (which write it) and the backends and node (which
read it). It is parsed once, at load, into frozen dataclasses, so a bad file fails with one sentence naming
the file instead of a KeyError deep inside a backend, and no reader pokes at a raw dict. Each section has
one writer: `slimseg export` creates the manifest (`Manifest.from_sections`; `--int8 auto` adds
`record_precision` and `record_export`), `slimseg build-engines` records plans (`record_plan`), `slimseg
bench` records latency (`record_latency`). The runtime never writes it (TensorRT plans built at start go
to a plan cache, see backends/tensorrt/cache.py).

Paths inside are relative to the manifest's folder so an export folder can be copied to a robot as a whole;
graph and plan files must stay inside that folder (`file_path`), see docs/node.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slimseg_ros.errors import SlimsegError

FORMAT = "slimseg-manifest/1"
MANIFEST_NAME = "manifest.yaml"

# Post-processing modes of the deployed graph (engines/onnx_graph.py implements them, export offers them).
POSTPROCESS_MODES = ("fast", "quarter", "exact")
DEFAULT_POSTPROCESS = "quarter"  # within 0.15 mIoU point of exact on CamVid val; fast lost up to 1 point
LEGACY_POSTPROCESS = "fast"  # what a manifest without the key was exported with

# Numeric precision an exported width's graph runs in (written by `export --int8 auto`).
WIDTH_PRECISIONS = ("fp32", "int8")

WIDTH_TOL = 1e-6  # widths are fractions like 0.25; anything closer than this is the same width


def same_width(a: float, b: float) -> bool:
    """The one width equality of the package (floats from YAML, ROS parameters and model configs)."""
    return abs(float(a) - float(b)) < WIDTH_TOL


def match_width(width: float, widths: Iterable[float]) -> float | None:
    """The member of `widths` equal to `width` (see same_width), or None."""
    return next((w for w in widths if same_width(w, width)), None)


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


def _drop_none(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


# --- the sections ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileRef:
    """A file next to the manifest and the sha256 it must have (None: existence only)."""

    file: str
    sha256: str | None = None

    @classmethod
    def parse(cls, ref: Any, what: str, path: Path | None) -> FileRef:
        if not isinstance(ref, dict) or not isinstance(ref.get("file"), str) or not ref["file"]:
            raise _fail(path, f"{what} needs a mapping with a non-empty 'file'")
        sha = ref.get("sha256")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
            raise _fail(path, f"{what} sha256 must be a 64-character hex string")
        return cls(ref["file"], sha)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256}


@dataclass(frozen=True)
class PlanRecord:
    """A TensorRT plan: valid only for the TensorRT version and GPU it was built with (tensorrt/compat.py)."""

    file: str
    sha256: str | None = None
    precision: str | None = None
    trt_version: str | None = None
    gpu: str | None = None
    compute_capability: str | None = None
    workspace_mb: int | None = None
    built: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()  # keys this version does not know, kept for round trips

    @classmethod
    def parse(cls, ref: Any, what: str, path: Path | None) -> PlanRecord:
        base = FileRef.parse(ref, what, path)
        text = {k: None if ref.get(k) is None else str(ref[k])
                for k in ("precision", "trt_version", "gpu", "compute_capability", "built")}
        mb = ref.get("workspace_mb")
        if mb is not None and (not isinstance(mb, int) or isinstance(mb, bool)):
            raise _fail(path, f"{what} workspace_mb must be an integer")
        known = {f.name for f in dataclasses.fields(cls)}
        extra = tuple((k, v) for k, v in ref.items() if k not in known)
        return cls(base.file, base.sha256, workspace_mb=mb, extra=extra, **text)

    def to_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return _drop_none(fields) | {"sha256": self.sha256} | dict(self.extra)


@dataclass(frozen=True)
class LatencyRecord:
    """One benchmark result of one width on one backend (`slimseg bench --update-manifest`, the demo)."""

    p50_ms: float
    p95_ms: float | None = None
    fps: float | None = None
    ms_per_gflop: float | None = None
    frames: int | None = None
    threads: int | None = None
    machine: str | None = None
    date: str | None = None
    source: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not know

    @classmethod
    def parse(cls, record: Any, what: str, path: Path | None) -> LatencyRecord:
        if not isinstance(record, dict) or not isinstance(record.get("p50_ms"), (int, float)) \
                or isinstance(record.get("p50_ms"), bool):
            raise _fail(path, f"{what} needs a numeric p50_ms")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in record.items() if k in names},
                   extra={k: v for k, v in record.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return _drop_none(fields) | dict(self.extra)


@dataclass(frozen=True)
class ClassInfo:
    """One class: id (its label value), name and RGB colour."""

    id: int
    name: str
    color: tuple[int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "color": list(self.color)}


@dataclass(frozen=True)
class WidthEntry:
    """Everything recorded about one width; `extra` keeps keys this version does not know, for round trips."""

    width: float
    onnx: FileRef | None = None
    engines: tuple[PlanRecord, ...] = ()
    flops: float | None = None
    params: int | None = None
    accuracy: Mapping[str, Any] | None = None
    latency: Mapping[str, LatencyRecord] = field(default_factory=dict)
    precision: str | None = None
    precision_reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, entry: Any, path: Path | None) -> WidthEntry:
        w = entry.get("width") if isinstance(entry, dict) else None
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not (0.0 < float(w) <= 1.0):
            raise _fail(path, f"each widths[] entry needs a width in (0, 1], got {w!r}")
        if "onnx" not in entry and not entry.get("engines"):
            raise _fail(path, f"width {w} has neither an 'onnx' file nor 'engines'")
        onnx = FileRef.parse(entry["onnx"], f"width {w} onnx", path) if "onnx" in entry else None
        engines = entry.get("engines") or []
        if not isinstance(engines, list):
            raise _fail(path, f"width {w} engines must be a list")
        latency = entry.get("latency") or {}
        if not isinstance(latency, dict):
            raise _fail(path, f"width {w} latency must be a mapping backend -> record")
        accuracy = entry.get("accuracy")
        if accuracy is not None and not isinstance(accuracy, dict):
            raise _fail(path, f"width {w} accuracy must be a mapping")
        for key in ("flops", "params"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise _fail(path, f"width {w} {key} must be a number, got {value!r}")
        precision = entry.get("precision")
        if precision is not None and precision not in WIDTH_PRECISIONS:
            raise _fail(path, f"width {w} precision must be one of {WIDTH_PRECISIONS}, got {precision!r}")
        reason = entry.get("precision_reason")
        if reason is not None and not isinstance(reason, str):
            raise _fail(path, f"width {w} precision_reason must be a string")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            width=float(w), onnx=onnx,
            engines=tuple(PlanRecord.parse(p, f"width {w} engine", path) for p in engines),
            flops=None if entry.get("flops") is None else float(entry["flops"]),
            params=None if entry.get("params") is None else int(entry["params"]),
            accuracy=accuracy,
            latency={str(b): LatencyRecord.parse(r, f"width {w} latency.{b}", path)
                     for b, r in latency.items()},
            precision=precision, precision_reason=reason,
            extra={k: v for k, v in entry.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"width": self.width}
        if self.onnx is not None:
            out["onnx"] = self.onnx.to_dict()
        if self.engines:
            out["engines"] = [p.to_dict() for p in self.engines]
        out.update(_drop_none({"flops": self.flops, "params": self.params,
                               "accuracy": dict(self.accuracy) if self.accuracy is not None else None,
                               "precision": self.precision, "precision_reason": self.precision_reason}))
        if self.latency:
            out["latency"] = {b: r.to_dict() for b, r in self.latency.items()}
        return out | dict(self.extra)


def _parse_classes(classes: Any, path: Path | None) -> tuple[ClassInfo, ...]:
    if not isinstance(classes, list) or not classes:
        raise _fail(path, "'classes' must be a non-empty list")
    out = []
    for i, cls in enumerate(classes):
        if not isinstance(cls, dict) or cls.get("id") != i or not isinstance(cls.get("name"), str):
            raise _fail(path, f"classes[{i}] must have id {i} and a name")
        color = cls.get("color")
        if not (isinstance(color, list) and len(color) == 3
                and all(isinstance(c, int) and not isinstance(c, bool) for c in color)):
            raise _fail(path, f"classes[{i}].color must be a list of 3 integers (RGB)")
        out.append(ClassInfo(i, cls["name"], (color[0], color[1], color[2])))
    return tuple(out)


def _parse_input(inp: Any, path: Path | None) -> tuple[int, int]:
    if not isinstance(inp, dict):
        raise _fail(path, "missing 'input' mapping")
    for key in ("height", "width"):
        if not isinstance(inp.get(key), int) or isinstance(inp.get(key), bool) or inp[key] <= 0:
            raise _fail(path, f"input.{key} must be a positive integer, got {inp.get(key)!r}")
    expected = {"encoding": "rgb8", "layout": "NHWC", "dtype": "uint8"}
    for key, value in expected.items():
        if inp.get(key, value) != value:
            raise _fail(path, f"input.{key} is {inp.get(key)!r}; only {value!r} is supported")
    return inp["height"], inp["width"]


def _parse_normalization(norm: Any, path: Path | None) -> tuple[list[float], list[float]] | None:
    """(mean, std) on the 0-255 scale as baked into the graphs, or None if the manifest omits them."""
    if not norm:
        return None
    ok = isinstance(norm, dict) and all(
        isinstance(norm.get(k), list) and len(norm[k]) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in norm[k])
        for k in ("mean", "std"))
    if not ok:
        raise _fail(path, "normalization needs 'mean' and 'std' lists of 3 numbers")
    return [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]


def _parse_model(model: Any, path: Path | None) -> dict[str, Any]:
    if model is None:
        return {}
    if not isinstance(model, dict):
        raise _fail(path, "'model' must be a mapping")
    for key in ("checkpoint", "checkpoint_sha256", "arch"):
        if model.get(key) is not None and not isinstance(model[key], str):
            raise _fail(path, f"model.{key} must be a string")
    return dict(model)


_TYPED = frozenset({"format", "model", "input", "normalization", "postprocess", "classes", "ignore_index",
                    "widths"})


def validate(data: Any, path: Path | None = None) -> None:
    """Check the schema of a manifest mapping; raise SlimsegError naming the first problem found."""
    Manifest(data, Path("."), path=path)


class Manifest:
    """A validated, typed manifest plus the folder its relative paths are resolved against.

    Sections are frozen; the writers below replace a width's entry, they never edit one in place.
    """

    def __init__(self, data: Any, root: str | Path, path: Path | None = None) -> None:
        if not isinstance(data, dict):
            raise _fail(path, "top level must be a mapping")
        if data.get("format") != FORMAT:
            raise _fail(path, f"format is {data.get('format')!r}, expected {FORMAT!r}")
        self.input_size: tuple[int, int] = _parse_input(data.get("input"), path)
        self.classes: tuple[ClassInfo, ...] = _parse_classes(data.get("classes"), path)
        if not isinstance(data.get("ignore_index"), int) or isinstance(data.get("ignore_index"), bool):
            raise _fail(path, "'ignore_index' must be an integer")
        self.ignore_index: int = data["ignore_index"]
        self.postprocess: str = data.get("postprocess", LEGACY_POSTPROCESS)
        if self.postprocess not in POSTPROCESS_MODES:
            raise _fail(path, f"postprocess must be one of {POSTPROCESS_MODES}, got {self.postprocess!r}")
        self.normalization = _parse_normalization(data.get("normalization"), path)
        self.model: Mapping[str, Any] = _parse_model(data.get("model"), path)
        widths = data.get("widths")
        if not isinstance(widths, list) or not widths:
            raise _fail(path, "'widths' must be a non-empty list")
        entries: list[WidthEntry] = []
        for raw in widths:
            entry = WidthEntry.parse(raw, path)
            if match_width(entry.width, (e.width for e in entries)) is not None:
                raise _fail(path, f"width {entry.width:g} is listed twice")
            entries.append(entry)
        self._entries = entries
        self._input = dict(data["input"])
        self._raw_normalization = data.get("normalization")
        self._order = list(data)  # top-level keys in the order written, so a round trip changes nothing
        self._sections = {k: v for k, v in data.items() if k not in _TYPED}
        self.root = Path(root)
        self.path = path

    # --- loading: the one boundary between a file on disk and a Manifest --------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Load and validate; a folder means the manifest.yaml inside it. Any failure is a SlimsegError."""
        path = Path(path)
        try:
            if path.is_dir():
                path = path / MANIFEST_NAME
            if not path.is_file():
                raise SlimsegError(f"manifest not found: {path}",
                                   "pass the manifest.yaml written by `slimseg export`")
            try:
                data = yaml.safe_load(path.read_bytes().decode("utf-8"))
            except yaml.YAMLError as exc:
                raise SlimsegError(f"manifest {path} is not valid YAML: {exc}",
                                   "re-run `slimseg export`") from exc
            return cls(data, path.parent, path=path)
        except SlimsegError:
            raise
        except Exception as exc:  # noqa: BLE001 - binary files, deep nesting, odd types: all one clean error
            raise SlimsegError(f"manifest {path} is unreadable: {type(exc).__name__}: {str(exc)[:200]}",
                               "pass the manifest.yaml written by `slimseg export`") from exc

    @classmethod
    def from_sections(cls, sections: dict[str, Any], entries: list[WidthEntry], root: str | Path) -> Manifest:
        """A new manifest from export's top-level sections and its width entries (the creator)."""
        data = {"format": FORMAT, **sections, "widths": [e.to_dict() for e in entries]}
        return cls(data, root)

    def to_dict(self) -> dict[str, Any]:
        """The YAML document, keys in the order they were read (export's order for a new manifest)."""
        typed = {"format": FORMAT, "model": dict(self.model), "input": dict(self._input),
                 "normalization": self._raw_normalization, "postprocess": self.postprocess,
                 "classes": [c.to_dict() for c in self.classes], "ignore_index": self.ignore_index,
                 "widths": [e.to_dict() for e in self._entries]}
        return {k: typed[k] if k in _TYPED else self._sections[k] for k in self._order}

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically (temp file + rename) so a reader never sees half a manifest (offline tools)."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise SlimsegError("manifest has no path to save to", "pass a path to save()")
        if path.is_dir():
            path = path / MANIFEST_NAME
        data = self.to_dict()
        Manifest(data, path.parent, path=path)  # what is written must load again
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110))
        tmp.replace(path)
        self.path = path
        self.root = path.parent
        return path

    def copy(self, root: str | Path | None = None) -> Manifest:
        """An independent manifest (e.g. for a variant written elsewhere); the original is untouched."""
        other = Manifest(self.to_dict(), self.root if root is None else root, path=self.path)
        return other

    # --- read accessors -------------------------------------------------------------------------------
    @property
    def widths(self) -> list[float]:
        """All widths the manifest lists, ascending."""
        return sorted(e.width for e in self._entries)

    def _index(self, width: float) -> int:
        for i, e in enumerate(self._entries):
            if same_width(e.width, width):
                return i
        known = ", ".join(f"{w:g}" for w in self.widths)
        raise SlimsegError(f"width {width} is not in the manifest", f"known widths: {known}")

    def entry(self, width: float) -> WidthEntry:
        """The (frozen) entry of one width; SlimsegError naming the known widths if absent."""
        return self._entries[self._index(width)]

    def resolve(self, relpath: str | Path) -> Path:
        """Path of a file named relative to the manifest's folder (absolute paths are kept as given)."""
        p = Path(relpath)
        return p if p.is_absolute() else self.root / p

    def file_path(self, relpath: str) -> Path:
        """Path of a graph or plan file, which must lie inside the manifest's folder (see docs/node.md)."""
        p = Path(relpath)
        if p.is_absolute() or os.path.normpath(relpath).split(os.sep)[0] == os.pardir:
            where = self.path or self.root
            raise SlimsegError(f"{relpath!r} in {where} points outside the manifest's folder",
                               "model files must sit beside manifest.yaml; re-run `slimseg export`")
        return self.root / p

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        return [c.color for c in self.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_table(self) -> list[dict[str, Any]]:
        """The classes as plain mappings (id, name, color), for JSON messages and reports."""
        return [c.to_dict() for c in self.classes]

    @property
    def model_name(self) -> str:
        """A short name for reports: the checkpoint's stem, else the architecture."""
        ckpt = self.model.get("checkpoint") or ""
        return Path(ckpt).stem or str(self.model.get("arch", "model"))

    def flops(self, width: float) -> float | None:
        return self.entry(width).flops

    def precision(self, width: float) -> str:
        """fp32 or int8: the precision of the width's ONNX graph (fp32 when export recorded none)."""
        return self.entry(width).precision or "fp32"

    def latency_ms(self, width: float, backend: str) -> float | None:
        """Median latency `slimseg bench` recorded for this width on this backend, if any."""
        record = self.entry(width).latency.get(backend)
        return record.p50_ms if record else None

    def onnx_path(self, width: float) -> Path | None:
        ref = self.entry(width).onnx
        return self.file_path(ref.file) if ref else None

    def checkpoint_path(self) -> Path | None:
        """The checkpoint the ONNX files were exported from (offline torch backend; may lie outside)."""
        ckpt = self.model.get("checkpoint")
        return self.resolve(ckpt) if ckpt else None

    @property
    def checkpoint_sha256(self) -> str | None:
        return self.model.get("checkpoint_sha256")

    def verify(self, width: float, kind: str = "onnx") -> Path:
        """Path of a width's ONNX file after checking it exists and matches its sha256."""
        ref = self.entry(width).onnx if kind == "onnx" else None
        if not ref:
            raise SlimsegError(f"width {width:g} has no {kind} file in the manifest",
                               "re-run `slimseg export`")
        path = self.file_path(ref.file)
        verify_file(path, ref.sha256)
        return path

    # --- the writers (offline tools only; one per section) -------------------------------------------------
    def _replace(self, width: float, **changes: Any) -> None:
        i = self._index(width)
        self._entries[i] = dataclasses.replace(self._entries[i], **changes)

    def record_latency(self, width: float, backend: str, record: LatencyRecord) -> None:
        """`slimseg bench` (and the demo's quick timing): one result per width and backend, newest wins."""
        self._replace(width, latency={**self.entry(width).latency, backend: record})

    def record_plan(self, width: float, plan: PlanRecord) -> None:
        """`slimseg build-engines`: a plan with the same precision, TRT version and GPU is replaced."""
        key = ("precision", "trt_version", "gpu")
        kept = tuple(p for p in self.entry(width).engines
                     if any(getattr(p, k) != getattr(plan, k) for k in key))
        self._replace(width, engines=(*kept, plan))

    def record_precision(self, width: float, precision: str, reason: str,
                         onnx: FileRef | None = None) -> None:
        """`slimseg export --int8 auto`: the precision kept for a width, why, and its graph if it changed."""
        if precision not in WIDTH_PRECISIONS:
            raise SlimsegError(f"precision {precision!r} is not one of {WIDTH_PRECISIONS}", "fix the caller")
        changes: dict[str, Any] = {"precision": precision, "precision_reason": reason}
        if onnx is not None:
            changes["onnx"] = onnx
        self._replace(width, **changes)

    def record_export(self, key: str, settings: Mapping[str, Any]) -> None:
        """`slimseg export --int8 auto`: how an export step ran, kept as `export.<key>` for the record."""
        section = dict(self._sections.get("export") or {})
        section[key] = dict(settings)
        if "export" not in self._order:
            self._order.insert(self._order.index("widths") if "widths" in self._order else 0, "export")
        self._sections["export"] = section

    def section(self, name: str) -> Any:
        """An untyped top-level section (e.g. `export`, written for the record only), or None."""
        return self._sections.get(name)

    def with_graphs(self, postprocess: str, graphs: Mapping[float, FileRef], root: str | Path) -> Manifest:
        """A copy whose widths use other graphs (export's post-processing comparison), rooted elsewhere."""
        data = self.to_dict()
        data["postprocess"] = postprocess
        for entry in data["widths"]:
            key = match_width(entry["width"], graphs)
            if key is None:
                raise SlimsegError(f"no graph for width {entry['width']:g}", "pass one per width")
            entry["onnx"] = graphs[key].to_dict()
            entry.pop("engines", None)
        return Manifest(data, root)
