"""Semi-supervised step strategies: `method: mgd` (student) and `method: mgd_teacher` (teacher pre-training).

Both take a labelled batch and an unlabelled batch from the trainer. The unlabelled batch is split in two
halves (u0, u1) that are CutMix-ed with one box mask per pair: the mixed image goes through the network, and
its target is the mix of the predictions on u0 and u1 under the SAME mask (as in MGD's reference code).

mgd           every width of the slimmable student runs once on [labelled ; mixed]. Loss terms named `mgd_*`
              see the whole batch with the frozen teachers' outputs in `ctx.extra["mgd"]` (pseudo-labels,
              logits, features, from `prepare_mgd_extra`); every other term (SlimSeg's CE/OHEM, stepwise KD,
              boundary) sees only the labelled part, exactly as in supervised SlimSeg.
mgd_teacher   the teacher being trained gives its own pseudo-labels (no gradients; a mean-teacher average
              of its weights, `loss.ema`) on u0 and u1; `mgd_pixel` with `teachers: [self]` asks its
              prediction on the mix to match the mixed pseudo-labels (CutMix consistency, French et al. 2020;
              the reference code instead trains the teachers jointly with cross pseudo supervision, which
              needs two networks in one run).
partition_record  extras provider for every partition run: refuses a --data that is not a partition of
              the expected fraction and copies its file lists into the run folder.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.cutmix import box_masks, mix_images
from slimseg_ros.training.extras import ExtraProvider, register_extra
from slimseg_ros.training.losses import LossContext
from slimseg_ros.training.slimmable import set_width
from slimseg_ros.training.steps import StepStrategy, register_step
from slimseg_ros.training.teachers import MGDProvider

if TYPE_CHECKING:
    from slimseg_ros.training.context import TrainContext
    from slimseg_ros.training.run_config import RunConfig

_OHEM = {"name": "ce", "weight": 1.0, "ohem": True}  # OHEM CE as in the MGD reference code


def split_pair(unlabeled: dict[str, Any] | None, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Halves (u0, u1) of the unlabelled batch: CutMix needs two images per mixed one."""
    if unlabeled is None or "image" not in unlabeled:
        raise SlimsegError(
            f"method {method} needs unlabelled images",
            "set data.unlabeled: {folders: [runs/camvid_1of8/unlabeled], batch_size: 16}",
        )
    u = unlabeled["image"]
    if u.shape[0] < 2:
        raise SlimsegError(
            f"method {method} needs an unlabelled batch of at least 2 images, got {u.shape[0]}",
            "raise data.unlabeled.batch_size",
        )
    half = u.shape[0] // 2
    return u[:half], u[half : 2 * half]


def draw_masks(u0: torch.Tensor, cutmix: dict[str, Any], generator: torch.Generator | None) -> torch.Tensor:
    """One box mask per pair, on the images' device."""
    n, _, h, w = u0.shape
    return box_masks(n, h, w, generator=generator, device=u0.device, **cutmix)


@torch.no_grad()
def prepare_mgd_extra(
    teachers: dict[str, Any],
    labeled: torch.Tensor,
    u0: torch.Tensor,
    u1: torch.Tensor,
    mixed: torch.Tensor,
    mask: torch.Tensor,
    run: Any,
) -> dict[str, dict[str, torch.Tensor]]:
    """Teacher pseudo-labels, logits and features on [labelled ; mix(u0, u1)] for the mgd_* terms.

    `run(images)` returns {teacher name: aux outputs}. Pseudo-labels of the mixed images are the argmax of
    the teachers' logits on u0 and u1 mixed with the same mask; logits/features for the image- and
    region-level terms are the teachers' outputs on the mixed image itself (what the student sees).
    """
    on_l, on_u0, on_u1, on_mix = run(labeled), run(u0), run(u1), run(mixed)
    out: dict[str, dict[str, torch.Tensor]] = {"pseudo": {}, "logits": {}, "feat": {}}
    for name in teachers:
        mixed_logits = mix_images(on_u0[name]["logits"], on_u1[name]["logits"], mask)
        out["pseudo"][name] = torch.cat([on_l[name]["logits"].argmax(1), mixed_logits.argmax(1)])
        out["logits"][name] = torch.cat([on_l[name]["logits"], on_mix[name]["logits"]])
        out["feat"][name] = torch.cat([on_l[name]["feat"], on_mix[name]["feat"]])
    return out


def is_semi_term(name: str) -> bool:
    """Terms that see the whole [labelled ; mixed] batch (the rest see only the labelled part)."""
    return name.startswith("mgd_")


