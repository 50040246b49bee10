"""FLOPs/params per width: counted on each sub-network, strictly falling with width; `slimseg info` output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from slimseg_ros.cli import main  # noqa: E402
from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.checkpoint import save_checkpoint  # noqa: E402
from slimseg_ros.training.flops import count_flops, count_params, width_costs  # noqa: E402
from slimseg_ros.training.model import ModelConfig, SlimSegNet  # noqa: E402


def test_conv_flops_golden_value() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, 32, 48) == 2 * 8 * 3 * 9 * 32 * 48  # 2 FLOPs per multiply-add
    assert count_params(conv) == 8 * 3 * 9


@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv2"])
def test_flops_and_params_strictly_fall_with_width(arch: str) -> None:
    model = SlimSegNet(ModelConfig(arch=arch))
    costs = width_costs(model, 64, 96)
    assert [c.width for c in costs] == [0.25, 0.5, 0.75, 1.0]
    flops = [c.flops for c in costs]
    params = [c.params for c in costs]
    assert all(a < b for a, b in zip(flops, flops[1:], strict=False)), flops
    assert all(a < b for a, b in zip(params, params[1:], strict=False)), params
    assert flops[0] < 0.15 * flops[-1]  # roughly quadratic in width
    # the widest sub-network has every weight except the training-only boundary head and unused private BNs
    assert params[-1] < count_params(model)


def test_too_small_input_is_rejected() -> None:
    with pytest.raises(SlimsegError, match="too small"):
        width_costs(SlimSegNet(ModelConfig(arch="mobilenetv2", widths=(1.0,))), 16, 480)


def test_info_command_prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "costs.json"
    rc = main(["info", "--arch", "mobilenetv2", "--widths", "0.5", "1.0", "--height", "64", "--width", "96",
               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["arch"] == "mobilenetv2" and [r["width"] for r in data["widths"]] == [0.5, 1.0]
    assert data["widths"][0]["flops"] < data["widths"][1]["flops"]
    assert "mobilenetv2" in capsys.readouterr().out


def test_info_from_checkpoint_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stem = save_checkpoint(tmp_path / "m", SlimSegNet(ModelConfig(arch="mobilenetv2", widths=(1.0,))), {})
    assert main(["info", "--ckpt", str(stem), "--height", "64", "--width", "64"]) == 0
    assert main(["info", "--ckpt", str(tmp_path / "nope")]) == 2
    assert "nope.json does not exist" in capsys.readouterr().err
    assert main(["info", "--widths", "0.5", "2"]) == 2


def test_single_width_model_matches_that_width_of_the_slimmable_one() -> None:
    """The independent per-width baseline (widths=[w]) must be the same architecture as width w."""
    slim = SlimSegNet(ModelConfig(arch="mobilenetv2", widths=(0.25, 0.5, 1.0)))
    alone = SlimSegNet(ModelConfig(arch="mobilenetv2", widths=(0.5,)))
    a, b = slim.subnet(0.5), alone.subnet(0.5)
    assert count_params(a) == count_params(b)
    assert count_flops(a, 64, 64) == count_flops(b, 64, 64)
