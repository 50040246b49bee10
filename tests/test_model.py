"""SlimSegNet: every width's forward for both encoder families, and plain sub-networks equal to the model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.model import ModelConfig, SlimSegNet  # noqa: E402
from slimseg_ros.training.slimmable import SlimmableConv2d, SwitchableBatchNorm2d, set_width  # noqa: E402

ARCHS = ("resnet18", "mobilenetv2", "efficientnet_lite0")
H, W = 64, 96


@pytest.fixture(scope="module", params=ARCHS)
def trained_model(request: pytest.FixtureRequest) -> SlimSegNet:
    """A random model whose private BNs have non-trivial statistics (a few train-mode forwards per width)."""
    torch.manual_seed(0)
    model = SlimSegNet(ModelConfig(arch=request.param, num_classes=5))
    model.train()
    with torch.no_grad():
        for w in model.cfg.widths:
            set_width(model, w)
            for _ in range(2):
                model(torch.randn(2, 3, H, W) * 2 + 0.5)
    set_width(model, 1.0)
    return model.eval()


def test_every_width_forward_shapes(trained_model: SlimSegNet) -> None:
    x = torch.randn(1, 3, H, W)
    d_full = trained_model.cfg.decoder_channels
    with torch.no_grad():
        for w in trained_model.cfg.widths:
            set_width(trained_model, w)
            assert trained_model.width == w
            assert trained_model(x).shape == (1, 5, H, W)
            out = trained_model(x, aux=True)
            assert out["logits"].shape == (1, 5, H, W)
            assert out["boundary"].shape == (1, 1, H, W)
            assert out["feat"].shape == (1, int(w * d_full), H // 8, W // 8)
            assert out["logits_lr"].shape == (1, 5, H // 8, W // 8)
            assert torch.isfinite(out["logits"]).all()
    set_width(trained_model, 1.0)


def test_subnet_equals_slimmable_model_at_every_width(trained_model: SlimSegNet) -> None:
    x = torch.randn(2, 3, H, W)
    subnets = {w: trained_model.subnet(w) for w in trained_model.cfg.widths}  # built while at width 1.0
    with torch.no_grad():
        for w, sub in subnets.items():
            assert not any(isinstance(m, (SlimmableConv2d, SwitchableBatchNorm2d)) for m in sub.modules())
            assert not sub.training
            set_width(trained_model, w)
            ref = trained_model(x)
            got = sub(x)
            assert (got - ref).abs().max().item() <= 1e-5, f"width {w}"
            assert sub.forward_lowres(x).shape == (2, 5, H // 8, W // 8)
    set_width(trained_model, 1.0)
    # a narrower sub-network must really be smaller, not the full model in disguise
    sizes = [sum(p.numel() for p in subnets[w].parameters()) for w in trained_model.cfg.widths]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_widths_differ_in_output(trained_model: SlimSegNet) -> None:
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        outs = []
        for w in (0.25, 1.0):
            set_width(trained_model, w)
            outs.append(trained_model(x))
    set_width(trained_model, 1.0)
    assert not torch.allclose(outs[0], outs[1])


def test_subnet_and_set_width_reject_unknown_width() -> None:
    model = SlimSegNet(ModelConfig(arch="mobilenetv2", widths=(0.5, 1.0)))
    with pytest.raises(ValueError, match="allowed widths: 0.5, 1"):
        model.subnet(0.25)
    with pytest.raises(ValueError, match="allowed widths"):
        set_width(model, 0.75)


def test_config_round_trip_and_validation() -> None:
    cfg = ModelConfig(arch="mobilenetv2", num_classes=7, widths=[0.5, 1.0])
    assert cfg.widths == (0.5, 1.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SlimsegError, match="unknown model config keys: depth"):
        ModelConfig.from_dict({"arch": "resnet18", "depth": 50})
    with pytest.raises(SlimsegError, match="arch 'vgg' is unknown"):
        ModelConfig(arch="vgg")
    with pytest.raises(SlimsegError, match="widths"):
        ModelConfig(widths=(1.0, 0.5))


@pytest.mark.parametrize("arch", ARCHS)
def test_subnet_exports_to_onnx_and_matches_onnxruntime(arch: str, tmp_path) -> None:
    """The export engineer's path: a fixed-size TorchScript-based ONNX export, run by ONNX Runtime."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import warnings

    torch.manual_seed(0)
    sub = SlimSegNet(ModelConfig(arch=arch, num_classes=5)).subnet(0.25)
    x = torch.randn(1, 3, 192, 256)  # 1/32 map is 6x8: the pyramid pooling takes its static-kernel path
    path = tmp_path / "sub.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape constants are expected (fixed size)
        torch.onnx.export(sub, x, str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ref = sub(x).numpy()
    assert got.shape == (1, 5, 192, 256)
    assert abs(got - ref).max() < 1e-4
