"""Policies on the simulated clock: fps targets met without oscillation, load phases, battery, CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from slimseg_ros import sim_scenarios as S
from slimseg_ros.cli import main as slimseg_main
from slimseg_ros.policy import make_policy
from slimseg_ros.policy_params import ROWS, FpsParams
from slimseg_ros.simulate import LADDERS, Phase, SimConfig, parse_latency, simulate

LATENCY_MS = {0.25: 8.0, 0.5: 14.0, 0.75: 22.0, 1.0: 30.0}
WIDTHS = sorted(LATENCY_MS)


def run(policy_name: str, latency_ms: dict[float, float] | None = None, **kwargs):
    """Simulate one scenario; policy parameters go to the policy, the rest to SimConfig."""
    policy_keys = {row.arg for row in ROWS} | {"initial_width", "width"}
    params = {k: kwargs.pop(k) for k in list(kwargs) if k in policy_keys}
    latency_ms = latency_ms or LATENCY_MS
    policy = make_policy(policy_name, sorted(latency_ms), **params)
    return simulate(policy, SimConfig(latency_ms=latency_ms, **kwargs))


def widest_feasible(latency_ms: dict[float, float], target_fps: float, margin: float = 0.15) -> float:
    """Widest width whose mean latency fits the budget with the policy's step-up margin."""
    budget_ms = 1000.0 / target_fps
    fits = [w for w, ms in latency_ms.items() if ms <= budget_ms * (1 - margin)]
    return max(fits) if fits else min(latency_ms)


# ------------------------------------------------------------------------------------------ fps targets


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("initial_width", [1.0, 0.25])
def test_feasible_target_met_with_widest_fitting_width_and_no_oscillation(seed, initial_width):
    latency = {0.25: 8.0, 0.5: 14.0, 0.75: 22.0, 1.0: 40.0}  # 30 fps = 33.3 ms: 1.0 cannot, 0.75 can
    r = run(
        "fps",
        latency,
        target_fps=30,
        initial_width=initial_width,
        camera_fps=30,
        duration_s=60,
        warmup_s=20,
        seed=seed,
    )
    assert widest_feasible(latency, 30) == 0.75
    assert r.dominant_width() == 0.75
    assert r.steady_fps >= 0.95 * 30
    assert r.max_switches_in(5.0) <= 2  # at most one try, up and back down
    if initial_width == 1.0:  # 1.0 measured at the start: predicted 40 ms, never probed within a minute
        assert r.steady_time_per_width_s[0.75] == pytest.approx(40.0, abs=0.1)
        assert r.steady_switches() == []
    else:  # 1.0 only guessed (32 ms, within budget but not the margin): one probe, undone within 0.3 s
        assert r.steady_time_per_width_s[0.75] >= 39.5
        assert [(s.old, s.new) for s in r.steady_switches()] == [(0.75, 1.0), (1.0, 0.75)]
    assert r.frames_arrived == r.frames_processed + r.frames_dropped


def test_target_near_the_widest_width_latency_does_not_oscillate():
    # 1.0 at 31 ms with 8% jitter against a 33.3 ms budget: at most one step down, never flapping back.
    r = run(
        "fps",
        target_fps=30,
        latency_ms={**LATENCY_MS, 1.0: 31.0},
        jitter=0.08,
        duration_s=120,
        warmup_s=10,
        seed=3,
    )
    assert len(r.switches) <= 1
    assert r.max_switches_in(5.0) <= 1
    assert r.steady_fps >= 0.95 * 30


def test_infeasible_target_settles_on_narrowest_width():
    r = run("fps", target_fps=200, camera_fps=200, duration_s=30, warmup_s=5)
    assert widest_feasible(LATENCY_MS, 200) == 0.25
    assert r.final_width == 0.25
    assert r.steady_time_per_width_s[0.25] == pytest.approx(25.0, abs=0.01)
    assert [s.new for s in r.switches] == sorted((s.new for s in r.switches), reverse=True)
    assert r.switches[-1].t < 1.0  # down through the widths within a second


def test_load_phase_steps_down_at_once_and_back_up_after_stable_period():
    # 25 fps = 40 ms budget: 1.0 (30 ms) fits; under 1.6x load it takes 48 ms, 0.75 takes 35 ms.
    r = run("fps", target_fps=25, stable_s=5.0, load=(Phase(20.0, 40.0, 1.6),), duration_s=60, warmup_s=10)
    assert [(s.old, s.new) for s in r.switches] == [(1.0, 0.75), (0.75, 1.0)]
    down, up = r.switches
    assert 20.0 <= down.t < 21.0 and "overrun" in down.reason  # the estimate crosses the budget in ~0.5 s
    assert 45.0 <= up.t < 46.0 and "stable" in up.reason
    assert r.steady_fps >= 25


def test_frames_are_dropped_newest_only_when_worker_is_slow():
    r = run("fixed", width=1.0, latency_ms={1.0: 50.0}, jitter=0.0, camera_fps=30, duration_s=10, warmup_s=1)
    # A 50 ms worker on a 33 ms camera: every other frame starts late and the one between is dropped.
    assert r.fps == pytest.approx(20.0, abs=0.5)
    assert r.frames_dropped == pytest.approx(100, abs=3)
    assert r.frames_arrived == r.frames_processed + r.frames_dropped == 300


