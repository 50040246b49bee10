"""Frame -> network geometry of the three resize modes, labels back onto the frame, and intrinsics.

Pure numpy/OpenCV (no ROS). The strongest checks use images whose content is known: a perfect "network"
(the identity on a block image) must give back labels aligned with the frame, and a dot at the principal
point must land where the mapped K says.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slimseg_ros import params as P
from slimseg_ros.resize import (
    RESIZE_MODES,
    fit,
    labels_at_network,
    labels_to_frame,
    map_box,
    map_intrinsics,
    to_network,
)

NETWORK = (96, 128)  # (height, width), the test export's input size (4:3)
WIDE = (270, 480)  # a 16:9 camera
TALL = (480, 270)  # the same camera rotated
VOID = 11


def test_geometry_of_each_mode_for_a_wide_frame() -> None:
    stretch = fit(WIDE, NETWORK, "stretch")
    assert stretch.scale == (128 / 480, 96 / 270) and stretch.offset == (0.0, 0.0)
    assert stretch.content == (0, 0, 128, 96) and stretch.visible == (0, 0, 480, 270)
    letterbox = fit(WIDE, NETWORK, "letterbox")  # 480x270 * 0.2667 = 128x72, 12 padding rows above and below
    assert letterbox.content == (0, 12, 128, 84) and letterbox.visible == (0, 0, 480, 270)
    assert letterbox.scale == pytest.approx((128 / 480, 72 / 270)) and letterbox.offset == (0.0, 12.0)
    crop = fit(WIDE, NETWORK, "crop")  # 270 rows cover 96: scale 96/270, the centre 360 columns are seen
    assert crop.visible == (60, 0, 420, 270) and crop.content == (0, 0, 128, 96)
    assert crop.scale == pytest.approx((128 / 360, 96 / 270))
    assert crop.offset == pytest.approx((-60 * 128 / 360, 0.0))


def test_geometry_of_a_tall_frame_pads_and_crops_the_other_axis() -> None:
    letterbox = fit(TALL, NETWORK, "letterbox")  # 270x480 * 0.2 = 54x96: columns padded
    assert letterbox.content == (37, 0, 91, 96)
    crop = fit(TALL, NETWORK, "crop")  # width 270 covers 128: 202.5 -> 202 rows seen
    assert crop.visible == (0, 139, 270, 341)


def test_same_aspect_makes_every_mode_a_stretch() -> None:
    geometries = [fit((360, 480), NETWORK, mode) for mode in RESIZE_MODES]
    assert len({(g.scale, g.offset, g.content, g.visible) for g in geometries}) == 1


def test_extreme_aspects_keep_at_least_one_pixel() -> None:
    letterbox = fit((1, 5000), NETWORK, "letterbox")
    assert letterbox.content[3] - letterbox.content[1] == 1
    crop = fit((1, 5000), NETWORK, "crop")
    assert crop.visible[2] - crop.visible[0] >= 1


def test_bad_mode_and_sizes_are_errors() -> None:
    with pytest.raises(ValueError, match="resize mode 'zoom' is not one of stretch, letterbox, crop"):
        fit(WIDE, NETWORK, "zoom")
    with pytest.raises(ValueError, match="frame size must be positive"):
        fit((0, 10), NETWORK, "stretch")
    with pytest.raises(ValueError, match="labels are"):
        labels_to_frame(np.zeros((10, 10), np.uint8), fit(WIDE, NETWORK, "crop"), VOID)
    with pytest.raises(ValueError, match="the fit was computed for"):
        to_network(np.zeros((10, 10, 3), np.uint8), fit(WIDE, NETWORK, "crop"))


def _stripes(shape: tuple[int, int]) -> np.ndarray:
    """RGB frame: red left sixth, blue right sixth, green centre, so crop and padding are visible."""
    height, width = shape
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, :] = (0, 200, 0)
    rgb[:, : width // 8] = (200, 0, 0)
    rgb[:, width - width // 8 :] = (0, 0, 200)
    return rgb


def test_to_network_stretch_equals_the_backends_resize() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (*WIDE, 3), dtype=np.uint8)
    out = to_network(rgb, fit(WIDE, NETWORK, "stretch"))
    assert out.flags.c_contiguous
    assert np.array_equal(out, cv2.resize(rgb, (128, 96), interpolation=cv2.INTER_LINEAR))


def test_to_network_letterbox_pads_with_the_given_value() -> None:
    rgb = _stripes(WIDE)
    out = to_network(rgb, fit(WIDE, NETWORK, "letterbox"), (124, 116, 104))
    assert out.shape == (96, 128, 3)
    assert (out[:12] == (124, 116, 104)).all() and (out[84:] == (124, 116, 104)).all()
    assert np.array_equal(out[12:84], cv2.resize(rgb, (128, 72), interpolation=cv2.INTER_LINEAR))


def test_to_network_crop_sees_only_the_centre() -> None:
    rgb = _stripes(WIDE)  # margins are 60 columns: exactly what the crop cuts
    out = to_network(rgb, fit(WIDE, NETWORK, "crop"))
    assert out.shape == (96, 128, 3) and (out == (0, 200, 0)).all()


def _blocks(shape: tuple[int, int]) -> np.ndarray:
    """A uint8 class map of 30x30-pixel blocks with ids 0..9: coarse enough to survive any resize."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    return ((yy // 30 * 7 + xx // 30) % 10).astype(np.uint8)


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("shape", [WIDE, TALL, (360, 480), (50, 70)])
def test_identity_network_gives_labels_aligned_with_the_frame(mode: str, shape: tuple[int, int]) -> None:
    """The frame's own class map through to_network and labels_to_frame comes back where it was."""
    truth = _blocks(shape)
    geometry = fit(shape, NETWORK, mode)
    network = to_network(truth, geometry, pad_value=200)  # padding: an id the truth never has
    back = labels_to_frame(network, geometry, VOID)
    assert back.shape == shape and back.dtype == np.uint8
    assert 200 not in back, "letterbox padding reached the frame's labels"
    x0, y0, x1, y1 = geometry.visible
    seen = np.zeros(shape, bool)
    seen[y0:y1, x0:x1] = True
    assert (back[~seen] == VOID).all()
    agree = (back[seen] == truth[seen]).mean()
    assert agree > 0.93, f"{mode} {shape}: only {agree:.1%} of seen pixels kept their class"
    if mode == "crop" and shape != (360, 480):
        assert (~seen).any()


