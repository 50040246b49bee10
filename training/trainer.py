"""The training loop: data, optimizer and poly LR, AMP, DDP, checkpoints, resume, logs, periodic evaluation.

What a step computes lives in training/steps.py (one strategy per method); this module only drives it, in
pieces that can each be run alone: `train_step` (one optimizer step), `RunLog` and `epoch_means` (JSONL and
TensorBoard records), `checkpoint_due` / `save_state` / `resume` (checkpoints) and `validate`; `run` strings
them together. Plug-ins see the run through a TrainContext (training/context.py), never through the Trainer.
Every process builds the same model from the same seed; DDP averages gradients, so replicas stay identical.
BatchNorm under DDP: on CUDA the per-width BNs are converted to SyncBatchNorm (`train.sync_bn: auto`), on
CPU (gloo) each process normalises with its own batch statistics and DDP broadcasts rank 0's running
statistics every forward, so all replicas still hold the same buffers.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Sampler

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.boundary import boundary_map
from slimseg_ros.training.checkpoint import save_checkpoint
from slimseg_ros.training.context import TrainContext, amp_dtype
from slimseg_ros.training.data import UnlabeledImages, dataset_from_config
from slimseg_ros.training.distributed import DistInfo, all_reduce_mean, barrier, init_distributed
from slimseg_ros.training.extras import build_extras, compute_extras
from slimseg_ros.training.initialise import initialise
from slimseg_ros.training.partition import partition_pairs, save_partition
from slimseg_ros.training.run_config import OptimConfig, PartitionConfig, RunConfig
from slimseg_ros.training.steps import STEPS, StepStrategy, WidthRunner
from slimseg_ros.training.train_state import load_train_state, save_train_state, state_paths


class EpochSampler(Sampler[int]):
    """Shuffles per (seed, epoch), shards across processes, drops the ragged tail, can skip done batches.

    Being a pure function of (seed, epoch), it lets --resume continue mid-epoch with exactly the batches an
    uninterrupted run would have seen.
    """

    def __init__(self, n: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0) -> None:
        self.n, self.batch_size, self.world, self.rank, self.seed = n, batch_size, world_size, rank, seed
        self.epoch, self.skip = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return (self.n // self.world) // self.batch_size

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch's permutation and how many of its batches were already trained on."""
        self.epoch, self.skip = int(epoch), int(skip_batches)

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        mine = perm[: (self.n // self.world) * self.world][self.rank:: self.world]
        return mine[: self.batches_per_epoch * self.batch_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.skip * self.batch_size:])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip) * self.batch_size


def poly_lr(base: float, step: int, total: int, power: float, warmup: int = 0) -> float:
    """Linear warm-up then polynomial decay to 0 at `total` steps."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    return base * (1.0 - min(step, total) / max(total, 1)) ** power


def build_optimizer(params: list[nn.Parameter], optim_cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; weight decay only on conv/linear weights (not BN affine parameters or biases)."""
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": optim_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if optim_cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=optim_cfg.lr, momentum=optim_cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=optim_cfg.lr)


def read_classes(data_root: Path, classes_file: str | None, num_classes: int) -> tuple[list[str], list]:
    """Class names and colours from the dataset's classes.json, or generic ones if absent."""
    path = data_root / classes_file if classes_file else None
    if path and path.is_file():
        info = json.loads(path.read_text())
        classes = sorted(info["classes"], key=lambda c: c["id"])
        if len(classes) == num_classes:
            return [c["name"] for c in classes], [list(c["color"]) for c in classes]
    return [f"class_{i}" for i in range(num_classes)], [[(40 * i) % 256, (90 * i) % 256, (150 * i) % 256]
                                                        for i in range(num_classes)]