class _SemiStep(StepStrategy):
    """Shared loop: one forward per width on [labelled ; mixed], terms split by the batch part they need.

    A subclass says only what the mgd_* terms compare against (`semi_targets`)."""

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        # One WeightedLoss holds every term (so all of them are moved, optimised and checkpointed by the
        # trainer); run_widths selects the supervised and the mgd_* terms for their batch parts.
        if not any(is_semi_term(n) for n in self.loss.names):
            raise SlimsegError(f"method {cfg.method} has no mgd_* loss term", "add e.g. {name: mgd_pixel}")
        # CutMix box parameters (training/cutmix.py box_masks keywords) under loss.cutmix; reference defaults
        self.cutmix = dict(cfg.loss.cutmix)
        if "prop_range" in self.cutmix:
            self.cutmix["prop_range"] = tuple(self.cutmix["prop_range"])
        self.generator = torch.Generator().manual_seed(cfg.train.seed + 7919)  # CutMix boxes per run

    def semi_targets(self, runner: torch.nn.Module, batch: dict[str, Any], u0: torch.Tensor, u1: torch.Tensor,
                     mixed: torch.Tensor, mask: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """`ctx.extra["mgd"]` of the step: pseudo-labels, logits and features on [labelled ; mixed]."""
        raise NotImplementedError

    def compute(self, runner: torch.nn.Module, batch: dict[str, Any], unlabeled: dict[str, Any] | None,
                extra: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """CutMix the unlabelled pair with one box mask, then every width on [labelled ; mixed]."""
        u0, u1 = split_pair(unlabeled, self.cfg.method)
        mask = draw_masks(u0, self.cutmix, self.generator)
        mixed = mix_images(u0, u1, mask)
        semi = self.semi_targets(runner, batch, u0, u1, mixed, mask)
        return self.run_widths(runner, batch, mixed, semi, extra)

    def run_widths(
        self,
        runner: torch.nn.Module,
        batch: dict[str, Any],
        mixed: torch.Tensor,
        semi: dict[str, Any],
        extra: dict[str, Any],
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Every width on [labelled ; mixed]: supervised terms on the labelled slice, mgd_* on all of it."""
        n_l = batch["image"].shape[0]
        outs = runner(torch.cat([batch["image"], mixed]))
        widths = sorted(outs)
        total: torch.Tensor | None = None
        logs: dict[str, float] = {}
        full_extra = {**extra, "mgd": semi}
        for w in sorted(widths, reverse=True):
            t = self.teacher_of(w, widths)
            teacher = None if t is None else {k: v[:n_l].detach() for k, v in outs[t].items()}
            sup = LossContext(
                student={k: v[:n_l] for k, v in outs[w].items()},
                target=batch["label"],
                width=w,
                is_widest=w == widths[-1],
                teacher=teacher,
                boundary_gt=batch.get("boundary"),
                ignore_index=self.ignore_index,
                extra=extra,
            )
            whole = LossContext(
                student=outs[w],
                target=None,
                width=w,
                is_widest=w == widths[-1],
                ignore_index=self.ignore_index,
                extra=full_extra,
            )
            loss_s, parts_s = self.loss(sup, lambda n: not is_semi_term(n))
            loss_u, parts_u = self.loss(whole, is_semi_term)
            total = loss_s + loss_u if total is None else total + loss_s + loss_u
            logs.update({f"w{w:g}/{k}": v for k, v in {**parts_s, **parts_u}.items()})
        assert total is not None
        logs["loss"] = float(total.detach())
        return total, logs


@register_step("mgd")
class MGDStep(_SemiStep):
    """MGD student: SlimSeg terms on labelled pixels + MGD pixel/image/region terms with frozen teachers."""

    default_terms = [
        {**_OHEM, "apply_to": "widest"},
        {**_OHEM, "weight": 0.5, "apply_to": "narrower"},
        {"name": "kd", "weight": 1.0, "temperature": 1.0},
        {"name": "boundary_bce", "weight": 1.0},
        {"name": "boundary_guided", "weight": 0.5},
        {"name": "mgd_pixel", "weight": 1.0, "teachers": ["wide", "deep"]},
        {"name": "mgd_image", "weight": 1.0e-3, "teacher": "deep"},
        {"name": "mgd_region", "weight": 100.0, "teacher": "wide"},
    ]
    needs_boundary = True
    teachers: MGDProvider | None = None

    def bind(self, ctx: TrainContext, extras: Sequence[Any]) -> None:
        """Take the frozen teachers of the run's `mgd` extras provider (it loaded them on the device)."""
        self.teachers = next((e for e in extras if isinstance(e, MGDProvider)), None)
        if self.teachers is None:
            raise SlimsegError("method mgd needs the frozen teachers", "add the `mgd` extras provider")

    def semi_targets(self, runner: torch.nn.Module, batch: dict[str, Any], u0: torch.Tensor, u1: torch.Tensor,
                     mixed: torch.Tensor, mask: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        if self.teachers is None:
            raise SlimsegError("method mgd ran before bind()", "the trainer binds the step to its extras")
        return prepare_mgd_extra(self.teachers.nets, batch["image"], u0, u1, mixed, mask, self.teachers.run)


@register_step("mgd_teacher")
class MGDTeacherStep(_SemiStep):
    """MGD teacher pre-training: OHEM on labels + CutMix consistency with mean-teacher pseudo-labels.

    `loss.ema` (e.g. 0.99) makes the pseudo-labels come from an exponential moving average of the weights
    (mean teacher, as French et al. use with CutMix), which changes slowly and so gives steadier targets than
    the network's current weights; `loss.ema: null` uses the current weights. The average is updated at the
    start of each step, from the weights the previous optimizer step produced; it is not saved, so a resumed
    run restarts it from the resumed weights.
    """

    default_terms = [_OHEM, {"name": "mgd_pixel", "weight": 1.0, "teachers": ["self"]}]

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self.ema_decay = cfg.loss.ema  # in [0, 1) or None (checked by training/run_config.py LossConfig)
        self.ema: torch.nn.Module | None = None

    @torch.no_grad()
    def update_ema(self, net: torch.nn.Module) -> torch.nn.Module:
        """The averaged copy of `net` (created on first use), moved one step towards the current weights."""
        assert self.ema_decay is not None
        if self.ema is None:
            self.ema = copy.deepcopy(net).requires_grad_(False)
        else:
            d = self.ema_decay
            for e, p in zip(self.ema.parameters(), net.parameters(), strict=True):
                e.mul_(d).add_(p.detach(), alpha=1.0 - d)
            for e, b in zip(self.ema.buffers(), net.buffers(), strict=True):
                e.copy_(b)
        return self.ema.eval()

    @torch.no_grad()
    def pseudo_logits(self, runner: torch.nn.Module, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Widest-width logits of the averaged network (eval mode) or of the live one, per image batch."""
        widest = max(self.model_cfg.widths)
        if self.ema_decay is None:
            return [runner(x, widths=[widest])[widest]["logits"] for x in images]
        plain = getattr(runner, "module", runner)  # DistributedDataParallel -> WidthRunner
        ema = self.update_ema(plain.net(widest))
        set_width(ema, widest)
        return [ema(x) for x in images]

    def semi_targets(self, runner: torch.nn.Module, batch: dict[str, Any], u0: torch.Tensor, u1: torch.Tensor,
                     mixed: torch.Tensor, mask: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        p0, p1 = self.pseudo_logits(runner, [u0, u1])
        pseudo_u = mix_images(p0, p1, mask).argmax(1)
        ignore = torch.full_like(batch["label"], self.ignore_index)  # labelled images learn from labels
        return {"pseudo": {"self": torch.cat([ignore, pseudo_u])}, "logits": {}, "feat": {}}


@register_extra("partition_record")
class PartitionRecord(ExtraProvider):
    """Checks that --data is a partition laid out by training/partition.py and saves its lists with the run.

    A `1of8` config trained on the full dataset by mistake would silently use every label; this stops it,
    and copies partition.json / labeled.txt / unlabeled.txt into the run folder so the run documents which
    images had labels.
    """

    def __init__(self, fraction: str | None = None) -> None:
        self.fraction = fraction

    def prepare(self, ctx: TrainContext) -> None:
        from slimseg_ros.training.partition import load_partition, parse_fraction

        root = ctx.data_root
        src = next((d for d in (root, root.parent) if (d / "partition.json").is_file()), None)
        if src is None:
            raise SlimsegError(
                f"--data {root} is not a labelled partition (no partition.json beside it)",
                "lay one out: python -m slimseg_ros.training.partition --data ... --out ...",
            )
        part = load_partition(src)
        if self.fraction is not None and part.fraction != parse_fraction(self.fraction):
            raise SlimsegError(
                f"--data {root} holds a {part.fraction} partition, the config expects {self.fraction}",
                "point --data at the matching partition folder",
            )
        if ctx.dist.is_main:
            out = ctx.out_dir
            out.mkdir(parents=True, exist_ok=True)
            for name in ("partition.json", "labeled.txt", "unlabeled.txt"):
                if (src / name).is_file():
                    shutil.copyfile(src / name, out / name)