# ------------------------------------------------------------------------ fps on the measured ladders

ALPHA = FpsParams().ewma_alpha


@pytest.mark.parametrize("scenario", S.SCENARIOS, ids=lambda sc: sc.name)
def test_fps_holds_the_widest_fitting_width_on_the_measured_ladders(scenario):
    """Issue 15: 20-minute runs on the bench ladders (log-normal frame times with the measured p95), with
    and without a load phase: the widest width that fits is held >= 85 % of the steady time (lowest: r18
    at 25 fps, 89 %, whose 0.5 has a p95 2.2x its p50), at most one switch per minute, and a step up into a
    width over budget is undone within a probe's frames."""
    result, verdict = S.run(scenario, S.policy_for(scenario), seed=0, ewma_alpha=ALPHA)
    assert verdict.held_widest >= 0.85, (verdict, [(round(s.t, 1), s.old, s.new) for s in result.switches])
    assert verdict.switches_per_min <= 1.0
    # a probe of a width just over budget is judged on probe_frames (30) frames of its latency
    slowest_ms = max(scenario.latency_ms(w, t)[0] for w in S.policy_for(scenario).widths for t in (0, 500))
    assert verdict.longest_wrong_s <= FpsParams().probe_frames * slowest_ms / 1000.0
    assert result.max_switches_in(5.0) <= 2  # at most one try (up and back down) in any 5 s


