"""Named fps-policy scenarios on the measured latency ladders, and the figures that judge a run of one.

What docs/policy.md's before/after table (scripts/sim_fps_scenarios.py) and tests/test_simulate.py run: the
widest width that fits the budget, how long the policy held it, switches per minute in steady state, and the
longest stay at a width that did not fit (a wrong step up). Pure Python, like the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slimseg_ros.policies.fps import HOLD_Z, FpsPolicy
from slimseg_ros.policy import WidthPolicy
from slimseg_ros.simulate import Z95, Phase, SimConfig, SimResult, parse_latency, simulate


@dataclass(frozen=True)
class Scenario:
    """A ladder (simulate.LADDERS), a target, a start width and optional load phases; long enough that the
    probe back-off reaches its cap, so the steady figures are what a robot would see for hours."""

    name: str
    ladder: str
    target_fps: float
    initial_width: float = 1.0
    load: tuple[Phase, ...] = ()
    duration_s: float = 1200.0
    warmup_s: float = 120.0
    camera_fps: float = 30.0

    def config(self, seed: int) -> SimConfig:
        """The simulator's scenario for one seed."""
        p50, p95 = parse_latency(self.ladder)
        return SimConfig(
            latency_ms=p50, latency_p95_ms=p95, duration_s=self.duration_s, camera_fps=self.camera_fps,
            load=self.load, warmup_s=self.warmup_s, seed=seed,
        )

    def latency_ms(self, width: float, t: float = 0.0) -> tuple[float, float]:
        """Mean and standard deviation of the width's latency at time t (under the load in force)."""
        cfg = self.config(0)
        load = math.prod(ph.factor for ph in self.load if ph.covers(t))
        p50 = cfg.latency_ms[width]
        p95 = cfg.latency_p95_ms.get(width)
        sigma = math.log(p95 / p50) / Z95 if p95 is not None else cfg.jitter  # jitter: near-normal, same sd
        mean = p50 * load * (math.exp(sigma**2 / 2) if p95 is not None else 1.0)
        return mean, mean * (math.sqrt(math.expm1(sigma**2)) if p95 is not None else sigma)

    def fits(self, width: float, t: float = 0.0) -> bool:
        """Whether the width's mean latency at time t is within the budget (meets the target on average)."""
        return self.latency_ms(width, t)[0] / 1000.0 <= 1.0 / self.target_fps

    def widest_fitting(self, ewma_alpha: float, t: float = 0.0) -> float:
        """Widest width the loop can hold at time t: mean latency plus HOLD_Z standard deviations of the
        policy's estimate within budget (a width at 99 % of the budget fits on average but is not held: its
        estimate crosses the budget by noise alone); the narrowest if none."""
        shrink = math.sqrt(ewma_alpha / (2.0 - ewma_alpha))
        held = [w for w in self.config(0).latency_ms if self._holdable(w, t, shrink)]
        return max(held, default=min(self.config(0).latency_ms))

    def _holdable(self, width: float, t: float, shrink: float) -> bool:
        mean, sd = self.latency_ms(width, t)
        return (mean + HOLD_Z * sd * shrink) / 1000.0 <= 1.0 / self.target_fps


@dataclass(frozen=True)
class Verdict:
    """What a run shows: steady share of time at the widest fitting width, switches per steady minute,
    the longest stay after a step up at a width whose mean latency overran the budget, steady fps."""

    held_widest: float
    switches_per_min: float
    longest_wrong_s: float
    steady_fps: float


def judge(scenario: Scenario, result: SimResult, ewma_alpha: float) -> Verdict:
    """The figures of one run against the scenario's widest fitting width (which moves with the load)."""
    cuts = sorted({0.0, result.duration_s, *(t for ph in scenario.load for t in (ph.start_s, ph.end_s))})
    fits = [(a, b, scenario.widest_fitting(ewma_alpha, a)) for a, b in zip(cuts, cuts[1:], strict=False)]
    visits = [(0.0, scenario.initial_width, False)] + [(s.t, s.new, s.new > s.old) for s in result.switches]
    held = wrong = 0.0
    for i, (t0, w, up) in enumerate(visits):  # up: entered by a step up
        t1 = visits[i + 1][0] if i + 1 < len(visits) else result.duration_s
        if up and not scenario.fits(w, t0):
            wrong = max(wrong, t1 - t0)
        for a, b, widest in fits:
            if widest == w:
                held += max(0.0, min(t1, b) - max(t0, a, result.warmup_s))
    steady_s = result.duration_s - result.warmup_s
    return Verdict(
        held_widest=held / steady_s,
        switches_per_min=len(result.steady_switches()) * 60.0 / steady_s,
        longest_wrong_s=wrong,
        steady_fps=result.steady_fps,
    )


def run(scenario: Scenario, policy: WidthPolicy, seed: int, ewma_alpha: float) -> tuple[SimResult, Verdict]:
    """Simulate the scenario with a policy built for it and judge the run."""
    result = simulate(policy, scenario.config(seed))
    return result, judge(scenario, result, ewma_alpha)


def policy_for(scenario: Scenario, policy_class: type[WidthPolicy] = FpsPolicy) -> WidthPolicy:
    """An fps policy (this one, or another revision's class) on the ladder's widths, with the scenario's
    target and start width and every other parameter at its default; no `costs`, so the first guesses are the
    ratio model's, as on a node whose manifest has no benchmarked latencies."""
    widths = sorted(scenario.config(0).latency_ms)
    return policy_class(widths, target_fps=scenario.target_fps, initial_width=scenario.initial_width)


LOAD = (Phase(400.0, 700.0, 1.5),)  # every width 1.5x slower for five minutes, as under a competing process
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("lite0 12 fps", "lite0-480", 12.0),
    Scenario("lite0 12 fps, start narrow", "lite0-480", 12.0, initial_width=0.25),
    Scenario("lite0 25 fps", "lite0-480", 25.0),
    Scenario("r18 12 fps", "r18-480", 12.0),
    Scenario("r18 25 fps", "r18-480", 25.0),
    Scenario("lite0 12 fps, load x1.5 400-700 s", "lite0-480", 12.0, load=LOAD),
    Scenario("lite0 25 fps, load x1.5 400-700 s", "lite0-480", 25.0, load=LOAD),
)
