"""Labelled / unlabelled partitions of a training split for semi-supervised runs (MGD).

    python -m slimseg_ros.training.partition --data ../shared/data/camvid --labeled-fraction 1/8 --seed 0 \\
        --out runs/camvid_1of8 [--unlabeled-folder more_frames/]
    slimseg train --config training/configs/slimseg_mgd_1of8.yaml --data runs/camvid_1of8/data ...

A partition must be reproducible (same seed -> same files, on any machine) and auditable (the lists are
saved with the run), so every arm of a comparison trains on exactly the same labelled images. The order is a
seeded permutation of the sorted stems and the labelled set is its prefix, so for one seed the 1/16 set is
inside the 1/8 set, which is inside the 1/4 set: smaller fractions never see labels the larger ones lack.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.module_cli import module_main

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


def partition_pairs(
    pairs: list[tuple[Path, Path]], fraction: str | float | Fraction, seed: int = 0
) -> tuple[Partition, list[tuple[Path, Path]], list[Path]]:
    """Partition already-selected (image, label) pairs by stem, as make_partition does for a folder.

    For runs that choose their label fraction by a parameter (`data.partition`) on any split selection,
    e.g. the dev split's `train:!0001TP` + `val`. Returns the partition, the labelled pairs and the images
    whose labels are withheld.
    """
    part = make_partition([img.stem for img, _ in pairs], fraction, seed)
    keep = set(part.labeled)
    labeled = [p for p in pairs if p[0].stem in keep]
    unlabeled = [img for img, _ in pairs if img.stem not in keep]
    return part, labeled, unlabeled


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


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(src.resolve(), dst)


def materialize_partition(
    root: str | Path,
    partition: Partition,
    out: str | Path,
    extra_unlabeled: str | Path | None = None,
    split: str = "train",
) -> dict[str, Path]:
    """A dataset folder holding only the labelled pairs (symlinks) + an unlabelled-image folder, for training.

    `<out>/data` is a CamVid-layout root: `<split>/` + `<split>annot/` hold the labelled pairs only, every
    other split folder and classes.json link to the original; `<out>/unlabeled/` links the unlabelled images
    of the split (and the extra folder's frames). Nothing is copied; the lists are saved next to them.
    """
    root, out = Path(root).resolve(), Path(out)
    data, unl = out / "data", out / "unlabeled"
    for d in (data, unl):
        if d.exists():
            raise SlimsegError(f"{d} already exists", "pick a new --out (partitions are never overwritten)")
    images = {p.stem: p for p in (root / split).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    for stem in partition.labeled:
        _link(images[stem], data / split / images[stem].name)
        _link(root / f"{split}annot" / f"{stem}.png", data / f"{split}annot" / f"{stem}.png")
    for entry in root.iterdir():
        if entry.name not in (split, f"{split}annot"):
            _link(entry, data / entry.name)
    for stem in partition.unlabeled:
        _link(images[stem], unl / images[stem].name)
    if extra_unlabeled is not None:
        for i, f in enumerate(list_unlabeled_folder(extra_unlabeled)):
            _link(f, unl / f"extra_{i:06d}_{f.name}")
    unl.mkdir(parents=True, exist_ok=True)
    save_partition(partition, out)
    return {"data": data, "unlabeled": unl, "partition": out / "partition.json"}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Options of `python -m slimseg_ros.training.partition`."""
    ap.add_argument("--data", required=True, help="CamVid-layout dataset root")
    ap.add_argument("--labeled-fraction", required=True, help="1/16, 1/8, 1/4 or 1/2")
    ap.add_argument("--seed", type=int, default=0, help="partition seed (same seed -> same files)")
    ap.add_argument("--split", default="train", help="split to partition")
    ap.add_argument("--unlabeled-folder", default=None, help="extra unlabelled frames to add")
    ap.add_argument("--out", required=True, help="folder for data/, unlabeled/ and the file lists")


def run(args: argparse.Namespace) -> int:
    """Draw the partition and lay it out; prints how to train on it."""
    part = make_partition(split_stems(args.data, args.split), args.labeled_fraction, args.seed)
    paths = materialize_partition(args.data, part, args.out, args.unlabeled_folder, args.split)
    n_unl = len(list(paths["unlabeled"].iterdir()))
    print(
        f"{len(part.labeled)} labelled, {n_unl} unlabelled images; train with --data {paths['data']} "
        f"--set data.unlabeled.folders=[{paths['unlabeled']}]"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI: draw a partition and lay it out for `slimseg train` (see the module docstring)."""
    return module_main("slimseg_ros.training.partition", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
