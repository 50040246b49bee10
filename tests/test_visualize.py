"""Palette, colour mask and overlay: exact colours per class id and a blend that matches the formula."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from slimseg_ros.errors import SlimsegError
from slimseg_ros.visualize import colorize, make_palette, overlay, overlay_labels

DATA = Path(os.environ.get("SLIMSEG_DATA", Path(__file__).resolve().parents[1].parent / "shared/data/camvid"))


def test_palette_from_triples_and_unknown_ids_are_void() -> None:
    lut = make_palette([[10, 20, 30], [40, 50, 60]], void_color=(1, 2, 3))
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert lut[0].tolist() == [10, 20, 30]
    assert lut[1].tolist() == [40, 50, 60]
    assert lut[2].tolist() == [1, 2, 3] and lut[255].tolist() == [1, 2, 3]


def test_palette_from_sparse_class_entries() -> None:
    lut = make_palette([{"id": 5, "name": "tree", "color": [128, 128, 0]}, {"id": 0, "color": [1, 1, 1]}])
    assert lut[5].tolist() == [128, 128, 0]
    assert lut[0].tolist() == [1, 1, 1]
    assert lut[1].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "colors",
    [[[0, 0]], [[0, 0, 256]], [[-1, 0, 0]], [{"id": 300, "color": [0, 0, 0]}], [{"name": "x"}]],
)
def test_palette_rejects_bad_colours(colors: list) -> None:
    with pytest.raises(SlimsegError):
        make_palette(colors)


def test_colorize_maps_each_pixel_to_its_class_colour() -> None:
    lut = make_palette([[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    labels = np.array([[0, 1], [2, 11]], dtype=np.uint8)
    rgb = colorize(labels, lut)
    assert rgb.shape == (2, 2, 3)
    assert rgb.tolist() == [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [0, 0, 0]]]


def test_colorize_rejects_non_uint8_or_3d_labels() -> None:
    lut = make_palette([[1, 2, 3]])
    with pytest.raises(SlimsegError, match="HxW uint8"):
        colorize(np.zeros((2, 2), dtype=np.int64), lut)
    with pytest.raises(SlimsegError, match="HxW uint8"):
        colorize(np.zeros((2, 2, 1), dtype=np.uint8), lut)
    with pytest.raises(SlimsegError, match="palette"):
        colorize(np.zeros((2, 2), dtype=np.uint8), lut[:10])


def test_overlay_is_the_weighted_blend() -> None:
    image = np.full((3, 4, 3), 100, dtype=np.uint8)
    mask = np.full((3, 4, 3), 200, dtype=np.uint8)
    assert (overlay(image, mask, 0.0) == 100).all()
    assert (overlay(image, mask, 1.0) == 200).all()
    assert (overlay(image, mask, 0.25) == 125).all()


def test_overlay_rejects_bad_alpha_and_sizes() -> None:
    image = np.zeros((3, 4, 3), dtype=np.uint8)
    with pytest.raises(SlimsegError, match="alpha"):
        overlay(image, image, 1.5)
    with pytest.raises(SlimsegError, match="differ in size"):
        overlay(image, np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(SlimsegError, match="HxWx3"):
        overlay(image[..., 0], image)


def test_camvid_ground_truth_overlay_uses_dataset_colours() -> None:
    """A real CamVid label map colourised with classes.json reproduces each class's colour where it occurs."""
    if not (DATA / "classes.json").is_file():
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    cv2 = pytest.importorskip("cv2")
    meta = json.loads((DATA / "classes.json").read_text())
    lut = make_palette(meta["classes"])
    stem = sorted((DATA / "valannot").glob("*.png"))[0]
    labels = cv2.imread(str(stem), cv2.IMREAD_UNCHANGED)
    image = cv2.cvtColor(cv2.imread(str(DATA / "val" / (stem.stem + ".jpg"))), cv2.COLOR_BGR2RGB)
    blended = overlay_labels(image, labels, lut, alpha=1.0)
    for cls in meta["classes"]:
        where = labels == cls["id"]
        if where.any():
            assert (blended[where] == np.array(cls["color"], dtype=np.uint8)).all()
    assert (blended[labels == meta["ignore_index"]] == 0).all()


def test_colorize_and_overlay_write_into_given_buffers() -> None:
    """The node's path: the LUT colours equal numpy's fancy index, and both calls fill the caller's buffer."""
    rng = np.random.default_rng(2)
    lut = make_palette(rng.integers(0, 256, (40, 3)).tolist())
    labels = rng.integers(0, 256, (37, 53), dtype=np.uint8)  # unnamed ids too: they get void
    out = np.zeros((37, 53, 3), np.uint8)
    assert colorize(labels, lut, out=out) is out
    assert np.array_equal(out, lut[labels])
    assert np.array_equal(colorize(labels[::2, 1:], lut), lut[labels[::2, 1:]])  # strided input
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    blended = np.zeros_like(image)
    assert overlay(image, out, 0.3, out=blended) is blended
    assert np.array_equal(blended, overlay(image, out, 0.3))
    with pytest.raises(SlimsegError, match="out buffer"):
        colorize(labels, lut, out=np.zeros((37, 53), np.uint8))
    with pytest.raises(SlimsegError, match="out buffer"):
        overlay(image, out, 0.3, out=np.zeros((5, 5, 3), np.uint8))
