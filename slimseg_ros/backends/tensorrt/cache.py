"""Where the runtime keeps TensorRT plans it had to build at start: never in the manifest.

The manifest belongs to the offline tools (`slimseg build-engines` records plans there). When the backend
starts on a machine the recorded plans were not built for, it builds them into a plan cache instead: a
`.slimseg_plans/` folder beside manifest.yaml if that folder can be written, else a per-model folder in the
user's cache dir ($SLIMSEG_PLAN_CACHE, else $XDG_CACHE_HOME/slimseg/plans, else ~/.cache/slimseg/plans).
Each cache records its plans in its own index (plans.yaml), so a read-only model folder works and a later
start reuses the plans. A broken index only means the plans are rebuilt: each plan is checked by sha256.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import yaml

from slimseg_ros.manifest import Manifest, PlanRecord, match_width

CACHE_DIRNAME = ".slimseg_plans"
INDEX_NAME = "plans.yaml"
INDEX_FORMAT = "slimseg-plan-cache/1"


def user_cache_root() -> Path:
    """The user-level cache folder for plans (environment first, then the XDG default)."""
    if os.environ.get("SLIMSEG_PLAN_CACHE"):
        return Path(os.environ["SLIMSEG_PLAN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slimseg" / "plans"


def candidate_dirs(manifest: Manifest) -> list[Path]:
    """Beside the model folder first, then the user's cache (one folder per model folder)."""
    key = hashlib.sha256(str(manifest.root.resolve()).encode()).hexdigest()[:16]
    return [manifest.root / CACHE_DIRNAME, user_cache_root() / f"{manifest.root.resolve().name}-{key}"]


def _marked_read_only(directory: Path) -> bool:
    """No write bit on the folder (or its nearest existing ancestor): its owner made it read-only.

    Root could write anyway; respecting the bits keeps `chmod -w` meaningful in containers run as root.
    """
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    return existing is not None and not existing.stat().st_mode & 0o222


def _writable(directory: Path) -> bool:
    """Whether plans can be written here: not marked read-only, and a probe file can be created."""
    if _marked_read_only(directory):
        return False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe"):
            pass
    except OSError:
        return False
    return True


def _read_index(directory: Path) -> dict[float, tuple[PlanRecord, ...]]:
    index = directory / INDEX_NAME
    try:
        data = yaml.safe_load(index.read_text()) if index.is_file() else None
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
            return {}
        return {float(w): tuple(PlanRecord.parse(p, f"cached plan of width {w}", index) for p in plans)
                for w, plans in (data.get("widths") or {}).items()}
    except Exception:  # noqa: BLE001 - an unreadable index is an empty cache: plans get rebuilt
        return {}


class PlanCache:
    """The plans the runtime built for one model folder; looking creates nothing, only `record` writes."""

    def __init__(self, manifest: Manifest) -> None:
        self.dirs = candidate_dirs(manifest)
        self._plans = {d: _read_index(d) for d in self.dirs}
        self._target: Path | None = None

    def plans(self, width: float) -> list[tuple[PlanRecord, Path]]:
        """Every cached plan of a width with its file's path, beside-the-model cache first."""
        found = []
        for directory, plans in self._plans.items():
            key = match_width(width, plans)
            found += [(p, directory / p.file) for p in plans.get(key, ())] if key is not None else []
        return found

    def writable_dir(self) -> Path | None:
        """Where a new plan goes: the first candidate that can be written (tried once), or None."""
        if self._target is None:
            self._target = next((d for d in self.dirs if _writable(d)), None)
        return self._target

    def record(self, width: float, plan: PlanRecord) -> None:
        """Add a plan built into writable_dir() (replacing one for the same precision, TensorRT and GPU)."""
        directory = self.writable_dir()
        if directory is None:
            raise OSError("no writable plan cache")
        plans = self._plans[directory]
        key = match_width(width, plans)
        key = float(width) if key is None else key
        kept = tuple(p for p in plans.get(key, ())
                     if (p.precision, p.trt_version, p.gpu) != (plan.precision, plan.trt_version, plan.gpu))
        plans[key] = (*kept, plan)
        doc = {"format": INDEX_FORMAT,
               "widths": {f"{w:g}": [p.to_dict() for p in ps] for w, ps in sorted(plans.items())}}
        tmp = directory / (INDEX_NAME + ".tmp")
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        tmp.replace(directory / INDEX_NAME)
