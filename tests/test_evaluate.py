"""slimseg eval: metrics agree with an independent confusion-matrix computation; JSON/markdown outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

import torch.nn.functional as F  # noqa: E402

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training import evaluate  # noqa: E402
from slimseg_ros.training.boundary import trimap_band  # noqa: E402
from slimseg_ros.training.checkpoint import save_checkpoint  # noqa: E402
from slimseg_ros.training.data import SegmentationDataset, build_eval_transform  # noqa: E402
from slimseg_ros.training.model import ModelConfig, SlimSegNet  # noqa: E402
from slimseg_ros.training.slimmable import set_width  # noqa: E402

CFG = {"arch": "resnet18", "num_classes": 11, "widths": [0.25, 0.5], "ppm_channels": 16,
       "decoder_channels": 32, "boundary_channels": 16}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = SlimSegNet(ModelConfig.from_dict(CFG))
    with torch.no_grad():  # a bias towards a few classes so predictions are not all one class
        model.classifier.bias.copy_(torch.linspace(-1, 1, 11))
    meta = {"classes": [f"c{i}" for i in range(11)], "colors": [[i, i, i] for i in range(11)],
            "ignore_index": 11, "train": {"data": {"eval_size": [90, 120]}}}
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "m", model.eval(), meta)


def _numpy_iou(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, n: int) -> list[float]:
    keep = (gt != 11) & mask
    ious = []
    for c in range(n):
        p, g = (pred == c) & keep, (gt == c) & keep
        union = (p | g).sum()
        ious.append(np.nan if union == 0 else (p & g).sum() / union)
    return ious


def test_metrics_match_independent_computation(ckpt: Path, camvid_root: Path) -> None:
    nets, meta = evaluate.load_nets([str(ckpt)], None, torch.device("cpu"))
    ds = SegmentationDataset(camvid_root, ["val"], 11, 11, build_eval_transform([90, 120]),
                             label_transform=False, limit=2)
    got = evaluate.evaluate_nets(nets, ds, "cpu", 11, 11, boundary_px=2, batch_size=2)
    images = torch.stack([ds[i]["image"] for i in range(2)])
    labels = torch.stack([ds[i]["label"] for i in range(2)])
    for w in (0.25, 0.5):
        net = nets[w]
        set_width(net, w)
        with torch.no_grad():
            pred = F.interpolate(net(images), size=(360, 480), mode="bilinear").argmax(1).numpy()
        gt = labels.numpy()
        full = _numpy_iou(pred, gt, np.ones_like(gt, bool), 11)
        band = _numpy_iou(pred, gt, trimap_band(labels, 11, 11, 2).numpy(), 11)
        r = got[f"{w:g}"]
        assert r["miou"] == pytest.approx(np.nanmean(full), abs=1e-5)
        assert r["boundary_miou"] == pytest.approx(np.nanmean(band), abs=1e-5)
        for c in range(11):
            v = r["per_class"][str(c)]
            assert (v is None and np.isnan(full[c])) or v == pytest.approx(full[c], abs=1e-5)


def test_cli_writes_json_and_markdown(ckpt: Path, camvid_root: Path, tmp_path: Path) -> None:
    args = argparse.Namespace(ckpt=[str(ckpt)], data=str(camvid_root), split="val", widths=[0.5], size=None,
                              boundary_px=3, batch_size=2, limit=2, device="cpu",
                              out=str(tmp_path / "e.json"), md=str(tmp_path / "e.md"))
    assert evaluate.run(args) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["split"] == "val" and result["size"] == [90, 120] and list(result["widths"]) == ["0.5"]
    r = result["widths"]["0.5"]
    assert {"miou", "boundary_miou", "per_class", "flops", "params"} <= set(r)
    assert r["flops"] > 0 and r["params"] > 0 and set(r["per_class"]) == {f"c{i}" for i in range(11)}
    assert "| 0.5 |" in (tmp_path / "e.md").read_text()


def test_unknown_width_is_a_clear_error(ckpt: Path) -> None:
    with pytest.raises(SlimsegError, match="available: 0.25, 0.5"):
        evaluate.load_nets([str(ckpt)], [0.75], torch.device("cpu"))
