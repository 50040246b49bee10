"""Resumable training state (model, optimizer, step, RNG) as safetensors + JSON: no pickle anywhere.

`torch.save` would pickle the optimizer state; here every tensor goes into `X.safetensors` under a flat key
(`model.<name>`, `optim.<param id>.<slot>`, `rng.torch`) and everything else (param groups, step, epoch,
non-tensor slots) into `X.json`, so a state file can be inspected and cannot execute code when loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from slimseg_ros.errors import SlimsegError

FORMAT = "slimseg-train-state/1"


def state_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensors, metadata) file paths of a training state given its stem."""
    stem = Path(path)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (flat keys) and a JSON-safe rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, slots in sd["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{slot}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(pid), {})[slot] = value
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of flatten_optimizer."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, slot = key.split(".", 2)
            state.setdefault(int(pid), {})[slot] = value
    for pid, slots in meta["plain_state"].items():
        state.setdefault(int(pid), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_train_state(path: str | Path, model_state: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                     info: dict[str, Any], scaler_state: dict[str, Any] | None = None) -> Path:
    """Write everything --resume needs; `info` holds step/epoch/config (JSON-safe)."""
    tensor_path, meta_path = state_paths(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
    opt_tensors, opt_meta = flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": FORMAT, "optimizer": opt_meta, "scaler": scaler_state or {}, **info}
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tensor_path.with_name(tensor_path.name + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(tensor_path)  # atomic: an interrupted save never leaves a half-written state
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return tensor_path.with_suffix("")


def load_train_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read a state: (model state_dict, optimizer state_dict, info incl. step/epoch); restores torch RNG."""
    tensor_path, meta_path = state_paths(path)
    for p in (tensor_path, meta_path):
        if not p.is_file():
            raise SlimsegError(f"training state file {p} does not exist",
                               "nothing to resume from; drop --resume")
    try:
        tensors = load_file(str(tensor_path))
        meta = json.loads(meta_path.read_text())
    except (SafetensorError, OSError, ValueError) as exc:
        raise SlimsegError(f"training state {tensor_path} is unreadable: {exc}",
                           "delete it to restart") from exc
    if meta.get("format") != FORMAT:
        raise SlimsegError(f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optim_state = unflatten_optimizer(tensors, meta["optimizer"])
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return model_state, optim_state, meta