def test_fps_before_issue_15_held_a_narrower_width_on_the_same_seed():
    """The contrast: the window-median policy of e88026c (loaded from git) on the same scenario and seed held
    0.5 while 0.75 fit; skipped where git or that revision is unavailable (a source tarball)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "sim_fps_scenarios.py"
    spec = importlib.util.spec_from_file_location("sim_fps_scenarios", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        before = module.policy_class_at(module.BEFORE)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"git revision {module.BEFORE} not available: {exc}")
    scenario = S.SCENARIOS[0]
    assert (scenario.ladder, scenario.target_fps, scenario.widest_fitting(ALPHA)) == ("lite0-480", 12.0, 0.75)
    old_result, old = S.run(scenario, S.policy_for(scenario, before), seed=0, ewma_alpha=ALPHA)
    _, new = S.run(scenario, S.policy_for(scenario), seed=0, ewma_alpha=ALPHA)
    assert old.held_widest < 0.05 and old_result.dominant_width() == 0.5
    assert new.held_widest > 0.95


def test_measured_ladders_parse_and_their_noise_has_the_measured_p95():
    p50, p95 = parse_latency("lite0-480")
    assert sorted(p50) == [0.25, 0.5, 0.75, 1.0] and p95[0.75] == pytest.approx(110.45)
    assert parse_latency("0.25:8,0.5:14/20") == ({0.25: 8.0, 0.5: 14.0}, {0.5: 20.0})
    r = run("fixed", {0.5: 24.26}, width=0.5, latency_p95_ms={0.5: 37.8}, camera_fps=5, duration_s=400,
            warmup_s=1)
    assert r.latency_p50_ms[0.5] == pytest.approx(24.26, rel=0.03)
    assert set(LADDERS) >= {"lite0-480", "r18-480"}
    with pytest.raises(ValueError, match="p95 10 ms of width 0.5 needs a p50 at or below it"):
        SimConfig(latency_ms={0.5: 14.0}, latency_p95_ms={0.5: 10.0}).validate()


# --------------------------------------------------------------------------------------------- battery


def test_battery_drain_steps_down_in_order_and_charging_brings_it_back():
    charge = (Phase(60.0, 90.0),)
    r = run("battery", battery_start=0.7, battery_drain_per_min=0.6, charge=charge, charge_per_min=1.0,
            duration_s=100, warmup_s=1)
    steps = [(s.old, s.new) for s in r.switches]
    assert steps[:3] == [(1.0, 0.75), (0.75, 0.5), (0.5, 0.25)]
    assert steps[3] == (0.25, 1.0) and "charging" in r.switches[3].reason
    assert 65.0 <= r.switches[3].t < 65.1  # charging from 60 s, held for charging_stable_s (5 s)
    # Thresholds 0.6/0.4/0.2 at 0.6/min from 0.7: crossed at 10 s, 30 s, 50 s.
    for s, t in zip(r.switches[:3], [10.0, 30.0, 50.0], strict=True):
        assert s.t == pytest.approx(t, abs=0.1)


def test_rising_battery_steps_up_only_past_threshold_plus_hysteresis():
    # Charging does not force the widest width here, so the level alone decides: from 30% at 1.0/min the
    # 40% threshold is reached at 6 s, but 0.75 comes only at 45% (9 s); 1.0 at 65% (21 s), not 60% (18 s).
    r = run("battery", charging_full=False, hysteresis=0.05, battery_start=0.3, charge=(Phase(0.0, 30.0),),
            charge_per_min=1.0, duration_s=30, warmup_s=1)
    ups = [(s.old, s.new, s.t) for s in r.switches[1:]]
    assert r.switches[0].new == 0.5
    assert [(o, n) for o, n, _ in ups] == [(0.5, 0.75), (0.75, 1.0)]
    assert ups[0][2] == pytest.approx(9.0, abs=0.1) and ups[1][2] == pytest.approx(21.0, abs=0.1)
    assert all("hysteresis" in s.reason for s in r.switches[1:])


def test_battery_unknown_phase_keeps_width():
    r = run("battery", battery_start=0.5, battery_drain_per_min=0.6, battery_unknown=(Phase(5.0, 40.0),),
            duration_s=45, warmup_s=1)
    # Known: 0.5 -> width 0.75. Crossing 40% at 10 s happens while unknown; the switch comes when known again.
    assert [(s.old, s.new) for s in r.switches][:2] == [(1.0, 0.75), (0.75, 0.25)]
    assert r.switches[0].t < 0.1
    assert r.switches[1].t == pytest.approx(40.0, abs=0.1)


# ---------------------------------------------------------------------------------------------- budget


def test_budget_is_the_narrower_of_battery_and_fps():
    # Battery 0.3 allows 0.5; fps would allow 1.0 -> battery decides.
    r1 = run("budget", target_fps=25, battery_start=0.3, duration_s=30, warmup_s=5)
    assert r1.final_width == 0.5 and r1.steady_time_per_width_s[0.5] == pytest.approx(25.0)
    # Battery full allows 1.0; fps at 30 fps with 1.0 at 40 ms allows 0.75 -> fps decides.
    r2 = run("budget", {**LATENCY_MS, 1.0: 40.0}, target_fps=30, battery_start=1.0, duration_s=30, warmup_s=5)
    assert r2.final_width == 0.75 and r2.steady_time_per_width_s[0.75] == pytest.approx(25.0)


# -------------------------------------------------------------------------------------- determinism, CLI


def test_simulation_is_deterministic_given_seed():
    kw = {"target_fps": 25, "load": (Phase(10.0, 20.0, 1.6),), "duration_s": 30, "jitter": 0.1}
    a, b, c = run("fps", seed=7, **kw), run("fps", seed=7, **kw), run("fps", seed=8, **kw)
    assert a.to_dict() == b.to_dict()
    assert a.latency_p50_ms != c.latency_p50_ms


def test_missing_latency_profile_and_bad_scenario_raise():
    with pytest.raises(ValueError, match=r"no latency profile for width\(s\) \[0.25\]"):
        simulate(make_policy("fixed", [0.25, 1.0]), SimConfig(latency_ms={1.0: 10.0}))
    with pytest.raises(ValueError, match="camera fps = 0 is out of range"):
        simulate(make_policy("fixed", [1.0]), SimConfig(latency_ms={1.0: 10.0}, camera_fps=0))
    with pytest.raises(ValueError, match="load factor -1 must be > 0"):
        SimConfig(latency_ms={1.0: 10.0}, load=(Phase(0, 1, -1),)).validate()


def test_cli_prints_figures_and_writes_json(tmp_path, capsys):
    out = tmp_path / "sim.json"
    rc = slimseg_main(
        [
            "simulate",
            "--policy",
            "fps",
            "--target-fps",
            "25",
            "--duration",
            "30",
            "--load",
            "10:20:1.6",
            "--seed",
            "1",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "achieved fps" in text and "switches" in text and "time per width" in text
    data = json.loads(out.read_text())
    assert data["policy"]["policy"] == "fps" and data["policy"]["target_fps"] == 25
    assert data["frames_arrived"] == 900
    assert data["switch_count"] == 2 and data["switches"][0]["old"] == 1.0
    assert set(data["time_per_width_s"]) == {"0.25", "0.5", "0.75", "1"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--latency", "0.25-8"], "'0.25-8' is not WIDTH:MS or WIDTH:P50/P95"),
        (["--latency", "lite0-999"], "'lite0-999' is not WIDTH:MS"),
        (["--load", "10:20"], "'10:20' is not START:END:FACTOR"),
        (["--policy", "fps", "--target-fps", "0"], "target_fps = 0 is out of range"),
        (["--policy", "fps", "--width", "0.5"], "--width do(es) not apply to policy 'fps'"),
        (["--policy", "fixed", "--width", "0.3"], "width 0.3 is not one of the available widths"),
        (["--battery-start", "57"], "battery start 57 is not a fraction"),
        (["--thresholds", "0.2,x"], "--thresholds: '0.2,x' is not a comma-separated list"),
        (["--latency", "0.25:8,0.25:9"], "width 0.25 given twice"),
        (["--policy", "fps", "--ignore-charging"], "--ignore-charging do(es) not apply to policy 'fps'"),
        (["--duration", "1e9"], "at most 5,000,000"),
    ],
)
def test_cli_bad_input_is_a_clear_error(argv, message, capsys):
    rc = slimseg_main(["simulate", "--duration", "2", *argv])
    assert rc == 2
    assert message in capsys.readouterr().err
