"""CamVid-layout loading: pairing by stem, clear errors naming the file, augmentation shapes, determinism."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.data import (  # noqa: E402
    SegmentationDataset,
    build_train_transform,
    dataset_from_config,
    find_pairs,
)
from slimseg_ros.training.run_config import DataConfig  # noqa: E402

IGN = 11


def _write(root: Path, split: str, stem: str, label: np.ndarray, ext: str = ".png") -> None:
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    img = np.zeros((*label.shape, 3), np.uint8)
    img[..., 0] = label * 20
    cv2.imwrite(str(root / split / f"{stem}{ext}"), img)
    cv2.imwrite(str(root / f"{split}annot" / f"{stem}.png"), label.astype(np.uint8))


def test_pairs_by_stem_jpg_and_png_and_joined_splits(tmp_path: Path) -> None:
    lab = np.zeros((8, 10), np.uint8)
    _write(tmp_path, "a", "x1", lab, ".jpg")
    _write(tmp_path, "a", "x2", lab, ".png")
    _write(tmp_path, "b", "y1", lab)
    assert [p[0].name for p in find_pairs(tmp_path, "a")] == ["x1.jpg", "x2.png"]
    ds = SegmentationDataset(tmp_path, ["a", "b"], 11, IGN)
    assert len(ds) == 3
    sample = ds[2]
    assert sample["image"].shape == (3, 8, 10) and sample["image"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and sample["name"] == "y1"


def test_missing_label_names_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "train", "ok", np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "train" / "lonely.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(SlimsegError, match="lonely"):
        find_pairs(tmp_path, "train")


def test_unknown_split_lists_folders(tmp_path: Path) -> None:
    _write(tmp_path, "train", "ok", np.zeros((4, 4), np.uint8))
    with pytest.raises(SlimsegError, match="no image folder for split 'test'"):
        find_pairs(tmp_path, "test")


def test_out_of_range_label_values_name_the_file(tmp_path: Path) -> None:
    lab = np.zeros((4, 4), np.uint8)
    lab[0, 0] = 12  # neither a class (0..10) nor the ignore index 11
    lab[1, 1] = IGN  # fine
    _write(tmp_path, "train", "bad", lab)
    ds = SegmentationDataset(tmp_path, "train", 11, IGN)
    with pytest.raises(SlimsegError, match=r"bad\.png.*\[12\]"):
        ds[0]


def test_size_mismatch_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "train", "m", np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "trainannot" / "m.png"), np.zeros((5, 4), np.uint8))
    with pytest.raises(SlimsegError, match="same size"):
        SegmentationDataset(tmp_path, "train", 11, IGN)[0]


def test_crop_pads_with_ignore_and_is_deterministic(tmp_path: Path) -> None:
    _write(tmp_path, "train", "s", np.full((10, 12), 3, np.uint8))
    tf = build_train_transform([32, 40], [1.0, 1.0], flip=True, photometric=True, ignore_index=IGN)
    ds = SegmentationDataset(tmp_path, "train", 11, IGN, tf, seed=5)
    a, b = ds[0], ds[0]
    assert a["image"].shape == (3, 32, 40) and a["label"].shape == (32, 40)
    assert set(a["label"].unique().tolist()) == {3, IGN}  # padding is void, never a class
    assert torch.equal(a["image"], b["image"])  # same (seed, epoch, index) -> same augmentation


def test_real_camvid_train_and_val(camvid_root: Path) -> None:
    data = DataConfig(crop=(96, 128), scale=(0.3, 0.5), eval_size=(90, 120), limit=3, val_limit=2)
    train = dataset_from_config(camvid_root, data, 11, train=True)
    s = train[0]
    assert s["image"].shape == (3, 96, 128)
    assert int(s["label"].max()) <= IGN and int(s["label"].min()) >= 0
    train.set_epoch(1)
    assert not torch.equal(train[0]["image"], s["image"])  # a new epoch draws new crops
    val = dataset_from_config(camvid_root, data, 11, train=False)
    v = val[0]
    assert v["image"].shape == (3, 90, 120) and v["label"].shape == (360, 480)  # labels stay full size


def test_sequence_filtered_splits_hold_a_sequence_out(tmp_path: Path) -> None:
    """`train:SEQ` keeps one sequence, `train:!SEQ` the rest: the dev protocol's held-out split."""
    lab = np.zeros((8, 10), np.uint8)
    for stem in ("0001TP_1", "0001TP_2", "0006R0_1", "0016E5_1"):
        _write(tmp_path, "train", stem, lab)
    held = [p[0].stem for p in find_pairs(tmp_path, "train:0001TP")]
    rest = [p[0].stem for p in find_pairs(tmp_path, "train:!0001TP")]
    assert held == ["0001TP_1", "0001TP_2"]
    assert rest == ["0006R0_1", "0016E5_1"]
    assert [p[0].stem for p in find_pairs(tmp_path, "train:0006R0,0016E5")] == rest
    with pytest.raises(SlimsegError, match="selects no frame"):
        find_pairs(tmp_path, "train:9999XX")
    with pytest.raises(SlimsegError, match="names no sequence"):
        find_pairs(tmp_path, "train:!")
