"""The fps policy: a closed loop on measured latency against the frame budget, built not to oscillate."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from statistics import median, pstdev
from typing import Any

from slimseg_ros.policies.base import Decision, Observation, WidthPolicy, check_member, fmt_widths, ms
from slimseg_ros.policy_params import FpsParams

# A step up is kept only if the loop would hold it: the estimate plus this many of its standard deviations
# (per-frame spread shrunk by the EWMA) within budget, so frame noise alone does not trip the overrun rule.
HOLD_Z = 3.0


class FpsPolicy(WidthPolicy):
    """Closed loop on measured latency against the frame budget 1/target_fps, built not to oscillate.

    Estimate: an EWMA of the current width's latency (weight `ewma_alpha`; a plain mean over a visit's
    first 1/alpha frames). Down at once on a sustained overrun: `window` frames at this width whose median
    AND the estimate both exceed the budget (the median ignores single spikes, the estimate heavy-tailed
    noise), to the widest narrower width predicted to fit. Every other width's latency is predicted as the
    current estimate times a learned cost ratio: relative per-width costs, seeded from `costs` (the node
    passes the manifest's benchmarked latencies, else FLOPs; default the widths) and replaced by what each
    visit measures, so a load that slows every width alike cancels out. Up, one width at a time, after
    `stable_s` within budget if the wider width is predicted under budget * (1 - margin); otherwise as a
    probe after `probe_s` (predicted within budget * (1 + margin)) or `probe_max_s` (further over), so no
    estimate can lock a width out for good. Every step up is judged on `probe_frames` frames: kept if the
    loop would hold it, else undone. The oscillation guard: a step up undone before it was held as long as
    it was waited for (at least probe_s) doubles that width's wait, up to `probe_max_s`; a failure made
    under a load that has since gone does not count.
    """

    name = "fps"

    def __init__(
        self,
        widths: Iterable[float],
        costs: Sequence[float] | None = None,
        initial_width: float | None = None,
        **params: Any,
    ) -> None:
        super().__init__(widths)
        try:
            p = FpsParams(**{k: v for k, v in params.items() if v is not None})
        except TypeError as exc:  # a name the table does not have
            raise ValueError(f"fps policy: {exc}") from None
        self.params = p
        self.target_fps, self.window = p.target_fps, p.window
        self.margin, self.stable_s = p.margin, p.stable_s
        self.seed_costs = self._check_costs(costs)
        self.initial_width = (
            self.widths[-1]
            if initial_width is None
            else check_member("initial_width", initial_width, self.widths)
        )
        self.reset()

    def _check_costs(self, costs: Sequence[float] | None) -> list[float]:
        if costs is None:
            return list(self.widths)
        try:
            values = [float(c) for c in costs]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"costs must be a list of numbers, got {costs!r}") from exc
        if len(values) != len(self.widths):
            raise ValueError(f"costs needs one value per width {fmt_widths(self.widths)}, got {len(values)}")
        if any(not (math.isfinite(c) and c > 0) for c in values):
            raise ValueError(f"costs must be positive numbers, got {values}")
        return values

    @property
    def budget_s(self) -> float:
        """Seconds per frame that the target frame rate allows."""
        return 1.0 / self.target_fps

    def reset(self) -> None:
        """Forget measurements, learned costs and probe back-offs; start again at the initial width."""
        self._width = self.initial_width
        # Learned relative cost per width, on the scale of the initial width's seed; the rest use seed ratios.
        self._cost = {self.initial_width: self.seed_costs[self.widths.index(self.initial_width)]}
        self._wait: dict[float, float] = {}  # width -> seconds stable before the next try (after a failure)
        self._tried_at: dict[float, float] = {}  # width -> the narrower width's estimate when it was tried
        self._enter(None)
        # The estimate the latest decision compared with the budget (kept across a switch); the name is the
        # node's diagnostics key (policy_p50_ms), from when the estimate was a window median.
        self.last_p50_s: float | None = None
        self._last: tuple[float, float] | None = None  # (width, its estimate) of the latest frame

    def _enter(self, came_from: tuple[float, float] | None, now: float = 0.0, up: bool = False) -> None:
        """Start a visit at the current width; `came_from` = (width, estimate) to learn this width's cost."""
        self._samples: deque[float] = deque(maxlen=self.window)
        self._visit: list[float] = []  # the first probe_frames latencies of the visit
        self._n = 0
        self._est: float | None = None
        self._stable_since: float | None = None  # within budget since
        self._fits_since: float | None = None  # ... and the wider width predicted to fit since
        self._anchor = came_from
        self._entered_at = now
        self._trial = up  # a step up still being judged on probe_frames

    def describe(self) -> dict[str, Any]:
        """Parameters in effect, the predicted latency per width and the probe back-offs, for diagnostics."""
        predicted = {}
        if self._last is not None:  # from the latest estimate, of this width or the one before the switch
            width, est = self._last
            scale = est / self._ratio(width)
            predicted = {f"{w:g}": round(scale * self._ratio(w) * 1e3, 2) for w in self.widths}
        return {
            **super().describe(),
            **asdict(self.params),
            "latency_ms": predicted,
            "probe_wait_s": {f"{w:g}": s for w, s in sorted(self._wait.items())},
        }

    def smoothed_latency(self) -> float | None:
        """The current width's latency estimate (EWMA), None before any frame at it."""
        return self._est

    def predict(self, target: float, current_latency: float) -> float:
        """Latency expected at `target` given the current width's latency (learned cost ratio)."""
        return current_latency * self._ratio(target)

    def _relative_cost(self, width: float) -> float:
        """Learned cost, or the seed ratio to the nearest learned width (the narrower on a tie)."""
        if width in self._cost:
            return self._cost[width]
        i = self.widths.index(width)
        anchor = min(self._cost, key=lambda w: (abs(self.widths.index(w) - i), w))
        return self._cost[anchor] * self.seed_costs[i] / self.seed_costs[self.widths.index(anchor)]

    def _ratio(self, target: float) -> float:
        """Cost of `target` over the current width's: at least 1 for a wider width (at most 1 for a
        narrower), and bounded by any learned width beyond it: a width is no slower than a wider one."""
        cur = self._relative_cost(self._width)
        ratio = self._relative_cost(target) / cur
        for w, c in self._cost.items():
            if w >= target > self._width:
                ratio = min(ratio, c / cur)
            elif w <= target < self._width:
                ratio = max(ratio, c / cur)
        return max(ratio, 1.0) if target > self._width else min(ratio, 1.0) if target < self._width else 1.0

    def _learn(self) -> None:
        """Once per visit: this width's cost relative to the width it came from, measured across the switch.

        A visit cut short (fewer than probe_frames) counts in proportion: it was cut because its frames ran
        slow, so alone it would overstate the width's cost."""
        if self._anchor is None or self._est is None:
            return
        prev, prev_est = self._anchor
        self._anchor = None
        w = self._width
        measured = self._relative_cost(prev) * self._est / prev_est
        if w not in self._cost:
            self._cost[w] = measured
        else:
            weight = 0.5 * min(1.0, self._n / self.params.probe_frames)
            self._cost[w] += weight * (measured - self._cost[w])

    def _holdable(self) -> bool:
        """Would the overrun rule keep this width? Estimate + HOLD_Z of its spread within budget."""
        assert self._est is not None
        alpha = self.params.ewma_alpha
        spread = pstdev(self._visit) * math.sqrt(alpha / (2.0 - alpha)) if len(self._visit) > 1 else 0.0
        return self._est + HOLD_Z * spread <= self.budget_s

    def _held_enough(self, width: float) -> float:
        """Seconds a step up must be held to count as a success: its wait, and at least probe_s."""
        return max(self._wait[width], self.params.probe_s)

    def _switch(self, new_width: float, reason: str, now: float, capped: bool = False) -> Decision:
        if new_width == self._width:
            return self._decide(new_width, reason)
        old, up = self._width, new_width > self._width
        if self._n >= self.window:
            self._learn()
        if not up and not capped and old in self._wait and now - self._entered_at < self._held_enough(old):
            # A step up undone before it was held as long as it was waited for (and probe_s) failed: the next
            # try of that width waits twice as long, up to probe_max_s.
            self._wait[old] = min(max(2.0 * self._wait[old], self.params.probe_s), self.params.probe_max_s)
        came_from = (old, self._est) if self._est is not None and self._n >= self.window else None
        decision = self._decide(new_width, reason)
        self._enter(came_from, now, up)
        return decision

    def update(self, obs: Observation, cap: float | None = None) -> Decision:
        """Record the frame's latency at the current width and decide; `cap` bounds the width (budget)."""
        if cap is not None and cap < self._width:
            allowed = [w for w in self.widths if w <= cap] or [self.widths[0]]
            return self._switch(allowed[-1], f"capped at {allowed[-1]:g}", obs.now, capped=True)
        lat = obs.latency_s
        try:
            x = float(lat)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            x = math.nan
        if not (math.isfinite(x) and x >= 0):
            return self._decide(
                self._width, f"no valid latency measurement ({lat!r}): keeping width {self._width:g}"
            )
        self._record(x)
        est = self._est
        assert est is not None
        self.last_p50_s = est
        self._last = (self._width, est)
        med = median(self._samples)
        budget, full = self.budget_s, self._n >= self.window
        if self._n == self.params.probe_frames:
            self._learn()
        held_s = obs.now - self._entered_at
        if self._width in self._wait and not self._trial and held_s >= self._held_enough(self._width):
            del self._wait[self._width]  # kept, and held long enough: tries start afresh
        # The overrun rule; while a step up is judged, only a clear overrun (past the margin) cuts it short.
        limit = budget * (1.0 + self.margin) if self._trial else budget
        if full and med > budget and est > limit:
            return self._step_down(est, med, obs.now)
        if self._trial:
            if self._n < self.params.probe_frames:
                return self._decide(
                    self._width,
                    f"judging width {self._width:g}: {self._n}/{self.params.probe_frames} frames, "
                    f"estimate {ms(est)} (budget {ms(budget)})",
                )
            if not self._holdable():
                return self._step_down(est, med, obs.now, judged=True)
            self._trial = False
        return self._maybe_step_up(est, obs.now, cap)

    def _record(self, x: float) -> None:
        self._samples.append(x)
        self._n += 1
        if len(self._visit) < self.params.probe_frames:
            self._visit.append(x)
        weight = max(self.params.ewma_alpha, 1.0 / self._n)
        self._est = x if self._est is None else self._est + weight * (x - self._est)

    def _step_down(self, est: float, med: float, now: float, judged: bool = False) -> Decision:
        budget, cur = self.budget_s, self.widths.index(self._width)
        why = (
            f"width {self._width:g} not kept after {self._n} frames: estimate {ms(est)} too close to "
            f"budget {ms(budget)} to hold"
            if judged
            else f"overrun: p50 {ms(med)} > budget {ms(budget)} ({self.target_fps:g} fps), estimate {ms(est)}"
        )
        if cur == 0:
            self._stable_since = self._fits_since = None
            return self._decide(self._width, f"narrowest width {self._width:g} still over budget: {why}")
        self._learn()  # before predicting, so a failed step up's measurement is used at once
        target = next(
            (self.widths[k] for k in range(cur - 1, -1, -1) if self.predict(self.widths[k], est) <= budget),
            self.widths[0],
        )
        pred = self.predict(target, est)
        return self._switch(target, f"{why}: width {self._width:g} -> {target:g} (predicted {ms(pred)})", now)

    def _maybe_step_up(self, est: float, now: float, cap: float | None) -> Decision:
        budget, cur = self.budget_s, self.widths.index(self._width)
        if est > budget:
            self._stable_since = self._fits_since = None
            return self._decide(self._width, f"estimate {ms(est)} over budget {ms(budget)}, confirming")
        if cur + 1 == len(self.widths):
            return self._decide(
                self._width, f"widest width {self._width:g}: estimate {ms(est)} within budget"
            )
        wider = self.widths[cur + 1]
        if cap is not None and wider > cap:
            self._stable_since = self._fits_since = None
            return self._decide(self._width, f"estimate {ms(est)} within budget; width capped at {cap:g}")
        if self._stable_since is None:
            self._stable_since = now
        pred, limit = self.predict(wider, est), budget * (1.0 - self.margin)
        fits = pred <= limit
        if not fits:
            self._fits_since = None
        elif self._fits_since is None:
            self._fits_since = now
        fits_since = now if self._fits_since is None else self._fits_since
        # A failed try counts until this width runs clearly faster (by twice the margin, beyond what noise
        # moves the estimate) than when it was made: a failure under a load since gone says nothing now.
        failed = wider in self._wait and est >= self._tried_at[wider] * (1.0 - 2.0 * self.margin)
        # A width predicted to fit is tried once predicted so (and within budget) for stable_s; one near the
        # budget (or that failed) is probed after its wait within budget; one predicted well over it only
        # every probe_max_s, so that no estimate (seeded, or learned across a load change) locks it out.
        if fits and not failed:
            wait, stable_for = self.stable_s, now - fits_since
        else:
            tier = self.params.probe_s if pred <= budget * (1.0 + self.margin) else self.params.probe_max_s
            wait, stable_for = max(tier, self._wait[wider] if failed else 0.0), now - self._stable_since
        guess = (
            f"width {wider:g} predicted {ms(pred)} {'<=' if fits else '>'} {ms(limit)} "
            f"(budget - {self.margin:.0%}){'' if fits else ', so a probe'}"
        )
        if self._n < self.window or stable_for < wait:
            return self._decide(
                self._width, f"estimate {ms(est)} within budget for {stable_for:.1f}/{wait:g} s; {guess}"
            )
        self._wait[wider] = wait  # the try is judged against the wait it took; success clears it
        self._tried_at[wider] = est
        return self._switch(
            wider,
            f"stable {stable_for:.1f} s at estimate {ms(est)}; {guess}: width {self._width:g} -> {wider:g}",
            now,
        )