def test_labels_at_network_mark_letterbox_padding_void() -> None:
    geometry = fit(WIDE, NETWORK, "letterbox")
    raw = np.full(NETWORK, 3, np.uint8)
    out = labels_at_network(raw, geometry, VOID)
    assert (out[:12] == VOID).all() and (out[84:] == VOID).all() and (out[12:84] == 3).all()
    crop = fit(WIDE, NETWORK, "crop")
    assert labels_at_network(raw, crop, VOID) is raw  # a crop fills the whole network input


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_mapped_intrinsics_follow_the_image(mode: str) -> None:
    """A dot drawn at the principal point lands at the mapped principal point (K and P alike)."""
    k = np.array([[500.0, 0, 300.0], [0, 480.0, 140.0], [0, 0, 1]])
    p = np.hstack([k, [[25.0], [-3.0], [0.0]]])
    frame = np.zeros((*WIDE, 3), np.uint8)
    cv2.circle(frame, (300, 140), 12, (255, 255, 255), -1)
    geometry = fit(WIDE, NETWORK, mode)
    k2, p2 = map_intrinsics(k, p, geometry.affine)
    grey = to_network(frame, geometry)[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0 : NETWORK[0], 0 : NETWORK[1]]
    centroid = (float((xx * grey).sum() / grey.sum()), float((yy * grey).sum() / grey.sum()))
    assert centroid == pytest.approx((k2[0, 2], k2[1, 2]), abs=0.6)  # ROS convention: no half-pixel shift
    (sx, sy), (ox, oy) = geometry.scale, geometry.offset
    assert k2[0, 0] == pytest.approx(500 * sx) and k2[1, 1] == pytest.approx(480 * sy)
    assert k2[0, 2] == pytest.approx(300 * sx + ox) and k2[1, 2] == pytest.approx(140 * sy + oy)
    assert p2[0, 3] == pytest.approx(25 * sx) and p2[1, 3] == pytest.approx(-3 * sy)
    assert np.array_equal(k2, p2[:, :3])
    assert list(k2[2]) == [0, 0, 1]


