"""The demo end to end in its short mode (real node process, DDS, ONNX Runtime, ffmpeg), its frame accounting,
and the README captions' claims checked against summary.json."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from exported import export_test_manifest

from slimseg_ros.demo_summary import CLAIMS, DROP_CAUSES, account_frames, check_claims

REPO = Path(__file__).resolve().parents[1]
PICTURES = REPO / "docs" / "img"
REGENERATE = "make demo DEMO_ARGS='--data ../shared/data/camvid --pictures docs/img'"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    pytest.importorskip("rclpy", reason="the demo drives the real node over ROS 2 (rclpy wheels)")
    pytest.importorskip("matplotlib", reason="the timeline plot needs matplotlib")
    pytest.importorskip("imageio_ffmpeg", reason="the MP4 needs imageio-ffmpeg")
    root = tmp_path_factory.mktemp("demo")
    manifest = export_test_manifest(root / "model", height=96, width=128)
    out = root / "out"
    cmd = [sys.executable, "-m", "slimseg_ros.cli", "demo", "--manifest", str(manifest), "--out", str(out),
           "--quick", "--no-live", "--frames", "4", "--battery-s", "12", "--pause-s", "1.5",
           "--fps-phase-s", "6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (out / "stdout.txt").write_text(proc.stdout)
    return out


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_animation_is_stamped_and_shows_the_switches(demo_run: Path) -> None:
    import imageio_ffmpeg
    from PIL import Image

    from slimseg_ros.demo_animation import BAND_PX, STAMP_FIELDS

    animation = _summary(demo_run)["animation"]
    stamps = json.loads((demo_run / "animation.json").read_text())
    reader = imageio_ffmpeg.read_frames(str(demo_run / "demo.mp4"))
    meta = next(reader)
    width, height = meta["size"]
    video = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    assert width >= 640 and [width, height] == animation["size"]
    assert len(video) == len(stamps) == animation["frames"]
    for stamp in stamps:  # every field on every frame, never None/nan
        assert set(stamp) == set(STAMP_FIELDS)
        assert not any(re.search(r"\b(None|nan)\b", v) for v in stamp.values()), stamp
    assert stamps[0]["width"] == "starting (loading 4 widths)"
    # the stamp is drawn: the band changes between the first frame (starting) and one at a later width
    later = next(i for i, s in enumerate(stamps) if s["width"] == "0.25")
    assert np.abs(video[0][:BAND_PX].astype(int) - video[later][:BAND_PX].astype(int)).mean() > 1.0
    # each switch shows on the frames right after it
    for switch in _summary(demo_run)["switches"]:
        frame = int(switch["t"] * animation["fps"]) + 8
        assert any(s["width"] == f"{switch['width']:g}" for s in stamps[frame:frame + 8]), switch
    with Image.open(demo_run / "demo.gif") as gif:
        assert gif.n_frames >= 2 and gif.size[0] >= 640


@pytest.mark.slow
def test_montage_has_ground_truth_legend_and_a_row_per_width(demo_run: Path) -> None:
    montage = _summary(demo_run)["montage"]
    picture = cv2.imread(str(demo_run / "montage.png"))
    assert picture is not None and picture.shape[1] == 1000
    panels = montage["panels"]
    assert {"input frame", "ground truth", "legend"} <= set(panels)
    for w in ("0.25", "0.5", "0.75", "1"):
        assert sum(p.startswith(f"width {w}:") for p in panels) == 1, panels
        caption = next(p for p in panels if p.startswith(f"width {w}:"))
        assert "mIoU" in caption and "GFLOPs" in caption and " ms" in caption, caption
    assert sum(p.startswith("prediction, errors in white") for p in panels) == 4
    assert montage["chosen"] == "largest mIoU spread across widths"


@pytest.mark.slow
def test_every_frame_is_accounted_for(demo_run: Path) -> None:
    summary = _summary(demo_run)
    frames = summary["frames"]
    assert set(frames["unlabelled"]) == set(DROP_CAUSES)
    assert frames["labelled"] + sum(frames["unlabelled"].values()) == frames["published"]
    assert frames["labelled"] == summary["node_counters"]["frames_processed"]  # no label map lost on the way
    assert frames["unlabelled"]["disabled"] > 0  # the pause
    assert frames["unlabelled"]["at_switch"] == 0
    printed = (demo_run / "stdout.txt").read_text()
    assert frames["sentence"] in printed
    numbers = [int(n) for n in re.findall(r"\b(\d+) (?!widths)", frames["sentence"])]
    assert numbers[:2] == [frames["published"], frames["labelled"]]


@pytest.mark.slow
def test_width_follows_battery(demo_run: Path) -> None:
    summary = _summary(demo_run)
    down = [s for s in summary["switches"] if s["phase"] == "battery" and s["width"] < s["previous"]]
    assert [s["width"] for s in down] == [0.75, 0.5, 0.25], summary["switches"]
    for s, threshold in zip(down, (0.6, 0.4, 0.2), strict=True):  # at the threshold it crossed, not later
        assert threshold - 0.06 <= s["battery"] <= threshold + 0.01, s


@pytest.mark.slow
def test_caption_claims_hold_on_a_fresh_run(demo_run: Path) -> None:
    """What the short run exercises holds; what it cannot exercise (the load, with a tiny model) is None."""
    claims = check_claims(_summary(demo_run))
    assert not [k for k, v in claims.items() if v is False], claims
    assert claims["battery_steps"] and claims["no_switch_drop"] and claims["accounted"] and claims["stamped"]


def test_readme_captions_make_exactly_the_checked_claims() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    for key, claim in CLAIMS.items():
        assert claim.phrase in readme, f"README lost the caption claim {key!r}: {claim.phrase!r}"


def test_readme_pictures_back_their_captions() -> None:
    """The pictures in docs/img come with the summary.json of their run; every caption claim holds there."""
    path = PICTURES / "summary.json"
    if not path.is_file():
        pytest.skip(f"{path} not generated yet: {REGENERATE}")
    claims = check_claims(json.loads(path.read_text()))
    assert all(v is True for v in claims.values()), claims


def test_account_frames_gives_each_cause() -> None:
    """Frames 0.1 s apart; the node is slow on frame 4 (newer frames 5, 6 and 7 come while it works)."""
    publish_t = [0.1 * i for i in range(17)]
    labels = {2: 0.25, 3: 0.35, 4: 0.72, 7: 0.75, 9: 0.95, 11: 1.15, 12: 1.25, 15: 1.55}
    account = account_frames(publish_t, list(labels), list(labels.values()),
                             switch_t=[0.96], disabled=[[1.28, 1.42]])
    assert account.causes == [
        "before_first_output", "before_first_output", None, None, None,
        "replaced", "replaced",   # 5, 6: a newer frame came before frame 4's labels did
        None, "lost",             # 8: the node was free and no switch happened around it
        None, "at_switch",        # 10: the node was free, the width changed between labels 9 and 11
        None, None,
        "disabled", "disabled",   # 13, 14: published while ~/enable was false
        None, "shutdown",         # 16: after the last labelled frame
    ]
    assert account.adds_up()
    assert account.unlabelled == {"before_first_output": 2, "shutdown": 1, "disabled": 2, "replaced": 2,
                                  "at_switch": 1, "lost": 1}


def test_status_before_the_first_output_says_starting() -> None:
    from slimseg_ros.demo import status_fields

    starting = {"t": 1.0, "phase_name": "starting", "battery": 1.0, "width": None, "fps_out": None,
                "latency_ms": None, "target_fps": None, "published": 12, "received": 0}
    fields = status_fields(starting, 4)
    assert fields["width"] == "starting (loading 4 widths)"
    assert not any(re.search(r"\b(None|nan)\b", v) for v in fields.values()), fields
    running = status_fields({**starting, "width": 0.5, "fps_out": 14.0, "latency_ms": 31.2, "received": 3}, 4)
    assert (running["width"], running["fps"], running["latency"]) == ("0.5", "14.0", "31 ms")
