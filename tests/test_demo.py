"""The demo end to end in its short mode: real node process, real DDS, real ONNX Runtime, real pictures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from exported import export_test_manifest

pytest.importorskip("rclpy", reason="the demo drives the real node over ROS 2 (rclpy wheels)")
pytest.importorskip("matplotlib", reason="the timeline plot needs matplotlib")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    manifest = export_test_manifest(root / "model", height=96, width=128)
    out = root / "out"
    cmd = [sys.executable, "-m", "slimseg_ros.cli", "demo", "--manifest", str(manifest), "--out", str(out),
           "--quick", "--no-live", "--frames", "4", "--battery-s", "12", "--fps-phase-s", "6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_demo_writes_valid_pictures(demo_run: Path) -> None:
    montage = cv2.imread(str(demo_run / "montage.png"))
    timeline = cv2.imread(str(demo_run / "timeline.png"))
    assert montage is not None and timeline is not None
    # input + one tile per width (4) side by side, each at least the frame's width (480 px shipped frames)
    assert montage.shape[1] >= 5 * 480
    from PIL import Image

    with Image.open(demo_run / "overlays.gif") as gif:
        assert gif.n_frames >= 2


@pytest.mark.slow
def test_demo_width_follows_battery(demo_run: Path) -> None:
    summary = json.loads((demo_run / "summary.json").read_text())
    assert summary["labels_received"] > 0
    down = [s for s in summary["switches"]
            if s["phase"] == "battery" and s["previous"] is not None and s["width"] < s["previous"]]
    assert down, summary["switches"]
    # default thresholds 0.2/0.4/0.6: every step down happens below the threshold it crossed
    thresholds = {0.75: 0.6, 0.5: 0.4, 0.25: 0.2}
    for s in down:
        assert s["battery"] <= thresholds[s["width"]] + 0.02, s
    assert min(s["width"] for s in down) == 0.25