def seed_everything(seed: int) -> None:
    """Same initial weights in every process and every rerun."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_due(step: int, every: int | None, total: int) -> bool:
    """Whether a periodic save or evaluation falls after `step`: every N steps, never at the last one (the
    end of the run saves and evaluates anyway); 0 or None means never on schedule."""
    return bool(every) and step % int(every) == 0 and step < total


def epoch_means(sums: dict[str, float], count: int, dist: DistInfo) -> dict[str, float]:
    """Per-epoch means of the steps' logs, averaged over processes."""
    return all_reduce_mean({k: v / max(count, 1) for k, v in sums.items()}, dist)


class RunLog:
    """The run's records: one JSON line each in `<out>/metrics.jsonl`, scalars also to TensorBoard.

    Only the main process writes; TensorBoard is skipped when it is not installed or `tensorboard=False`.
    """

    def __init__(self, out: Path, is_main: bool, tensorboard: bool = True) -> None:
        self.path, self.is_main = out / "metrics.jsonl", is_main
        self.writer = self._tensorboard(out) if is_main and tensorboard else None

    @staticmethod
    def _tensorboard(out: Path) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: JSONL only
            return None
        return SummaryWriter(str(out / "tb"))

    def write(self, record: dict[str, Any], scalars: bool = True) -> None:
        """Append `record`; with `scalars`, its numbers (not step/epoch) also go to TensorBoard."""
        if not self.is_main:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if scalars and self.writer is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and k not in ("step", "epoch"):
                    self.writer.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Trainer:
    """Owns model(s), optimizer, data and the loop; `run()` trains to `train.steps` and returns a summary."""

    def __init__(self, cfg: RunConfig | dict[str, Any], data_root: str | Path, out_dir: str | Path,
                 device: str | None = None, resume: bool = False, dist_info: DistInfo | None = None,
                 progress: bool = True) -> None:
        self.cfg = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
        self.data_root, self.out = Path(data_root), Path(out_dir)
        self.dist = dist_info or init_distributed(device)
        self.device = self.dist.device
        tc = self.cfg.train
        if tc.threads and self.device.type == "cpu":
            torch.set_num_threads(tc.threads)
        seed_everything(tc.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick the fastest kernels
        self.strategy: StepStrategy = STEPS.get(self.cfg.method)(self.cfg)
        self.runner: WidthRunner = self.strategy.build_runner()
        if not resume:  # a resumed run reads every weight from its state; no wheel needed then
            initialise(self.runner, self.strategy.model_cfg, tc.init)
        self.runner = self.runner.to(self.device)
        self.loss = self.strategy.loss.to(self.device)
        self.num_classes = self.strategy.model_cfg.num_classes
        self.ignore_index = self.cfg.data.ignore_index
        self.classes, self.colors = read_classes(self.data_root, self.cfg.data.classes_file, self.num_classes)
        self.progress = progress and self.dist.is_main
        self.step = 0
        self.amp_dtype = amp_dtype(self.device, tc.amp)
        self.ctx = TrainContext(config=self.cfg, device=self.device, runner=self.runner, loss=self.loss,
                                amp_dtype=self.amp_dtype, out_dir=self.out, data_root=self.data_root,
                                dist=self.dist)
        try:
            self.extras = build_extras(self.cfg.extras)
        except (KeyError, TypeError) as exc:
            raise SlimsegError(f"extras: {exc}", "check the provider names and their arguments") from exc
        for e in self.extras:
            e.prepare(self.ctx)
        self.strategy.bind(self.ctx, self.extras)
        params = [p for p in self.runner.parameters() if p.requires_grad]
        # Trainable tensors outside the DDP-wrapped runner (loss-term adapters, extras): DDP does not see
        # them, so their gradients are averaged across processes by hand (see _sync_outside_grads).
        self.outside_params = [p for p in self.loss.parameters() if p.requires_grad]
        self.outside_params += [p for e in self.extras for p in e.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(params + self.outside_params, self.cfg.optim)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self._build_data()
        if resume:
            self.resume()
        self.module = self._wrap_ddp()
        self._unlabeled: Iterator[dict[str, Any]] | None = None

    # ---- setup -------------------------------------------------------------------------------------------
    def _wrap_ddp(self) -> nn.Module:
        if not self.dist.distributed:
            return self.runner
        if self.device.type == "cuda" and self.cfg.train.sync_bn in ("auto", True):
            self.runner = nn.SyncBatchNorm.convert_sync_batchnorm(self.runner)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # find_unused_parameters: methods without boundary terms leave the boundary head without gradient.
        return nn.parallel.DistributedDataParallel(self.runner, device_ids=ids, find_unused_parameters=True)

    def _build_data(self) -> None:
        dc, tc = self.cfg.data, self.cfg.train
        self.train_set = dataset_from_config(self.data_root, dc, self.num_classes, train=True, seed=tc.seed)
        withheld = self._apply_partition(dc.partition)
        bs = tc.batch_size
        self.sampler = EpochSampler(len(self.train_set), bs, self.dist.world_size, self.dist.rank, tc.seed)
        if self.sampler.batches_per_epoch == 0:
            raise SlimsegError(f"{len(self.train_set)} training frames cannot fill one batch of {bs} per "
                               f"process on {self.dist.world_size} process(es)", "lower train.batch_size")
        self.loader = DataLoader(self.train_set, batch_size=bs, sampler=self.sampler,
                                 num_workers=dc.num_workers, pin_memory=self.device.type == "cuda",
                                 drop_last=True, persistent_workers=False)
        self.val_set = None
        if dc.val_split:
            self.val_set = dataset_from_config(self.data_root, dc, self.num_classes, False, seed=tc.seed)
        self.unlabeled_loader = None
        if dc.unlabeled is not None:
            uc = dc.unlabeled
            uset = UnlabeledImages(list(uc.folders), dc.crop, dc.scale, dc.mean, dc.std, seed=tc.seed,
                                   files=withheld)
            ubs = uc.batch_size or bs
            self.unlabeled_sampler = EpochSampler(len(uset), ubs, self.dist.world_size, self.dist.rank,
                                                  tc.seed + 1)
            self.unlabeled_loader = DataLoader(uset, batch_size=ubs, sampler=self.unlabeled_sampler,
                                               num_workers=dc.num_workers, drop_last=True)

    def _apply_partition(self, spec: PartitionConfig | None) -> list[Path]:
        """Keep the labels of a seeded share of the training frames (`data.partition`); return the others.

        The lists go into the run folder, so a table row names exactly the frames its labels came from."""
        if spec is None:
            return []
        part, labeled, withheld = partition_pairs(self.train_set.pairs, spec.fraction, spec.seed)
        self.train_set.pairs = labeled
        if self.dist.is_main:
            save_partition(part, self.out)
        return withheld

    # ---- data ----------------------------------------------------------------------------------------------
    def unlabeled_batches(self) -> Iterator[dict[str, Any]]:
        """Endless unlabelled stream (its own epochs), for semi-supervised strategies."""
        epoch = 0
        while True:
            self.unlabeled_sampler.set_epoch(epoch)
            self.unlabeled_loader.dataset.set_epoch(epoch)
            yield from self.unlabeled_loader
            epoch += 1

    def epoch_batches(self, epoch: int,
                      skip: int | None = None) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(labelled batch, unlabelled batch or None) pairs of `epoch` after its first `skip` batches; by
        default those the step count says were trained on (a resumed run continues mid-epoch with exactly
        the batches an uninterrupted run would see)."""
        if skip is None:
            skip = self.step - epoch * self.sampler.batches_per_epoch
        self.sampler.set_epoch(epoch, skip)
        self.train_set.set_epoch(epoch)
        if self.unlabeled_loader is not None and self._unlabeled is None:
            self._unlabeled = self.unlabeled_batches()
        for batch in self.loader:
            yield batch, next(self._unlabeled) if self._unlabeled is not None else None

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def checkpoint_meta(self) -> dict[str, Any]:
        """Metadata stored next to every saved model (see training/checkpoint.py)."""
        dc = self.cfg.data
        return {"classes": self.classes, "colors": self.colors, "ignore_index": self.ignore_index,
                "mean": list(dc.mean), "std": list(dc.std), "train": self.cfg.to_dict(), "step": self.step,
                "method": self.cfg.method}

    def save_models(self, name: str) -> list[Path]:
        """Save deployable checkpoint(s): `<out>/<name>` (shared) or `<out>/<name>_w<w>` per width."""
        meta = self.checkpoint_meta()
        out = []
        for widths, net in self.runner.unique_nets():
            stem = name if self.runner.shared else f"{name}_w{widths[0]:g}"
            out.append(save_checkpoint(self.out / stem, net, meta))
        return out

    def save_state(self) -> None:
        """Write `last` model checkpoint(s) and the resumable training state (main process only)."""
        if not self.dist.is_main:
            return
        self.save_models("last")
        state = dict(self.runner.state_dict())
        state.update({f"__loss.{k}": v for k, v in self.loss.state_dict().items()})
        for i, e in enumerate(self.extras):
            state.update({f"__extra{i}.{k}": v for k, v in e.state_dict().items()})
        save_train_state(self.out / "train_state", state, self.optimizer,
                         {"step": self.step, "method": self.cfg.method, "config": self.cfg.to_dict()},
                         self.scaler.state_dict() if self.scaler.is_enabled() else None)

    def resume(self) -> None:
        """Load the weights, loss and extras state, optimizer and step that `save_state` wrote."""
        tensors, optim_state, info = load_train_state(self.out / "train_state")
        if info.get("method") != self.cfg.method:
            raise SlimsegError(f"{state_paths(self.out / 'train_state')[1]} was written by method "
                               f"{info.get('method')!r}, config says {self.cfg.method!r}",
                               "resume with the same config or use a new --out")
        model_state = {k: v for k, v in tensors.items() if not k.startswith("__")}
        self.runner.load_state_dict(model_state, strict=True)
        loss_state = {k[len("__loss."):]: v for k, v in tensors.items() if k.startswith("__loss.")}
        if loss_state:
            self.loss.load_state_dict(loss_state, strict=False)
        for i, e in enumerate(self.extras):
            p = f"__extra{i}."
            e.load_state_dict({k[len(p):]: v for k, v in tensors.items() if k.startswith(p)})
        self.optimizer.load_state_dict(optim_state)
        if info.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(info["scaler"])
        self.step = int(info["step"])

    # ---- evaluation ----------------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        """mIoU / boundary mIoU of every width on data.val_split (main process; others wait)."""
        result = None
        if self.dist.is_main and self.val_set is not None:
            from slimseg_ros.training.evaluate import evaluate_nets

            nets = {w: net for ws, net in self.runner.unique_nets() for w in ws}
            result = evaluate_nets(nets, self.val_set, self.device, self.num_classes, self.ignore_index,
                                   self.cfg.train.boundary_px, class_names=self.classes)
            self.runner.train()
        barrier(self.dist)
        return result

    # ---- one step ------------------------------------------------------------------------------------------
    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def _sync_outside_grads(self) -> None:
        """Average gradients of trainable tensors that DDP does not manage, so replicas stay identical."""
        if not self.dist.distributed or not self.outside_params:
            return
        import torch.distributed as dist

        for p in self.outside_params:
            if p.grad is None:  # every process must join every all_reduce, used or not
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= self.dist.world_size

    def train_step(self, batch: dict[str, Any], unlabeled: dict[str, Any] | None) -> dict[str, float]:
        """One optimizer step on one batch (every width); returns the step's logs."""
        oc = self.cfg.optim
        lr = poly_lr(oc.lr, self.step, self.cfg.train.steps, oc.poly_power, oc.warmup_steps)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        batch = self._to_device(batch)
        if self.strategy.needs_boundary:
            batch["boundary"] = boundary_map(batch["label"], self.num_classes, self.ignore_index,
                                             self.cfg.loss.boundary_kernel)
        if unlabeled is not None:
            unlabeled = self._to_device(unlabeled)
        with self.ctx.autocast():  # frozen teachers in extras run in mixed precision too
            extra = compute_extras(self.extras, batch["image"], batch)
            loss, logs = self.strategy.compute(self.module, batch, unlabeled, extra)
        if not torch.isfinite(loss):
            raise SlimsegError(f"loss is {float(loss)} at step {self.step}",
                               "lower optim.lr, or set train.amp: none to rule out fp16 overflow")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._sync_outside_grads()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        logs["lr"] = lr
        return logs

    # ---- the loop ------------------------------------------------------------------------------------------
    def _stop_now(self) -> bool:
        stop = self.cfg.train.stop_after
        return bool(stop) and self.step >= stop

    def after_step(self, epoch: int, log: RunLog) -> dict[str, Any] | None:
        """The schedules between steps: save the resumable state, evaluate; returns the evaluation if any."""
        tc = self.cfg.train
        if checkpoint_due(self.step, tc.ckpt_every, tc.steps):
            self.save_state()
        if checkpoint_due(self.step, tc.val_every, tc.steps):
            val = self.validate()
            log.write({"step": self.step, "epoch": epoch, "val": val}, scalars=False)
            return val
        return None

    def train_epoch(self, epoch: int, log: RunLog, bar: Any = None) -> dict[str, float]:
        """Train the rest of `epoch` (to train.steps or train.stop_after); returns the epoch's mean logs."""
        sums: dict[str, float] = {}
        count = 0
        for batch, unlabeled in self.epoch_batches(epoch):
            logs = self.train_step(batch, unlabeled)
            count += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
                if self.step % max(self.cfg.train.log_every, 1) == 0:
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", lr=f"{logs['lr']:.2e}")
            self.after_step(epoch, log)
            if self.step >= self.cfg.train.steps or self._stop_now():
                break
        return epoch_means(sums, count, self.dist)

    def finish(self, wall: float, log: RunLog) -> dict[str, Any]:
        """End of the run: resumable state; at train.steps also the final model(s), evaluation, summary."""
        self.save_state()
        if self.step < self.cfg.train.steps:  # stopped early on purpose: resumable state only, no final model
            return {"step": self.step, "wall_s": round(wall, 1), "checkpoints": [], "val": None}
        saved = self.save_models("final") if self.dist.is_main else []
        val = self.validate()
        summary = {"step": self.step, "wall_s": round(wall, 1), "checkpoints": [str(p) for p in saved],
                   "val": val}
        log.write({"step": self.step, "epoch": "final", "wall_s": round(wall, 1), "val": val}, scalars=False)
        if self.dist.is_main:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def run(self) -> dict[str, Any]:
        """Train until `train.steps`, checkpointing and validating on schedule; returns the final summary."""
        total, per_epoch = self.cfg.train.steps, self.sampler.batches_per_epoch
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        log = RunLog(self.out, self.dist.is_main)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, desc=f"train {self.cfg.method}", dynamic_ncols=True)
        start = time.time()
        self.runner.train()
        while self.step < total:
            epoch = self.step // per_epoch
            means = self.train_epoch(epoch, log, bar)
            log.write({"epoch": epoch, "step": self.step, "time_s": round(time.time() - start, 2), **means})
            if self._stop_now():
                break
        if bar is not None:
            bar.close()
        summary = self.finish(time.time() - start, log)
        log.close()
        return summary


def miou_line(val: dict[str, Any] | None) -> str:
    """One-line per-width mIoU summary for the console."""
    if not val:
        return "no validation split"
    parts = []
    for w, r in sorted(val.items(), key=lambda kv: float(kv[0])):
        m, b = r.get("miou"), r.get("boundary_miou")
        parts.append(f"w{w}: mIoU {100 * m:.1f}" + (f" / bIoU {100 * b:.1f}" if b is not None else "")
                     if m is not None and not math.isnan(m) else f"w{w}: n/a")
    return ", ".join(parts)
