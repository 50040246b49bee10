"""The fps policy: a closed loop on measured latency against the frame budget, built not to oscillate."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from statistics import median
from typing import Any

from slimseg_ros.policies.base import (
    Decision,
    Observation,
    WidthPolicy,
    check_member,
    fmt_widths,
    is_unknown,
    ms,
)
from slimseg_ros.policy_params import FpsParams


class FpsPolicy(WidthPolicy):
    """Closed loop on measured latency against the frame budget 1/target_fps, built not to oscillate.

    Smoothed latency is the median of the last `window` frames at the current width (robust to single
    spikes). Down: as soon as that median exceeds the budget (a sustained overrun: at least `window` frames
    at this width, most of them over), to the widest narrower width predicted to fit. Up: one step, only
    after `stable_s` seconds with the median within budget, and only if the wider width's predicted latency
    is within budget * (1 - margin). Predictions use latency ratios between widths measured across earlier
    switches (so a load that slows every width alike cancels out), else the ratio of `costs` (default: the
    width itself, a rough stand-in for latency; pass FLOPs or benchmarked latencies for better first guesses).
    A wrong first guess costs one step up and one down; after that the measured ratio prevents a repeat.
    """

    name = "fps"

    def __init__(
        self,
        widths: Iterable[float],
        target_fps: float | None = None,
        window: int | None = None,
        margin: float | None = None,
        stable_s: float | None = None,
        costs: Sequence[float] | None = None,
        initial_width: float | None = None,
    ) -> None:
        super().__init__(widths)
        given = {"target_fps": target_fps, "window": window, "margin": margin, "stable_s": stable_s}
        params = FpsParams(**{k: v for k, v in given.items() if v is not None})
        self.target_fps, self.window = params.target_fps, params.window
        self.margin, self.stable_s = params.margin, params.stable_s
        if costs is None:
            self.costs = list(self.widths)
        else:
            try:
                self.costs = [float(c) for c in costs]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"costs must be a list of numbers, got {costs!r}") from exc
            if len(self.costs) != len(self.widths):
                raise ValueError(
                    f"costs needs one value per width {fmt_widths(self.widths)}, got {len(self.costs)}"
                )
            if any(not (math.isfinite(c) and c > 0) for c in self.costs):
                raise ValueError(f"costs must be positive numbers, got {self.costs}")
        self.initial_width = (
            self.widths[-1]
            if initial_width is None
            else check_member("initial_width", initial_width, self.widths)
        )
        self.reset()

    @property
    def budget_s(self) -> float:
        """Seconds per frame that the target frame rate allows."""
        return 1.0 / self.target_fps

    def reset(self) -> None:
        """Forget measurements and ratios; start again at the initial width."""
        self._width = self.initial_width
        self._samples: deque[float] = deque(maxlen=self.window)
        self._stable_since: float | None = None
        self._last_median: dict[float, float] = {}
        # (narrow width, wide width) -> latency(wide) / latency(narrow), measured across switches
        self._ratios: dict[tuple[float, float], float] = {}
        self._pending_ratio: tuple[float, float] | None = None  # (previous width, its median) at the switch
        # The p50 the latest decision compared with the budget (kept across a switch, unlike the window),
        # so diagnostics and the demo's timeline show what the loop acted on.
        self.last_p50_s: float | None = None

    def describe(self) -> dict[str, Any]:
        """Parameters in effect and the learned per-width latencies, for diagnostics."""
        return {
            **super().describe(),
            "target_fps": self.target_fps,
            "window": self.window,
            "margin": self.margin,
            "stable_s": self.stable_s,
            "latency_ms": {f"{w:g}": round(v * 1000.0, 2) for w, v in sorted(self._last_median.items())},
        }

    def smoothed_latency(self) -> float | None:
        """Median latency of the last frames at the current width, None before any frame."""
        return median(self._samples) if self._samples else None

    def _pair_ratio(self, lo: int, hi: int) -> float:
        key = (self.widths[lo], self.widths[hi])
        if key in self._ratios:
            return self._ratios[key]
        return self.costs[hi] / self.costs[lo]

    def predict(self, target: float, current_latency: float) -> float:
        """Latency expected at `target` given the current width's smoothed latency."""
        i, j = self.widths.index(self._width), self.widths.index(target)
        if i == j:
            return current_latency
        lo, hi = min(i, j), max(i, j)
        key = (self.widths[lo], self.widths[hi])
        if key in self._ratios:
            ratio = self._ratios[key]
        else:
            ratio = 1.0
            for k in range(lo, hi):
                ratio *= self._pair_ratio(k, k + 1)
            # A width is no slower than a wider one, so a ratio measured to an even wider width bounds the
            # guess (after a jump 1.0 -> 0.5, the 0.5 -> 0.75 guess cannot exceed the measured 0.5 -> 1.0).
            for k in range(hi + 1, len(self.widths)):
                measured = self._ratios.get((self.widths[lo], self.widths[k]))
                if measured is not None:
                    ratio = min(ratio, measured)
        return current_latency * ratio if j > i else current_latency / ratio

    def _learn_ratio(self, lat_now: float) -> None:
        """Once the new width's window is full, record its latency relative to the width before the switch."""
        if self._pending_ratio is None or len(self._samples) < self.window:
            return
        prev, prev_lat = self._pending_ratio
        self._pending_ratio = None
        if prev_lat <= 0 or lat_now <= 0:
            return
        lo, hi = sorted((prev, self._width))
        ratio = lat_now / prev_lat if self._width == hi else prev_lat / lat_now
        # A load change coinciding with the switch can make the wider width look faster; it never is.
        ratio = max(ratio, 1.0)
        old = self._ratios.get((lo, hi))
        self._ratios[(lo, hi)] = ratio if old is None else 0.5 * (old + ratio)

    def _switch(self, new_width: float, reason: str) -> Decision:
        if new_width != self._width:
            med = self.smoothed_latency()
            self._pending_ratio = (
                (self._width, med) if med is not None and len(self._samples) >= self.window else None
            )
            self._samples.clear()
            self._stable_since = None
        return self._decide(new_width, reason)

    def update(self, obs: Observation, cap: float | None = None) -> Decision:
        """Record the frame's latency at the current width and decide; `cap` bounds the width (budget)."""
        if cap is not None and cap < self._width:
            allowed = [w for w in self.widths if w <= cap] or [self.widths[0]]
            return self._switch(allowed[-1], f"capped at {allowed[-1]:g}")
        lat = obs.latency_s
        if is_unknown(lat) or not math.isfinite(float(lat)) or float(lat) < 0:
            return self._decide(
                self._width, f"no valid latency measurement ({lat!r}): keeping width {self._width:g}"
            )
        self._samples.append(float(lat))
        med = median(self._samples)
        self.last_p50_s = med
        self._last_median[self._width] = med
        self._learn_ratio(med)
        budget = self.budget_s
        full = len(self._samples) >= self.window
        cur = self.widths.index(self._width)
        if med > budget:
            self._stable_since = None
            if not full:
                return self._decide(
                    self._width,
                    f"p50 {ms(med)} over budget {ms(budget)}, confirming "
                    f"({len(self._samples)}/{self.window} frames)",
                )
            if cur == 0:
                return self._decide(
                    self._width,
                    f"narrowest width {self._width:g} still over budget: p50 "
                    f"{ms(med)} > {ms(budget)} ({self.target_fps:g} fps)",
                )
            target = self.widths[0]
            for k in range(cur - 1, -1, -1):
                if self.predict(self.widths[k], med) <= budget:
                    target = self.widths[k]
                    break
            pred = self.predict(target, med)
            return self._switch(
                target,
                f"overrun: p50 {ms(med)} > budget {ms(budget)} ({self.target_fps:g} fps) over "
                f"{self.window} frames: width {self._width:g} -> {target:g} (predicted {ms(pred)})",
            )
        if cur + 1 < len(self.widths) and cap is not None and self.widths[cur + 1] > cap:
            self._stable_since = None
            return self._decide(self._width, f"p50 {ms(med)} within budget; width capped at {cap:g}")
        if cur + 1 == len(self.widths):
            return self._decide(
                self._width, f"widest width {self._width:g}: p50 {ms(med)} within budget {ms(budget)}"
            )
        wider = self.widths[cur + 1]
        pred = self.predict(wider, med)
        limit = budget * (1.0 - self.margin)
        if pred > limit:
            self._stable_since = None
            return self._decide(
                self._width,
                f"p50 {ms(med)}; width {wider:g} predicted {ms(pred)} > "
                f"{ms(limit)} (budget - {self.margin:.0%}): keeping {self._width:g}",
            )
        # Stable = within budget AND the wider width predicted to fit, continuously for stable_s.
        if self._stable_since is None:
            self._stable_since = obs.now
        stable_for = obs.now - self._stable_since
        if not full or stable_for < self.stable_s:
            return self._decide(
                self._width,
                f"p50 {ms(med)} within budget for {stable_for:.1f}/"
                f"{self.stable_s:g} s before trying width {wider:g}",
            )
        return self._switch(
            wider,
            f"stable {stable_for:.1f} s at p50 {ms(med)}; width {wider:g} predicted {ms(pred)} <= "
            f"{ms(limit)}: width {self._width:g} -> {wider:g}",
        )
