"""Decide whether a recorded TensorRT plan may be deserialised here, must be (re)built, or cannot be.

A TensorRT plan is only valid for the TensorRT version and GPU it was built with; deserialising another one
fails at best and misbehaves at worst. This is pure Python (no tensorrt import) so the rule is tested
everywhere, while the TensorRT layer that acts on the decision stays thin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import PlanRecord

USE, BUILD, REBUILD = "use", "build", "rebuild"
PRECISIONS = ("fp16", "int8", "fp32")  # what `slimseg build-engines --precision` offers
PRECISION_ORDER = ("int8", "fp16", "fp32")  # preferred first when several plans are recorded


@dataclass(frozen=True)
class TrtTarget:
    """What this machine would build for: the running TensorRT and GPU."""

    trt_version: str
    gpu: str
    compute_capability: str


@dataclass(frozen=True)
class PlanDecision:
    """`action` is use | build | rebuild; `plan` is the recorded plan entry concerned (None for build)."""

    action: str
    plan: PlanRecord | None
    reason: str


def mismatch(plan: PlanRecord, target: TrtTarget) -> str | None:
    """Why a recorded plan cannot run on `target`, or None if it was built for exactly this setup."""
    problems = []
    if str(plan.trt_version) != target.trt_version:
        problems.append(f"TensorRT {plan.trt_version} (here {target.trt_version})")
    if str(plan.compute_capability) != target.compute_capability:
        problems.append(f"compute capability {plan.compute_capability} (here {target.compute_capability})")
    if str(plan.gpu) != target.gpu:
        problems.append(f"GPU {plan.gpu!r} (here {target.gpu!r})")
    return "built for " + ", ".join(problems) if problems else None


def choose_precision(plans: Sequence[PlanRecord], target: TrtTarget, default: str = "fp16") -> str:
    """The best precision recorded for this machine (else anywhere): what the exporter chose to ship."""
    here = {p.precision for p in plans if p.trt_version == target.trt_version and p.gpu == target.gpu}
    recorded = here or {p.precision for p in plans}
    return next((p for p in PRECISION_ORDER if p in recorded), default)


def decide_plan(
    plans: Sequence[PlanRecord],
    target: TrtTarget,
    precision: str,
    has_onnx: bool,
    plan_ok: Callable[[PlanRecord], bool] = lambda plan: True,
    width: float | None = None,
) -> PlanDecision:
    """The action for one width: use a matching plan, rebuild a stale one from ONNX, or refuse without ONNX.

    `plans` are the width's recorded engines; `plan_ok(plan)` says whether a plan's file is present and intact
    (exists, sha256 matches). Raises SlimsegError when a build is needed but there is no ONNX to build from.
    """
    label = f"width {width:g}: " if width is not None else ""
    same_precision = [p for p in plans if p.precision == precision]
    for plan in same_precision:
        if mismatch(plan, target) is None:
            if plan_ok(plan):
                return PlanDecision(USE, plan, f"{label}{precision} plan matches TensorRT and GPU")
            reason = f"{label}{precision} plan file {plan.file} is missing or corrupt"
            return _need_build(REBUILD, plan, reason, has_onnx)
    if same_precision:
        stale = same_precision[0]
        reason = f"{label}{precision} plan {stale.file} {mismatch(stale, target)}"
        return _need_build(REBUILD, stale, reason, has_onnx)
    return _need_build(BUILD, None, f"{label}no {precision} plan recorded", has_onnx)


def _need_build(action: str, plan: PlanRecord | None, reason: str, has_onnx: bool) -> PlanDecision:
    if not has_onnx:
        raise SlimsegError(f"{reason}, and there is no ONNX file to build it from",
                           "copy the export folder's ONNX files next to the manifest, or run "
                           "`slimseg build-engines` on this machine")
    return PlanDecision(action, plan, reason)
