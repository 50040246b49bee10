"""Checkpoints as `X.safetensors` (weights) + `X.json` (metadata): portable, inspectable, never unpickled.

The JSON carries everything needed to rebuild and use the model (architecture, widths, class names and
colours, input normalisation, training config, step), so export and evaluation need no training config.
Every way a checkpoint can be wrong (missing sibling, truncated or foreign weights, wrong format or
architecture) becomes a SlimsegError that names the file and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.model import ModelConfig, SlimSegNet

FORMAT = "slimseg-checkpoint/1"
INT8 = "int8-per-channel"  # safetensors header value of `weights` for compact (distribution) checkpoints
SCALE_SUFFIX = ".int8_scale"
IMAGENET_MEAN = [123.675, 116.28, 103.53]  # RGB, 0-255 scale
IMAGENET_STD = [58.395, 57.12, 57.375]


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) paths of a checkpoint given its stem or either of its two files."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _default_colors(n: int) -> list[list[int]]:
    """Distinct-enough colours for classes nobody named (deterministic, so reloads look the same)."""
    return [[(37 * i + 80) % 256, (91 * i + 160) % 256, (53 * i + 40) % 256] for i in range(n)]


def _complete_meta(meta: dict[str, Any], cfg: ModelConfig) -> dict[str, Any]:
    """Fill unspecified metadata with documented defaults and check what was given."""
    n = cfg.num_classes
    out = {
        "classes": [f"class_{i}" for i in range(n)],
        "colors": _default_colors(n),
        "ignore_index": 255,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "train": {},
        "step": 0,
        **{k: v for k, v in meta.items() if k not in ("format", "model")},
    }
    if len(out["classes"]) != n or len(out["colors"]) != n:
        raise SlimsegError(
            f"checkpoint metadata has {len(out['classes'])} classes and {len(out['colors'])} colours "
            f"for a model with {n} classes",
            "pass one name and one RGB colour per class",
        )
    for key in ("mean", "std"):
        if len(out[key]) != 3:
            raise SlimsegError(f"checkpoint metadata '{key}' must have 3 (RGB) values, got {out[key]}")
    return {"format": FORMAT, "model": cfg.to_dict(), **out}


def _quantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Conv/linear weights as int8 with one fp32 scale per output channel; everything else unchanged.

    Why: a ResNet-18 SlimSegNet is 49 MB in fp32, too big to commit beside the code; int8 weights make it
    12 MB, and per-output-channel symmetric scales keep the dequantised weights within 0.4% of their range.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if value.is_floating_point() and value.ndim >= 2:
            flat = value.float().reshape(value.shape[0], -1)
            scale = (flat.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
            out[key] = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(value.shape)
            out[key + SCALE_SUFFIX] = scale
        else:
            out[key] = value
    return out


def _dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in state.items() if not k.endswith(SCALE_SUFFIX)}
    for key, value in out.items():
        scale = state.get(key + SCALE_SUFFIX)
        if scale is not None:
            shape = (-1,) + (1,) * (value.ndim - 1)
            out[key] = value.float() * scale.reshape(shape)
    return out


def save_checkpoint(path: str | Path, model: SlimSegNet, meta: dict[str, Any], int8: bool = False) -> Path:
    """Write weights and metadata side by side; returns the stem path (give it to load_checkpoint).

    `int8=True` stores conv weights as per-channel int8 (4x smaller, for shipping a trained model); load it
    with the same load_checkpoint, which dequantises.
    """
    weights, meta_path = checkpoint_paths(path)
    full = _complete_meta(dict(meta), model.cfg)
    try:
        text = json.dumps(full, indent=2)
    except TypeError as exc:
        raise SlimsegError(f"checkpoint metadata for {meta_path} is not JSON-serialisable: {exc}") from exc
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "arch": model.cfg.arch, "weights": INT8 if int8 else "float"}
    save_file(_quantize(state) if int8 else state, str(weights), metadata=header)
    meta_path.write_text(text + "\n")
    return weights.with_suffix("")


def _read_meta(meta_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SlimsegError(f"cannot read checkpoint metadata {meta_path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SlimsegError(f"checkpoint metadata {meta_path} is not valid JSON: {exc}",
                           "the file is corrupt or truncated; re-save the checkpoint") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise SlimsegError(f"checkpoint metadata {meta_path} has format {found!r}, expected {FORMAT!r}",
                           "is this a slimseg checkpoint?")
    if "model" not in meta:
        raise SlimsegError(f"checkpoint metadata {meta_path} has no 'model' section")
    return meta


def _read_weights(weights: Path, arch: str) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(weights), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SlimsegError(f"checkpoint weights {weights} are unreadable: {exc}",
                           "the file is corrupt, truncated or not safetensors") from exc
    if header.get("arch", arch) != arch:
        raise SlimsegError(f"checkpoint weights {weights} were saved from a {header['arch']} model, "
                           f"but its metadata file describes {arch}",
                           "the .safetensors and .json files belong to different checkpoints")
    if header.get("weights") == INT8:
        return _dequantize(state)
    if any(k.endswith(SCALE_SUFFIX) for k in state):
        raise SlimsegError(f"checkpoint weights {weights} hold int8 scales but no int8 header",
                           "the file was modified after saving; re-save the checkpoint")
    return state


def _check_state(weights: Path, state: dict[str, torch.Tensor], model: SlimSegNet, arch: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} tensors with the wrong shape (e.g. {k}: file {tuple(state[k].shape)}, "
                        f"model {tuple(expected[k].shape)})")
    if problems:
        raise SlimsegError(
            f"checkpoint weights {weights} do not match a {arch} SlimSegNet: " + "; ".join(problems),
            "the .safetensors and .json files belong to different models, or the file is foreign",
        )


def load_checkpoint(path: str | Path) -> tuple[SlimSegNet, dict[str, Any]]:
    """Rebuild the model from metadata and load its weights; returned in eval mode at the widest width."""
    weights, meta_path = checkpoint_paths(path)
    for p in (meta_path, weights):
        if not p.is_file():
            raise SlimsegError(f"checkpoint file {p} does not exist",
                               "a checkpoint is X.safetensors plus X.json side by side")
    meta = _read_meta(meta_path)
    try:
        cfg = ModelConfig.from_dict(meta["model"])
    except SlimsegError as exc:
        raise SlimsegError(f"checkpoint metadata {meta_path}: {exc.args[0]}", exc.hint) from exc
    state = _read_weights(weights, cfg.arch)
    model = SlimSegNet(cfg)
    _check_state(weights, state, model, cfg.arch)
    model.load_state_dict(state, strict=True)
    return model.eval(), meta


def main(argv: list[str] | None = None) -> int:
    """`python -m slimseg_ros.training.checkpoint SRC DST [--int8]`: re-save a checkpoint (e.g. compact)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("src", help="checkpoint stem or file")
    parser.add_argument("dst", help="output stem")
    parser.add_argument("--int8", action="store_true", help="per-channel int8 conv weights (4x smaller)")
    args = parser.parse_args(argv)
    model, meta = load_checkpoint(args.src)
    out = save_checkpoint(args.dst, model, meta, int8=args.int8)
    size = checkpoint_paths(out)[0].stat().st_size / 1e6
    print(f"wrote {out}.safetensors ({size:.1f} MB) and {out}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