def test_map_box_scales_offsets_and_clips() -> None:
    crop = fit(WIDE, NETWORK, "crop")
    assert map_box((0, 0, 480, 270), crop.affine, NETWORK) == (0, 0, 128, 96)  # margins clipped away
    assert map_box((60, 0, 240, 135), crop.affine, NETWORK) == (0, 0, 64, 48)
    letterbox = fit(WIDE, NETWORK, "letterbox")
    assert map_box((0, 0, 480, 270), letterbox.affine, NETWORK) == (0, 12, 128, 84)


def test_resize_mode_parameter_is_declared_and_validated() -> None:
    assert P.SPEC_BY_NAME["resize_mode"].type is str and not P.SPEC_BY_NAME["resize_mode"].read_only
    assert P.load_defaults()["resize_mode"] == "stretch"
    for mode in RESIZE_MODES:
        assert P.check_node_param("resize_mode", mode) == mode
    with pytest.raises(ValueError, match="resize_mode 'zoom' is not one of stretch, letterbox, crop"):
        P.check_node_param("resize_mode", "zoom")
    with pytest.raises(ValueError, match="must be a str"):
        P.check_node_param("resize_mode", 3)


def _old_labels_to_frame(labels: np.ndarray, geometry, void: int) -> np.ndarray:
    """The node's path before buffers (d05dd1f): cut the padding, resize, place in a void frame."""
    fh, fw = geometry.frame
    cx0, cy0, cx1, cy1 = geometry.content
    labels = labels[cy0:cy1, cx0:cx1]
    x0, y0, x1, y1 = geometry.visible
    labels = cv2.resize(labels, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    out = np.full((fh, fw), void, dtype=np.uint8)
    out[y0:y1, x0:x1] = labels
    return out


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("shape", [WIDE, TALL, (1080, 1920), (97, 131), NETWORK])
def test_labels_and_colours_to_frame_into_a_buffer_equal_the_old_path(mode: str, shape: tuple) -> None:
    """One nearest resize into the caller's buffer, for labels and for network-size colours alike: the same
    pixels as resizing the labels to the frame and colourising there (odd sizes included)."""
    from slimseg_ros.visualize import colorize, make_palette

    rng = np.random.default_rng(1)
    geometry = fit(shape, NETWORK, mode)
    labels = rng.integers(0, 12, NETWORK, dtype=np.uint8)
    palette = make_palette(rng.integers(0, 256, (12, 3)).tolist())
    want = _old_labels_to_frame(labels, geometry, VOID)
    out = np.full(shape, 77, np.uint8)
    assert labels_to_frame(labels, geometry, VOID, out=out) is out
    assert np.array_equal(out, want)
    assert np.array_equal(labels_to_frame(labels, geometry, VOID), want)
    color_out = np.zeros((*shape, 3), np.uint8)
    color = labels_to_frame(colorize(labels, palette), geometry, tuple(palette[VOID]), out=color_out)
    assert color is color_out
    assert np.array_equal(color, palette[want])


def test_labels_to_frame_rejects_a_buffer_of_the_wrong_size() -> None:
    geometry = fit(WIDE, NETWORK, "stretch")
    with pytest.raises(ValueError, match="expected uint8"):
        labels_to_frame(np.zeros(NETWORK, np.uint8), geometry, VOID, out=np.zeros(TALL, np.uint8))
