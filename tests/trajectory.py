"""Test helper: a seeded short CPU training run per method family (SlimSeg, KA, MGD) and what it logged.

The refactor guard of test_trajectory.py: a few real steps of each arm on real CamVid frames at toy size,
reduced to the logged epoch means of every loss part and a checksum of the final weights. The arms use the
public entry points only (load_config with overrides, Trainer, run), so the same helper measures the code
before and after a change of the trainer's inner shape.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "training" / "configs"
TINY = ["model.widths=[0.25,0.5,1.0]", "model.ppm_channels=16", "model.decoder_channels=32",
        "model.boundary_channels=16", "data.crop=[64,64]", "data.scale=[0.2,0.3]", "data.num_workers=0",
        "data.limit=4", "data.val_split=null", "train.steps=4", "train.batch_size=2", "train.amp=none",
        "train.ckpt_every=0", "train.val_every=0", "train.threads=1", "train.seed=3"]
KA_TERMS = ("[{name: ce, weight: 1.0, class_weights: segnet_sqrt, apply_to: widest},"
            " {name: ce, weight: 0.5, class_weights: segnet_sqrt, apply_to: narrower},"
            " {name: kd, weight: 1.0, temperature: 1.0}, {name: boundary_bce, weight: 1.0},"
            " {name: boundary_guided, weight: 0.5},"
            " {name: ka_adapt, weight: 50.0, code_channels: 16, student_channels: 32, widths: [0.25, 0.5]},"
            " {name: ka_affinity, weight: 1.0, code_channels: 16, student_channels: 32,"
            " widths: [0.25, 0.5]}]")


def _helpers(tmp: Path) -> dict[str, str]:
    """Seeded random tiny teachers and a KA autoencoder, written where the arms' extras point."""
    import torch

    from slimseg_ros.training.autoencoder import FeatureAutoencoder, save_autoencoder
    from slimseg_ros.training.checkpoint import save_checkpoint
    from slimseg_ros.training.model import ModelConfig, SlimSegNet

    cfg = ModelConfig.from_dict({"widths": [0.25, 0.5, 1.0], "ppm_channels": 16, "decoder_channels": 32,
                                 "boundary_channels": 16})
    paths = {}
    for i, name in enumerate(("wide", "deep")):
        torch.manual_seed(100 + i)
        paths[name] = str(save_checkpoint(tmp / name, SlimSegNet(cfg), {"train": {}, "step": 0}))
    torch.manual_seed(200)
    paths["ae"] = str(save_autoencoder(FeatureAutoencoder(32, code_channels=16), tmp / "ae"))
    return paths


def arm_overrides(arm: str, tmp: Path, camvid: Path) -> tuple[Path, list[str]]:
    """(config file, overrides) of one arm: slimseg, ka or mgd."""
    if arm == "slimseg":
        return CONFIGS / "smoke.yaml", TINY
    paths = _helpers(tmp)
    if arm == "ka":
        return CONFIGS / "slimseg_ka.yaml", [
            *TINY, f"loss.terms={KA_TERMS}",
            f"extras=[{{name: ka, teacher: {paths['wide']}, autoencoder: {paths['ae']}}}]"]
    if arm == "mgd":
        return CONFIGS / "slimseg_mgd_1of8.yaml", [
            *TINY, f"data.unlabeled={{folders: [{camvid / 'val'}], batch_size: 4}}",
            f"extras=[{{name: mgd, teachers: {{wide: {paths['wide']}, deep: {paths['deep']}}}}}]"]
    raise ValueError(arm)


def trajectory(arm: str, tmp: Path, camvid: Path) -> dict:
    """Train one arm for 4 steps; its logged epoch means (times dropped) and a final-weights checksum."""
    import torch

    from slimseg_ros.training.config import load_config
    from slimseg_ros.training.trainer import Trainer

    config, overrides = arm_overrides(arm, tmp, camvid)
    trainer = Trainer(load_config(config, overrides), camvid, tmp / "run", device="cpu", progress=False)
    trainer.run()
    records = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [{k: v for k, v in r.items() if k != "time_s"} for r in records if isinstance(r["epoch"], int)]
    weights = sum(float(v.double().abs().sum()) for v in trainer.runner.state_dict().values()
                  if torch.is_floating_point(v))
    return {"epochs": epochs, "weights_abs_sum": weights}


if __name__ == "__main__":  # print the trajectories (to record them before a change)
    import sys
    import tempfile

    from exported import DATA

    out = {}
    for name in sys.argv[1:] or ["slimseg", "ka", "mgd"]:
        with tempfile.TemporaryDirectory() as d:
            out[name] = trajectory(name, Path(d), DATA)
    print(json.dumps(out, indent=1))
