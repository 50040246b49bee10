"""Decide whether a recorded TensorRT plan may be deserialised here, must be (re)built, or cannot be.

A TensorRT plan is only valid for the TensorRT version and GPU it was built with; deserialising another one
fails at best and misbehaves at worst. This is pure Python (no tensorrt import) so the rule is tested
everywhere, while the TensorRT layer that acts on the decision stays thin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slimseg_ros.errors import SlimsegError

USE, BUILD, REBUILD = "use", "build", "rebuild"


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
    plan: dict[str, Any] | None
    reason: str


def mismatch(plan: dict[str, Any], target: TrtTarget) -> str | None:
    """Why a recorded plan cannot run on `target`, or None if it was built for exactly this setup."""
    problems = []
    if str(plan.get("trt_version")) != target.trt_version:
        problems.append(f"TensorRT {plan.get('trt_version')} (here {target.trt_version})")
    if str(plan.get("compute_capability")) != target.compute_capability:
        cc = plan.get("compute_capability")
        problems.append(f"compute capability {cc} (here {target.compute_capability})")
    if str(plan.get("gpu")) != target.gpu:
        problems.append(f"GPU {plan.get('gpu')!r} (here {target.gpu!r})")
    return "built for " + ", ".join(problems) if problems else None


def decide_plan(
    plans: list[dict[str, Any]],
    target: TrtTarget,
    precision: str,
    has_onnx: bool,
    plan_ok: Callable[[dict[str, Any]], bool] = lambda plan: True,
    width: float | None = None,
) -> PlanDecision:
    """The action for one width: use a matching plan, rebuild a stale one from ONNX, or refuse without ONNX.

    `plans` are the width's recorded engines; `plan_ok(plan)` says whether a plan's file is present and intact
    (exists, sha256 matches). Raises SlimsegError when a build is needed but there is no ONNX to build from.
    """
    label = f"width {width:g}: " if width is not None else ""
    same_precision = [p for p in plans if p.get("precision") == precision]
    for plan in same_precision:
        if mismatch(plan, target) is None:
            if plan_ok(plan):
                return PlanDecision(USE, plan, f"{label}{precision} plan matches TensorRT and GPU")
            reason = f"{label}{precision} plan file {plan.get('file')} is missing or corrupt"
            return _need_build(REBUILD, plan, reason, has_onnx)
    if same_precision:
        stale = same_precision[0]
        reason = f"{label}{precision} plan {stale.get('file')} {mismatch(stale, target)}"
        return _need_build(REBUILD, stale, reason, has_onnx)
    return _need_build(BUILD, None, f"{label}no {precision} plan recorded", has_onnx)


def _need_build(action: str, plan: dict[str, Any] | None, reason: str, has_onnx: bool) -> PlanDecision:
    if not has_onnx:
        raise SlimsegError(f"{reason}, and there is no ONNX file to build it from",
                           "copy the export folder's ONNX files next to the manifest, or build the plan on "
                           "this machine with `slimseg build-engines`")
    return PlanDecision(action, plan, reason)
