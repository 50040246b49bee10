"""Reading a training config: a YAML file merged over its `base:` chain, then `key.path=value` overrides.

A file may name a `base:` config (a path relative to itself) that it is merged over, so the arms of one
protocol share its data/optim/train blocks instead of copying them. The result is typed by
training/run_config.py, which holds the defaults and rejects unknown keys (typos would otherwise silently
train the default).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.run_config import RunConfig


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "unlabeled":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_override(cfg: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in override:
        raise SlimsegError(f"override {override!r} is not key=value", "e.g. --set train.steps=100")
    key, raw = override.split("=", 1)
    node = cfg
    parts = key.strip().split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = yaml.safe_load(raw)


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One config file merged over its `base:` chain (each base path relative to the file naming it)."""
    p = Path(path)
    if not p.is_file():
        raise SlimsegError(f"config file not found: {p}", "see training/configs/ for examples")
    if p.resolve() in _seen:
        raise SlimsegError(f"config {p} is its own base", " -> ".join(str(s) for s in (*_seen, p.resolve())))
    try:
        user = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SlimsegError(f"config {p} is not valid YAML: {exc}") from exc
    if not isinstance(user, dict):
        raise SlimsegError(f"config {p} must be a mapping at the top level")
    base = user.pop("base", None)
    if base is None:
        return user
    return deep_merge(read_config_file(p.parent / str(base), (*_seen, p.resolve())), user)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (and its bases), apply overrides and type it (defaults: training/run_config.py)."""
    user = read_config_file(path) if path is not None else {}
    for o in overrides or []:
        apply_override(user, o)
    return RunConfig.from_dict(user)
