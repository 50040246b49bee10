"""Checkpoints: exact round trip, and a clear SlimsegError for every kind of broken or foreign file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from slimseg_ros.training.model import ModelConfig, SlimSegNet  # noqa: E402
from slimseg_ros.training.slimmable import set_width  # noqa: E402

META = {
    "classes": ["a", "b", "c"],
    "colors": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
    "ignore_index": 11,
    "mean": [1.0, 2.0, 3.0],
    "std": [4.0, 5.0, 6.0],
    "train": {"lr": 0.01},
    "step": 42,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[SlimSegNet, Path]:
    torch.manual_seed(0)
    model = SlimSegNet(ModelConfig(arch="mobilenetv2", num_classes=3, widths=(0.5, 1.0)))
    model.train()
    with torch.no_grad():
        for w in (0.5, 1.0):
            set_width(model, w)
            model(torch.randn(2, 3, 32, 32))
    stem = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", model, META)
    return model.eval(), stem


def test_round_trip_is_exact(saved: tuple[SlimSegNet, Path]) -> None:
    model, stem = saved
    assert stem.with_suffix(".safetensors").is_file() and stem.with_suffix(".json").is_file()
    for given in (stem.with_suffix(".json"), stem.with_suffix(".safetensors")):
        loaded, meta = load_checkpoint(given)
        assert loaded.cfg == model.cfg and not loaded.training
        assert meta["step"] == 42 and meta["classes"] == META["classes"] and meta["train"] == {"lr": 0.01}
        assert meta["format"] == "slimseg-checkpoint/1" and meta["model"]["arch"] == "mobilenetv2"
    ref_state, got_state = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(ref_state[k], got_state[k]) for k in ref_state)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for w in (0.5, 1.0):
            set_width(model, w)
            set_width(loaded, w)
            assert torch.equal(model(x), loaded(x))


def _copy(stem: Path, dst: Path) -> Path:
    for suffix in (".safetensors", ".json"):
        dst.with_suffix(suffix).write_bytes(stem.with_suffix(suffix).read_bytes())
    return dst


def test_missing_sibling(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    stem = _copy(saved[1], tmp_path / "m")
    stem.with_suffix(".json").unlink()
    with pytest.raises(SlimsegError, match=r"m\.json does not exist"):
        load_checkpoint(stem.with_suffix(".safetensors"))


def test_truncated_weights(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    stem = _copy(saved[1], tmp_path / "m")
    weights = stem.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(SlimsegError, match=r"m\.safetensors are unreadable"):
        load_checkpoint(stem)


def test_garbage_weights(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    stem = _copy(saved[1], tmp_path / "m")
    stem.with_suffix(".safetensors").write_bytes(b"\x80\x04 this is a pickle, not safetensors")
    with pytest.raises(SlimsegError, match="unreadable"):
        load_checkpoint(stem)


def test_foreign_safetensors(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    stem = _copy(saved[1], tmp_path / "m")
    save_file({"fc.weight": torch.zeros(2, 2)}, str(stem.with_suffix(".safetensors")))
    with pytest.raises(SlimsegError, match="missing tensors.*unexpected tensors.*fc.weight"):
        load_checkpoint(stem)


def test_siblings_from_different_architectures(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    stem = _copy(saved[1], tmp_path / "m")
    small = ModelConfig(arch="resnet18", num_classes=3, widths=(0.25,))
    other = save_checkpoint(tmp_path / "r", SlimSegNet(small), META)
    stem.with_suffix(".safetensors").write_bytes(other.with_suffix(".safetensors").read_bytes())
    with pytest.raises(SlimsegError, match="saved from a resnet18 model, but its metadata .*mobilenetv2"):
        load_checkpoint(stem)


def test_weights_of_another_model(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    stem = _copy(saved[1], tmp_path / "m")
    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["model"]["num_classes"] = 4
    meta["classes"], meta["colors"] = ["a"] * 4, [[0, 0, 0]] * 4
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(SlimsegError, match=r"wrong shape \(e\.g\. classifier"):
        load_checkpoint(stem)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format="something-else/2"), "has format 'something-else/2'"),
        (lambda m: m["model"].update(arch="vgg"), "arch 'vgg' is unknown"),
        (lambda m: m.pop("model"), "no 'model' section"),
    ],
)
def test_bad_metadata(saved: tuple[SlimSegNet, Path], tmp_path: Path, edit, message: str) -> None:
    stem = _copy(saved[1], tmp_path / "m")
    meta = json.loads(stem.with_suffix(".json").read_text())
    edit(meta)
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(SlimsegError, match=message) as info:
        load_checkpoint(stem)
    assert "m.json" in str(info.value)


def test_truncated_metadata(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    stem = _copy(saved[1], tmp_path / "m")
    text = stem.with_suffix(".json").read_text()
    stem.with_suffix(".json").write_text(text[: len(text) // 2])
    with pytest.raises(SlimsegError, match=r"m\.json is not valid JSON"):
        load_checkpoint(stem)


def test_save_rejects_inconsistent_metadata(tmp_path: Path) -> None:
    model = SlimSegNet(ModelConfig(arch="mobilenetv2", num_classes=3, widths=(1.0,)))
    with pytest.raises(SlimsegError, match="2 classes"):
        save_checkpoint(tmp_path / "x", model, {**META, "classes": ["a", "b"]})
    stem = save_checkpoint(tmp_path / "y", model, {})  # defaults fill what is not given
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert len(meta["classes"]) == 3 and meta["step"] == 0


def test_int8_checkpoint_is_compact_and_close(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    model, stem = saved
    small = save_checkpoint(tmp_path / "small", model, META, int8=True)
    size_fp32 = stem.with_suffix(".safetensors").stat().st_size
    size_int8 = small.with_name("small.safetensors").stat().st_size
    assert size_int8 < 0.4 * size_fp32
    loaded, meta = load_checkpoint(small)
    assert meta["step"] == 42
    x = torch.randn(1, 3, 32, 32)
    for w in (0.5, 1.0):
        set_width(model, w)
        set_width(loaded, w)
        with torch.no_grad():
            ref, got = model(x), loaded(x)
        # per-channel int8 weights: logits move by a small fraction of their spread
        assert (ref - got).abs().max() < 0.05 * ref.std()
    for k, v in model.state_dict().items():
        if v.is_floating_point() and v.ndim >= 2:
            step = v.abs().reshape(v.shape[0], -1).amax(1) / 127
            err = (loaded.state_dict()[k] - v).abs().reshape(v.shape[0], -1).amax(1)
            assert torch.all(err <= step / 2 + 1e-7), k


def test_int8_scales_without_header_are_rejected(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    model, _ = saved
    small = save_checkpoint(tmp_path / "small", model, META, int8=True)
    from safetensors.torch import load_file

    state = load_file(str(small) + ".safetensors")
    save_file(state, str(tmp_path / "small.safetensors"), metadata={"format": "slimseg-checkpoint/1"})
    with pytest.raises(SlimsegError, match="int8"):
        load_checkpoint(small)


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_classes", 10**12), ("decoder_channels", 10**7), ("ppm_channels", 10**9), ("ppm_bins", [1, 10**6])],
)
def test_absurd_sizes_in_metadata_are_refused_before_allocating(
    saved: tuple[SlimSegNet, Path], tmp_path: Path, key: str, value
) -> None:
    """Issue 16 #6: sizes read from a checkpoint are bounded, so a hostile file cannot ask for terabytes."""
    stem = _copy(saved[1], tmp_path / "m")
    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["model"][key] = value
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(SlimsegError, match=f"{key} .* out of range") as info:
        load_checkpoint(stem)
    assert "m.json" in str(info.value)


def test_metadata_error_states_its_hint_once(saved: tuple[SlimSegNet, Path], tmp_path: Path) -> None:
    """Issue 16 #7: the hint of a model-config error appears once in the message, not twice."""
    stem = _copy(saved[1], tmp_path / "m")
    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["model"]["arch"] = "vgg"
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(SlimsegError) as info:
        load_checkpoint(stem)
    text = str(info.value)
    assert info.value.hint and text.count(info.value.hint) == 1, text
