"""CamVid-layout segmentation data: image/label pairing, label validation and albumentations augmentation.

Layout: `<root>/<split>/` holds images (.jpg or .png) and `<root>/<split>annot/` the single-channel index
labels (.png) with the same file stem. Any split name works and several splits can be joined (train+val for
the standard protocol). Labels are checked when read, so a corrupt or foreign label file stops training with
its name instead of silently teaching the network wrong classes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.run_config import DataConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# ImageNet statistics on the 0-255 scale: the usual choice, stored in checkpoint metadata so export and the
# runtime normalise exactly as training did.
DEFAULT_MEAN, DEFAULT_STD = DataConfig.mean, DataConfig.std  # the config's defaults (training/run_config.py)


def parse_split(spec: str) -> tuple[str, tuple[str, ...], bool]:
    """`train`, `train:0001TP` (only frames whose stem starts with a listed sequence) or `train:!0001TP`
    (all but those): sequence-held-out splits without copying files. Returns (folder, prefixes, exclude)."""
    folder, _, seqs = spec.partition(":")
    exclude = seqs.startswith("!")
    prefixes = tuple(p for p in seqs.lstrip("!").split(",") if p)
    if seqs and not prefixes:
        raise SlimsegError(f"split {spec!r} names no sequence", "e.g. train:0001TP or train:!0001TP")
    return folder, prefixes, exclude


def find_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """List (image, label) pairs of one split, matched by file stem; any missing label is an error.

    `split` may carry a sequence filter (see parse_split)."""
    root = Path(root)
    split, prefixes, exclude = parse_split(split)
    img_dir, ann_dir = root / split, root / f"{split}annot"
    if not img_dir.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise SlimsegError(
            f"no image folder for split '{split}': {img_dir}",
            f"expected the CamVid layout <root>/<split>/ + <root>/<split>annot/; folders here: {known}",
        )
    if not ann_dir.is_dir():
        raise SlimsegError(f"no label folder for split '{split}': {ann_dir}", "labels live in <split>annot/")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SlimsegError(f"no images (.jpg/.png) in {img_dir}")
    labels = {p.stem: p for p in ann_dir.iterdir() if p.suffix.lower() == ".png"}
    pairs = []
    for img in images:
        lab = labels.get(img.stem)
        if lab is None:
            raise SlimsegError(f"image {img} has no label file {ann_dir / (img.stem + '.png')}",
                               "every image needs a same-stem index PNG in <split>annot/")
        pairs.append((img, lab))
    if prefixes:
        pairs = [p for p in pairs if p[0].stem.startswith(prefixes) != exclude]
        if not pairs:
            raise SlimsegError(f"split {split}:{'!' if exclude else ''}{','.join(prefixes)} selects no frame",
                               f"frame names in {img_dir} start with their sequence, e.g. {images[0].stem}")
    return pairs


def read_image(path: Path) -> np.ndarray:
    """Read an image as uint8 RGB HxWx3; unreadable files are a named error."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SlimsegError(f"cannot read image {path}", "file is missing, truncated or not an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: Path, num_classes: int, ignore_index: int) -> np.ndarray:
    """Read an index label as uint8 HxW and reject values that are neither a class nor the ignore index."""
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise SlimsegError(f"cannot read label {path}", "file is missing, truncated or not a PNG")
    if lab.ndim != 2:
        raise SlimsegError(f"label {path} has shape {lab.shape}, expected a single-channel index PNG",
                           "labels must hold class ids, not colours")
    bad = (lab >= num_classes) & (lab != ignore_index)
    if bad.any():
        values = sorted(int(v) for v in np.unique(lab[bad]))[:10]
        raise SlimsegError(f"label {path} holds values {values} outside classes 0..{num_classes - 1} "
                           f"and ignore index {ignore_index}",
                           "check num_classes / ignore_index in the config")
    return lab


def build_train_transform(crop: Sequence[int], scale: Sequence[float], flip: bool, photometric: bool,
                          ignore_index: int) -> A.Compose:
    """Random scale, crop (padded with the ignore label), flip and colour jitter: the usual recipe."""
    ch, cw = int(crop[0]), int(crop[1])
    lo, hi = float(scale[0]), float(scale[1])
    ops: list[Any] = [
        A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), p=1.0),
        A.PadIfNeeded(min_height=ch, min_width=cw, border_mode=cv2.BORDER_CONSTANT, fill=0,
                      fill_mask=ignore_index),
        A.RandomCrop(height=ch, width=cw),
    ]
    if flip:
        ops.append(A.HorizontalFlip(p=0.5))
    if photometric:
        ops.append(A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, p=0.8))
    return A.Compose(ops)


