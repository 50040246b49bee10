"""Test helper: a real (random-init) SlimSegNet exported by the real export code, for tests needing one.

Other test modules (node, demo, backends) import `export_test_manifest` so they run against genuine ONNX
graphs and a genuine manifest rather than a stub. A few train-mode forwards give every width's private
BatchNorm non-trivial running statistics, so widths really differ from one another.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SLIMSEG_DATA", REPO.parent / "shared" / "data" / "camvid"))

# Built-in copy of the CamVid 11-class table, used when the dataset (and its classes.json) is absent.
CAMVID_CLASSES = [
    ("sky", [128, 128, 128]), ("building", [128, 0, 0]), ("pole", [192, 192, 128]), ("road", [128, 64, 128]),
    ("pavement", [60, 40, 222]), ("tree", [128, 128, 0]), ("sign_symbol", [192, 128, 128]),
    ("fence", [64, 64, 128]), ("car", [64, 0, 128]), ("pedestrian", [64, 64, 0]),
    ("bicyclist", [0, 128, 192]),
]
CAMVID_IGNORE = 11
_CACHE: dict[tuple, tuple[Path, str]] = {}  # export arguments -> (folder, manifest text) exported here


def camvid_meta() -> dict:
    """Class names, colours and ignore index from the dataset's classes.json, else the built-in copy."""
    path = DATA / "classes.json"
    if path.is_file():
        table = json.loads(path.read_text())
        classes = sorted(table["classes"], key=lambda c: c["id"])
        return {"classes": [c["name"] for c in classes], "colors": [list(c["color"]) for c in classes],
                "ignore_index": int(table["ignore_index"])}
    return {"classes": [n for n, _ in CAMVID_CLASSES], "colors": [c for _, c in CAMVID_CLASSES],
            "ignore_index": CAMVID_IGNORE}


def camvid_frames(split: str = "val", count: int = 4, size: tuple[int, int] | None = None, step: int = 10):
    """(images RGB uint8, labels uint8) of every `step`-th frame of a split, optionally resized to (h, w).

    Returns empty lists when the dataset is absent; tests call pytest.skip with DATA in the reason then.
    """
    import cv2

    files = sorted((DATA / split).glob("*.[jp][pn]g"))[::step][:count]
    images, labels = [], []
    for f in files:
        image = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        label = cv2.imread(str(DATA / f"{split}annot" / f"{f.stem}.png"), cv2.IMREAD_UNCHANGED)
        if size is not None:
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        images.append(image)
        labels.append(label)
    return images, labels


def _diversify_classifier(model, x) -> None:
    """Classifier weights whose mean logit is zero at every width, so a random net predicts varied classes.

    ReLU features share a large positive mean that adds a per-class offset everywhere, and narrow random
    widths vary little spatially, so their label map would be constant and label-agreement tests vacuous.
    Widths use channel prefixes of the classifier input: each width's new channels are projected to cancel
    the mean logit of that width (computed on the calibration batch `x`, in eval mode).
    """
    import torch

    from slimseg_ros.training.slimmable import set_width

    model.eval()
    with torch.no_grad():
        weight = model.classifier.weight[:, :, 0, 0]  # [classes, D] view of the 1x1 conv
        weight.normal_(0.0, 1.0)
        if model.classifier.bias is not None:
            model.classifier.bias.zero_()
        done = 0
        for w in model.cfg.widths:
            set_width(model, w)
            mean_feat = model(x, aux=True)["feat"].mean(dim=(0, 2, 3))
            new = slice(done, mean_feat.numel())
            offset = weight[:, :done] @ mean_feat[:done]
            f = mean_feat[new]
            weight[:, new] -= ((weight[:, new] @ f + offset)[:, None] / (f @ f).clamp_min(1e-12)) * f[None, :]
            done = mean_feat.numel()


def build_test_model(arch: str = "resnet18", seed: int = 0,
                     widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0), height: int = 96, width: int = 128):
    """Random-init SlimSegNet with varied predictions and per-width BatchNorm statistics from real frames.

    A few train-mode passes over CamVid train frames (random tensors when the dataset is absent) give each
    width's private BatchNorm realistic running statistics, so widths really differ from one another.
    """
    import numpy as np
    import torch

    from slimseg_ros.training.checkpoint import IMAGENET_MEAN, IMAGENET_STD
    from slimseg_ros.training.model import ModelConfig, SlimSegNet
    from slimseg_ros.training.slimmable import set_width

    torch.manual_seed(seed)
    # The pyramid-pooling grids must fit the 1/32 feature map to export (96x128 gives 3x4): drop larger ones.
    bins = tuple(b for b in ModelConfig.ppm_bins if b <= min(height, width) // 32) or (1,)
    cfg = ModelConfig(arch=arch, num_classes=len(CAMVID_CLASSES), widths=tuple(widths), ppm_bins=bins)
    model = SlimSegNet(cfg)
    images, _ = camvid_frames("train", count=2, size=(height, width), step=180)
    if images:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    else:
        x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(seed))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:  # cumulative averaging: one pass per width gives that batch's exact statistics
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for w in widths:
            set_width(model, w)
            model(x)
    for bn in norms:
        bn.momentum = 0.1
    _diversify_classifier(model, x)
    set_width(model, max(widths))
    return model.eval()


