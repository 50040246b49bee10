"""Step time and peak memory of one training configuration, so a user can size a run before starting it.

Builds the real Trainer from the config, runs `--warmup` steps, then times `--steps` more (synchronising
CUDA; data loading is not timed), and prints the median / p90 step time and the peak memory:
`torch.cuda.max_memory_allocated` on GPU, the process's peak RSS on CPU (includes Python and torch),
and the FLOPs of one whole step (torch.utils.flop_counter: forward + backward, frozen teachers included;
the machine-independent figure, counted on the first warm-up step).
Teachers or autoencoders the config names but that do not exist yet (you are sizing the run before training
them) are replaced by untrained stand-ins of the right architecture: a step costs the same whatever the
weights.

    python -m slimseg_ros.training.step_cost --config training/configs/slimseg_mgd_1of8.yaml \\
        --data runs/camvid_1of8/data --steps 20 [--set train.batch_size=8 ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from slimseg_ros.training.module_cli import module_main
from slimseg_ros.training.run_config import RunConfig

CONFIGS = Path(__file__).resolve().parent / "configs"


def _stand_in(path: str, model: dict[str, Any], tmp: Path) -> str:
    """An untrained checkpoint of `model` when `path` does not exist yet."""
    from slimseg_ros.training.checkpoint import checkpoint_paths, save_checkpoint
    from slimseg_ros.training.model import ModelConfig, SlimSegNet

    if checkpoint_paths(path)[0].is_file():
        return path
    stem = tmp / f"stand_in_{abs(hash(path))}"
    save_checkpoint(stem, SlimSegNet(ModelConfig.from_dict(model)), {"train": {}, "step": 0})
    return str(stem)


def _teacher_model(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Model section of the shipped MGD teacher config `name` (wide/deep), else the student's."""
    import yaml

    path = CONFIGS / f"mgd_teacher_{name}.yaml"
    if path.is_file():
        return {**cfg["model"], **(yaml.safe_load(path.read_text()).get("model") or {})}
    return cfg["model"]


def with_stand_ins(config: RunConfig, tmp: Path) -> RunConfig:
    """Copy of the config whose missing teacher/autoencoder files are replaced by untrained stand-ins."""
    from slimseg_ros.training.autoencoder import FeatureAutoencoder, save_autoencoder
    from slimseg_ros.training.model import ModelConfig

    cfg = config.to_dict()
    for spec in cfg.get("extras") or []:
        if "teacher" in spec and spec["teacher"] != "self":
            spec["teacher"] = _stand_in(spec["teacher"], cfg["model"], tmp)
        if "teachers" in spec:
            spec["teachers"] = {
                n: _stand_in(p, _teacher_model(n, cfg), tmp) for n, p in spec["teachers"].items()
            }
        ae = spec.get("autoencoder")
        if ae and not Path(ae).with_suffix(".safetensors").is_file():
            code = next((t["code_channels"] for t in cfg["loss"]["terms"] or [] if "code_channels" in t), 64)
            feat = ModelConfig.from_dict(cfg["model"]).decoder_channels
            spec["autoencoder"] = str(save_autoencoder(FeatureAutoencoder(feat, code), tmp / "stand_in_ae"))
    return RunConfig.from_dict(cfg)


def measure(cfg: RunConfig, data: str | Path, steps: int, warmup: int, device: str | None) -> dict[str, Any]:
    """Median/p90 seconds per optimizer step and peak memory (MiB) of `cfg` on `device`."""
    from slimseg_ros.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = with_stand_ins(cfg, Path(tmp))
        trainer = Trainer(run_cfg, data, Path(tmp) / "run", device=device, progress=False)
        cuda = trainer.device.type == "cuda"
        batches = trainer.epoch_batches(0, skip=0)
        times: list[float] = []
        step_flops = 0
        for i in range(warmup + steps):
            try:  # data loading stays outside the clock; epoch 0 again when it runs out
                batch, unlabeled = next(batches)
            except StopIteration:
                batches = trainer.epoch_batches(0, skip=0)
                batch, unlabeled = next(batches)
            if i == warmup and cuda:
                torch.cuda.reset_peak_memory_stats(trainer.device)
            if cuda:
                torch.cuda.synchronize(trainer.device)
            t0 = time.perf_counter()
            if i == 0:  # count once: FLOPs do not depend on the machine, so they size a run anywhere
                with FlopCounterMode(display=False) as counter:
                    trainer.train_step(batch, unlabeled)
                step_flops = counter.get_total_flops()
            else:
                trainer.train_step(batch, unlabeled)
            if cuda:
                torch.cuda.synchronize(trainer.device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        if cuda:
            peak = torch.cuda.max_memory_allocated(trainer.device) / 2**20
            kind = f"gpu ({torch.cuda.get_device_name(trainer.device)})"
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
            kind = f"cpu ({torch.get_num_threads()} threads, process peak RSS)"
    times.sort()
    return {
        "method": cfg.method,
        "batch_size": cfg.train.batch_size,
        "unlabeled_batch": cfg.data.unlabeled.batch_size if cfg.data.unlabeled else None,
        "crop": list(cfg.data.crop),
        "step_gflops": round(step_flops / 1e9, 2),  # forward + backward, teachers included
        "step_s_median": round(statistics.median(times), 4),
        "step_s_p90": round(times[min(len(times) - 1, int(0.9 * len(times)))], 4),
        "peak_mib": round(peak, 1),
        "memory": kind,
        "steps_timed": len(times),
    }


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Options of `python -m slimseg_ros.training.step_cost`."""
    ap.add_argument("--config", required=True, help="training YAML")
    ap.add_argument("--data", required=True, help="dataset root (CamVid layout)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (>= 1; FLOPs, cudnn autotune)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")


def run(args: argparse.Namespace) -> int:
    """Measure the configured run; prints one JSON line."""
    from slimseg_ros.training.config import load_config

    cfg = load_config(args.config, args.set)
    result = measure(cfg, args.data, max(1, args.steps), max(1, args.warmup), args.device)
    print(json.dumps({"config": args.config, "overrides": args.set, **result}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI (see the module docstring)."""
    return module_main("slimseg_ros.training.step_cost", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
