"""Where every camera frame went, each width switch with its reason, and the claims the README captions make.

Pure Python on the demo's record (no ROS), so the accounting and the claims can be checked on a real run's
summary.json and on hand-made records alike. Run-specific figures live in summary.json; the README captions
state only what `CLAIMS` checks on every run.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# Why a published frame has no label map, in the order a frame is tested against them (first match wins).
DROP_CAUSES: dict[str, str] = {
    "before_first_output": "before the node's first output",
    "shutdown": "after its last output",
    "disabled": "while inference was disabled",
    "replaced": "replaced by a newer frame while the node was busy",
    "at_switch": "at a width switch",
    "lost": "lost in transport",
}
# A ~/width message and the label map it follows travel on different topics: allow them this much reordering.
_REORDER_S = 0.02


@dataclass
class FrameAccount:
    """Every published frame is labelled or has exactly one cause from DROP_CAUSES."""

    published: int
    labelled: int
    unlabelled: dict[str, int]
    causes: list[str | None]  # per published frame, None when its label map came back

    def adds_up(self) -> bool:
        """The accounting is complete: labelled + every cause = published."""
        return self.labelled + sum(self.unlabelled.values()) == self.published == len(self.causes)

    def sentence(self, n_widths: int) -> str:
        """One plain sentence for the terminal and summary.json."""
        missing = self.published - self.labelled
        parts = [f"{self.unlabelled[k]} {text}" for k, text in DROP_CAUSES.items()]
        parts[0] += f" (starting, loading {n_widths} widths)"
        return (f"The camera published {self.published} frames and {self.labelled} came back labelled; "
                f"of the {missing} without labels, {', '.join(parts[:-1])} and {parts[-1]}.")


def account_frames(publish_t: Sequence[float], label_index: Sequence[int], label_t: Sequence[float],
                   switch_t: Sequence[float] = (), disabled: Sequence[Sequence[float]] = ()) -> FrameAccount:
    """Give each published frame without a label map its cause, from publish and arrival times alone.

    Frames are numbered in publish order. For an unlabelled frame j between the first and the last labelled
    frame, k is the labelled frame before it and m the one after. The node keeps only the newest frame, so j
    was *replaced* when frame j+1 was published before k's label map came back (the node was still busy with
    k). Otherwise the node was free and still did not label j: *at a switch* when the width changed between
    k's and m's label maps, else *lost in transport*. Times are the demo's clock (seconds).
    """
    n = len(publish_t)
    arrival = dict(zip(label_index, label_t, strict=True))
    labelled = sorted(i for i in arrival if 0 <= i < n)
    switches = sorted(switch_t)
    causes: list[str | None] = []
    for j in range(n):
        if j in arrival:
            causes.append(None)
        elif not labelled or j < labelled[0]:
            causes.append("before_first_output")
        elif j > labelled[-1]:
            causes.append("shutdown")
        elif any(lo <= publish_t[j] <= hi for lo, hi in disabled):
            causes.append("disabled")
        else:
            pos = bisect.bisect_left(labelled, j)
            k, m = labelled[pos - 1], labelled[pos]
            if j + 1 < n and publish_t[j + 1] < arrival[k]:
                causes.append("replaced")
            else:
                s = bisect.bisect_left(switches, arrival[k] - _REORDER_S)
                causes.append("at_switch" if s < len(switches) and switches[s] < arrival[m] else "lost")
    counts = {key: causes.count(key) for key in DROP_CAUSES}
    return FrameAccount(n, n - sum(counts.values()), counts, causes)


# --- width switches as the node logged them --------------------------------------------------------------
_SWITCH_LINE = re.compile(
    r"\[(?P<time>\d+\.\d+)\] \[[^\]]*\]: width (?P<old>[\d.]+) -> (?P<new>[\d.]+): (?P<reason>.*)$"
)
# The node's reason, shortened to fit beside a step in the timeline and on the animation (ASCII for OpenCV).
SHORT_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"battery (?:[\d.]+% below|just below) (?P<thr>[\d.]+)%"), "battery < {thr:g}%"),
    (re.compile(r"battery [\d.]+% reached (?P<thr>[\d.]+)% \+ (?P<h>[\d.]+)%"), "battery >= {thr:g}+{h:g}%"),
    (re.compile(r"overrun: p50 (?P<p50>[\d.]+) ms > budget (?P<b>[\d.]+) ms"), "p50 {p50:.0f} > {b:.0f} ms"),
    (re.compile(r"stable (?P<s>[\d.]+) s at p50"), "stable {s:.0f} s"),
    (re.compile(r"capped at (?P<cap>[\d.]+)"), "capped at {cap:g}"),
    (re.compile(r"^charging"), "charging"),
    (re.compile(r"^parameter change"), "parameter change"),
)


def short_reason(reason: str) -> str:
    """A few words for a switch annotation; the full reason stays in summary.json."""
    for pattern, template in SHORT_REASONS:
        found = pattern.search(reason)
        if found:
            return template.format(**{k: float(v) for k, v in found.groupdict().items()})
    return reason[:28]


def parse_switches(log_text: str, wall0: float) -> list[dict]:
    """The node's own `width a -> b: reason` log lines, timed on the demo's clock (wall0 = its t = 0)."""
    switches = []
    for line in log_text.splitlines():
        found = _SWITCH_LINE.search(line)
        if found:
            reason = found["reason"].strip()
            switches.append({"t": round(float(found["time"]) - wall0, 3), "previous": float(found["old"]),
                             "width": float(found["new"]), "reason": reason, "short": short_reason(reason)})
    return switches


# --- the README captions' claims -------------------------------------------------------------------------
def _policy_switches(summary: Mapping, phases: set[str]) -> list[dict]:
    return [s for s in summary["switches"]
            if s.get("phase") in phases and not s["reason"].startswith("parameter change")]


def _battery_steps(summary: Mapping) -> bool | None:
    if summary["policy"]["battery_thresholds"] != [0.2, 0.4, 0.6]:
        return False
    steps = _policy_switches(summary, {"battery"})
    if not steps:
        return None
    crossed = []
    for s in steps:
        found = re.search(r"battery (?:[\d.]+% below|just below) (?P<thr>[\d.]+)%", s["reason"])
        if not found or s["width"] >= s["previous"]:
            return False
        crossed.append(float(found["thr"]))
    return sorted(crossed) == [20.0, 40.0, 60.0]


def _fps_down(summary: Mapping) -> bool | None:
    downs = [s for s in _policy_switches(summary, {"fps", "load", "load_off"}) if s["width"] < s["previous"]]
    if not downs:
        return None
    for s in downs:
        found = re.search(r"overrun: p50 (?P<p50>[\d.]+) ms > budget (?P<budget>[\d.]+) ms", s["reason"])
        if not found or float(found["p50"]) <= float(found["budget"]):
            return False
    return True


def _fps_up(summary: Mapping) -> bool | None:
    widths = summary["model"]["widths"]
    stable_s = summary["policy"]["fps_stable_s"]
    ups = [s for s in _policy_switches(summary, {"fps", "load", "load_off"}) if s["width"] > s["previous"]]
    if stable_s != 5.0:
        return False
    if not ups:
        return None
    for s in ups:
        found = re.search(r"stable (?P<s>[\d.]+) s", s["reason"])
        next_up = widths[widths.index(s["previous"]) + 1] if s["previous"] in widths[:-1] else None
        if not found or float(found["s"]) < stable_s or s["width"] != next_up:
            return False
    return True


def _load_steps_down(summary: Mapping) -> bool | None:
    if any(s["reason"].startswith("overrun") for s in _policy_switches(summary, {"load"})):
        return True
    # not exercised when the load never pushed the p50 the policy acted on over its budget
    # (nor when the node already ran its narrowest width: there is nothing to step down to)
    load = summary["load"]
    if load["max_policy_p50_ms"] is None or load["budget_ms"] is None:
        return None
    if load["width_at_start"] == min(summary["model"]["widths"]):
        return None
    return False if load["max_policy_p50_ms"] > load["budget_ms"] else None


def _no_switch_drop(summary: Mapping) -> bool | None:
    if not summary["switches"]:
        return None
    return summary["frames"]["unlabelled"]["at_switch"] == 0


def _accounted(summary: Mapping) -> bool:
    frames = summary["frames"]
    causes = frames["unlabelled"]
    complete = frames["labelled"] + sum(causes.values()) == frames["published"]
    return set(causes) == set(DROP_CAUSES) and complete


def _montage_choice(summary: Mapping) -> bool | None:
    montage = summary["montage"]
    spreads = [c["spread"] for c in montage["candidates"] if c["spread"] is not None]
    if not spreads:
        return None
    return montage["chosen"] == "largest mIoU spread across widths" and montage["spread"] == max(spreads)


def _stamped(summary: Mapping) -> bool:
    fields = set(summary["animation"]["fields"])
    return {"width", "policy", "battery", "fps", "latency", "phase"} <= fields


@dataclass(frozen=True)
class Claim:
    """A phrase of a README caption and the check of it on a run's summary (None: not exercised there)."""

    phrase: str
    check: Callable[[Mapping], bool | None]


CLAIMS: dict[str, Claim] = {
    "battery_steps": Claim("steps down each time the battery falls below 60/40/20 %", _battery_steps),
    "fps_down": Claim("steps down as soon as the p50 latency it acts on exceeds the per-frame budget",
                      _fps_down),
    "fps_up": Claim("steps up one width at a time, only after 5 s within budget", _fps_up),
    "load": Claim("the CPU load makes it step down", _load_steps_down),
    "no_switch_drop": Claim("never drops a frame at a width switch", _no_switch_drop),
    "accounted": Claim("accounts for every camera frame", _accounted),
    "montage": Claim("the played frame on which the widths' mIoU differ most", _montage_choice),
    "stamped": Claim("stamped with width, policy, battery, fps, latency and phase", _stamped),
}


def check_claims(summary: Mapping) -> dict[str, bool | None]:
    """Every caption claim on this run: True holds, False is broken, None was not exercised."""
    return {key: claim.check(summary) for key, claim in CLAIMS.items()}