def export_test_manifest(out_dir: str | Path, arch: str = "resnet18", height: int = 96, width: int = 128,
                         seed: int = 0, widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0),
                         keep_logits: bool = False, postprocess: str = "quarter") -> Path:
    """Checkpoint, one ONNX per width and manifest.yaml in out_dir via the real export; the manifest path."""
    import torch

    from slimseg_ros.engines.export import export_model
    from slimseg_ros.training.checkpoint import load_checkpoint, save_checkpoint

    out_dir = Path(out_dir)
    key = (arch, height, width, seed, tuple(widths), keep_logits, postprocess)
    cached = _CACHE.get(key)
    if cached is not None and _intact(*cached):
        # Same arguments as an earlier call in this test session: copy its files instead of exporting again.
        shutil.copytree(cached[0], out_dir, dirs_exist_ok=True)
        return out_dir / "manifest.yaml"
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = build_test_model(arch, seed, widths, height, width)
    stem = save_checkpoint(out_dir / "checkpoint", model, {**camvid_meta(), "step": 0})
    model, meta = load_checkpoint(stem)  # export what a user would: the checkpoint as saved
    path = export_model(model, meta, out_dir, height, width, list(widths), postprocess=postprocess,
                        keep_logits=keep_logits, checkpoint=stem, log=lambda _msg: None)
    _CACHE[key] = (out_dir, path.read_text())
    return path


def bench_manifest(manifest: str | None, export_dir: str | None, parser: argparse.ArgumentParser) -> str:
    """The manifest a bench script runs on: its --manifest, else the test model exported into --export-test's
    folder; neither given is a usage error."""
    if export_dir:
        return str(export_test_manifest(export_dir))
    if not manifest:
        parser.error("--manifest or --export-test is required")
    return manifest


def runtime_export(out_dir: str | Path, height: int = 96, width: int = 128) -> Path:
    """The test export for runtime tests, which must also run where only the runtime is installed.

    SLIMSEG_TEST_EXPORT names a folder written by `python tests/exported.py DIR` elsewhere (as an export is
    made on a workstation and copied to a robot): it is copied into out_dir. Without it the test model is
    exported here, which needs torch and onnx; where they are missing the calling test skips.
    """
    import importlib.util

    import pytest

    from slimseg_ros.manifest import Manifest

    out_dir = Path(out_dir)
    given = os.environ.get("SLIMSEG_TEST_EXPORT")
    if given:
        manifest = Manifest.load(Path(given) / "manifest.yaml")  # a bad folder fails here, it never skips
        size = manifest.input_size
        assert size == (height, width), f"SLIMSEG_TEST_EXPORT={given} is {size}, tests need {(height, width)}"
        shutil.copytree(given, out_dir, dirs_exist_ok=True)
        return out_dir / "manifest.yaml"
    if any(importlib.util.find_spec(m) is None for m in ("torch", "onnx")):
        pytest.skip("exporting the test model needs torch and onnx (pip install .[train,export]); or set "
                    "SLIMSEG_TEST_EXPORT to a folder written by `python tests/exported.py DIR`")
    return export_test_manifest(out_dir, height=height, width=width)


def _intact(folder: Path, manifest_text: str) -> bool:
    """A cached export is reused only if no test has edited its manifest or damaged its files since."""
    from slimseg_ros.errors import SlimsegError
    from slimseg_ros.manifest import Manifest, verify_file

    path = folder / "manifest.yaml"
    if not path.is_file() or path.read_text() != manifest_text:
        return False
    manifest = Manifest.load(path)
    try:
        for w in manifest.widths:
            manifest.verify(w)
        verify_file(manifest.checkpoint_path(), manifest.checkpoint_sha256)
    except SlimsegError:
        return False
    return (folder / "checkpoint.json").is_file()


if __name__ == "__main__":  # `python tests/exported.py DIR`: the export SLIMSEG_TEST_EXPORT names
    import sys

    target = Path(sys.argv[1])
    shutil.rmtree(target, ignore_errors=True)
    print(export_test_manifest(target))
