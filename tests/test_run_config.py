"""The typed training config (training/run_config.py) and the one registry type (training/registry.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.config import load_config  # noqa: E402
from slimseg_ros.training.registry import NotRegisteredError, Registry  # noqa: E402
from slimseg_ros.training.run_config import DataConfig, RunConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "training" / "configs").glob("*.yaml"))
SAVED = sorted((REPO / "docs" / "run_logs").glob("**/config.yaml"))  # complete configs written by runs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path: Path) -> None:
    cfg = load_config(path)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert yaml.safe_load(yaml.safe_dump(cfg.to_dict())) == cfg.to_dict()  # what config.yaml records


def test_configs_saved_by_earlier_runs_still_load() -> None:
    assert SAVED
    for path in SAVED:
        RunConfig.from_dict(yaml.safe_load(path.read_text()))


def test_defaults_live_in_the_dataclasses() -> None:
    cfg = load_config(None)
    assert cfg.data == DataConfig() and cfg.data.num_workers == 2 and cfg.train.steps == 3000
    assert cfg.to_dict()["data"]["crop"] == [352, 352]


def test_unknown_key_names_key_section_and_known_keys() -> None:
    with pytest.raises(SlimsegError) as err:
        load_config(None, ["data.num_worker=1"])
    text = str(err.value)
    assert "unknown key in config section data: 'num_worker'" in text and "did you mean 'num_workers'" in text
    assert "known data keys: train_splits, val_split" in text
    with pytest.raises(SlimsegError, match="unknown key in config section loss.cutmix: 'n_box'"):
        load_config(None, ["loss.cutmix.n_box=2"])
    with pytest.raises(SlimsegError, match="unknown key in config section data.unlabeled: 'folder'"):
        load_config(None, ["data.unlabeled.folder=[x]"])
    with pytest.raises(SlimsegError, match="unknown key in config section model: 'width'"):
        load_config(None, ["model.width=[1.0]"])


def test_values_take_the_declared_types() -> None:
    cfg = load_config(None, ["optim.lr=1e-3", "train.steps=5", "data.crop=[64, 96]"])  # YAML: 1e-3 is text
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float) and cfg.data.crop == (64, 96)
    with pytest.raises(SlimsegError, match="train.steps must be int"):
        load_config(None, ["train.steps=many"])
    with pytest.raises(SlimsegError, match="data.flip must be bool"):
        load_config(None, ["data.flip=3"])


def test_registry_lookups_and_errors() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    assert reg.get("a") == 1 and "a" in reg and list(reg) == ["a"]
    with pytest.raises(NotRegisteredError, match="widget not registered: b, known: a"):
        reg.get("b")
    with pytest.raises(KeyError, match="already registered"):
        reg.add("a", 2)


def test_builtin_methods_are_registered_without_imports() -> None:
    """A fresh process that imports only the registries finds KA and MGD (no `imports:` in the config)."""
    code = ("from slimseg_ros.training.steps import STEPS; from slimseg_ros.training.extras import EXTRAS;"
            "from slimseg_ros.training.losses import LOSSES;"
            "from slimseg_ros.training.encoders import ENCODERS;"
            "print(STEPS.names(), EXTRAS.names(), 'mgd_pixel' in LOSSES, 'ka_adapt' in LOSSES,"
            " 'efficientnet_lite0' in ENCODERS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'mgd'" in out and "'mgd_teacher'" in out and "'ka_autoencoder'" in out
    assert "'ka'" in out and "'partition_record'" in out and out.strip().endswith("True True True")
