"""Labelled / unlabelled partitions of a training split for semi-supervised runs (MGD).

A partition must be reproducible (same seed -> same files, on any machine) and auditable (the lists are
saved with the run), so every arm of a comparison trains on exactly the same labelled images. The order is a
seeded permutation of the sorted stems and the labelled set is its prefix, so for one seed the 1/16 set is
inside the 1/8 set, which is inside the 1/4 set: smaller fractions never see labels the larger ones lack.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from slimseg_ros.errors import SlimsegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ALLOWED_FRACTIONS = (Fraction(1, 16), Fraction(1, 8), Fraction(1, 4), Fraction(1, 2), Fraction(1, 1))


@dataclass(frozen=True)
class Partition:
    """Stems with labels used, stems used without labels, and how they were drawn."""

    labeled: tuple[str, ...]
    unlabeled: tuple[str, ...]
    fraction: Fraction
    seed: int

    def to_dict(self) -> dict:
        """JSON-friendly record saved next to the run's checkpoints."""
        return {
            "fraction": f"{self.fraction.numerator}/{self.fraction.denominator}",
            "seed": self.seed,
            "num_labeled": len(self.labeled),
            "num_unlabeled": len(self.unlabeled),
            "labeled": list(self.labeled),
            "unlabeled": list(self.unlabeled),
        }


def parse_fraction(value: str | float | Fraction) -> Fraction:
    """Accept '1/8', '0.125', 0.125 or Fraction(1, 8); reject anything outside the supported partitions."""
    try:
        frac = Fraction(str(value)).limit_denominator(64) if not isinstance(value, Fraction) else value
    except (ValueError, ZeroDivisionError) as exc:
        raise SlimsegError(f"labeled fraction '{value}' is not a number", "use e.g. 1/8 or 0.125") from exc
    if frac not in ALLOWED_FRACTIONS:
        allowed = ", ".join(f"{f.numerator}/{f.denominator}" for f in ALLOWED_FRACTIONS)
        raise SlimsegError(f"labeled fraction {value} is not supported", f"choose one of {allowed}")
    return frac


def split_stems(root: str | Path, split: str = "train") -> list[str]:
    """Sorted stems of a CamVid-layout split that have both an image and a label file."""
    root = Path(root)
    image_dir, label_dir = root / split, root / f"{split}annot"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise SlimsegError(
            f"split '{split}' not found under {root}", f"expected folders {image_dir} and {label_dir}"
        )
    labels = {p.stem for p in label_dir.iterdir() if p.suffix.lower() == ".png"}
    stems = sorted(p.stem for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    paired = [s for s in stems if s in labels]
    if not paired:
        raise SlimsegError(f"no image/label pairs in {image_dir}", f"labels are PNGs in {label_dir}")
    return paired


def make_partition(stems: list[str], fraction: str | float | Fraction, seed: int = 0) -> Partition:
    """Deterministic split of `stems` into labelled (first round(n*fraction) of a seeded shuffle) and rest."""
    frac = parse_fraction(fraction)
    unique = sorted(set(stems))
    if len(unique) != len(stems):
        raise SlimsegError("duplicate stems in the split", "each image must appear once")
    if not unique:
        raise SlimsegError("cannot partition an empty split", "check the dataset path")
    order = list(unique)
    random.Random(seed).shuffle(order)
    n_labeled = max(1, round(len(order) * frac))
    labeled = tuple(sorted(order[:n_labeled]))
    unlabeled = tuple(sorted(order[n_labeled:]))
    return Partition(labeled=labeled, unlabeled=unlabeled, fraction=frac, seed=seed)


def save_partition(partition: Partition, run_dir: str | Path) -> Path:
    """Write partition.json plus labeled.txt / unlabeled.txt (one stem a line) into the run folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "labeled.txt").write_text("".join(f"{s}\n" for s in partition.labeled))
    (run_dir / "unlabeled.txt").write_text("".join(f"{s}\n" for s in partition.unlabeled))
    path = run_dir / "partition.json"
    path.write_text(json.dumps(partition.to_dict(), indent=1))
    return path


def load_partition(path: str | Path) -> Partition:
    """Read a saved partition.json (or the run folder holding it) to repeat a run on the same files."""
    path = Path(path)
    if path.is_dir():
        path = path / "partition.json"
    try:
        data = json.loads(path.read_text())
        return Partition(
            labeled=tuple(data["labeled"]),
            unlabeled=tuple(data["unlabeled"]),
            fraction=parse_fraction(data["fraction"]),
            seed=int(data["seed"]),
        )
    except FileNotFoundError as exc:
        raise SlimsegError(
            f"partition file not found: {path}", "pass a run folder or partition.json"
        ) from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise SlimsegError(
            f"partition file {path} is malformed: {exc}", "re-create it with the seed"
        ) from exc


def list_unlabeled_folder(folder: str | Path) -> list[Path]:
    """Extra unlabelled frames (any images in a folder, recursively, sorted) to add to the unlabelled pool."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SlimsegError(f"unlabelled folder not found: {folder}", "pass a folder of .jpg/.png frames")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SlimsegError(f"no images in unlabelled folder {folder}", "expected .jpg/.jpeg/.png files")
    return files