def build_eval_transform(size: Sequence[int] | None) -> A.Compose | None:
    """Resize the image only (labels stay at full resolution: metrics are computed there)."""
    if not size:
        return None
    return A.Compose([A.Resize(height=int(size[0]), width=int(size[1]))])


class SegmentationDataset(Dataset):
    """CamVid-layout dataset over one or more splits; yields normalised image tensors and long labels.

    Augmentation randomness is reseeded per (seed, epoch, index), so a resumed run and worker processes
    see exactly the crops an uninterrupted run would.
    """

    def __init__(self, root: str | Path, splits: Sequence[str] | str, num_classes: int, ignore_index: int,
                 transform: A.Compose | None = None, mean: Sequence[float] = DEFAULT_MEAN,
                 std: Sequence[float] = DEFAULT_STD, seed: int = 0, label_transform: bool = True,
                 limit: int | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise SlimsegError(f"data folder not found: {root}", "pass --data pointing at the CamVid folder")
        splits = [splits] if isinstance(splits, str) else list(splits)
        self.pairs = [p for s in splits for p in find_pairs(root, s)]
        if limit:
            self.pairs = self.pairs[: int(limit)]
        self.splits = splits
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.transform = transform
        self.label_transform = label_transform  # False: transform touches the image only (eval resize)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch (called by the trainer before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def normalise(self, image: np.ndarray) -> torch.Tensor:
        """uint8 HxWx3 RGB -> float CHW tensor with the dataset's mean/std."""
        x = (image.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        img_path, lab_path = self.pairs[index]
        image = read_image(img_path)
        label = read_label(lab_path, self.num_classes, self.ignore_index)
        if image.shape[:2] != label.shape:
            raise SlimsegError(f"label {lab_path} is {label.shape[1]}x{label.shape[0]} but image {img_path} "
                               f"is {image.shape[1]}x{image.shape[0]}",
                               "image and label must be the same size")
        if self.transform is not None:
            self.transform.set_random_seed(zlib.crc32(f"{self.seed}:{self.epoch}:{index}".encode()))
            if self.label_transform:
                out = self.transform(image=image, mask=label)
                image, label = out["image"], out["mask"]
            else:
                image = self.transform(image=image)["image"]
        return {"image": self.normalise(image), "label": torch.from_numpy(label.astype(np.int64)),
                "name": img_path.stem}


def dataset_from_config(root: str | Path, data_cfg: DataConfig, num_classes: int, train: bool,
                        seed: int = 0, splits: Sequence[str] | None = None) -> SegmentationDataset:
    """Build the train (augmented) or validation (resize only) dataset from the config's `data` section."""
    dc, ignore = data_cfg, data_cfg.ignore_index
    if train:
        tf = build_train_transform(dc.crop, dc.scale, dc.flip, dc.photometric, ignore)
        return SegmentationDataset(root, splits or dc.train_splits, num_classes, ignore, tf, dc.mean, dc.std,
                                   seed=seed, limit=dc.limit)
    tf = build_eval_transform(dc.eval_size)
    return SegmentationDataset(root, splits or [dc.val_split], num_classes, ignore, tf, dc.mean, dc.std,
                               seed=seed, label_transform=False, limit=dc.val_limit)


class UnlabeledImages(Dataset):
    """Images without labels (semi-supervised streams), augmented: every image file of the given folders,
    plus explicit `files` (the frames whose labels a `data.partition` withholds)."""

    def __init__(self, folders: Sequence[str | Path], crop: Sequence[int], scale: Sequence[float],
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD,
                 seed: int = 0, files: Sequence[Path] = ()) -> None:
        self.files = sorted({*(p for f in folders for p in Path(f).iterdir()
                               if p.suffix.lower() in IMAGE_SUFFIXES), *map(Path, files)})
        if not self.files:
            raise SlimsegError(f"no images in unlabelled folders {list(map(str, folders))}",
                               "list data.unlabeled.folders or withhold labels with data.partition")
        self.transform = build_train_transform(crop, scale, True, True, 0)
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = read_image(self.files[index])
        self.transform.set_random_seed(zlib.crc32(f"u{self.seed}:{self.epoch}:{index}".encode()))
        image = self.transform(image=image)["image"]
        x = (image.astype(np.float32) - self.mean) / self.std
        return {"image": torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),
                "name": self.files[index].stem}
