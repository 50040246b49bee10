"""drive a width policy with latency profiles and a draining battery, on a simulated clock

The simulator replays what the node does: frames arrive at the camera rate, the worker takes the newest one
when it is free (older waiting frames are dropped and counted), each frame's latency comes from the width's
profile (its mean * load factor * (1 + jitter), or with a p95 given, a log-normal around the median with
that p95: measured latencies are heavy-tailed), and the policy sees one observation per processed frame.
Deterministic for a given --seed. Figures: achieved fps, switches per minute, time per width, drops.

examples:
  slimseg simulate --policy fps --target-fps 30 --latency 0.25:8,0.5:14,0.75:22,1.0:40 --duration 120
  slimseg simulate --policy fps --target-fps 25 --load 40:70:1.6 --json runs/sim_load.json
  slimseg simulate --policy fps --target-fps 12 --latency lite0-480 --initial-width 0.25 --duration 600
  slimseg simulate --policy budget --target-fps 25 --battery-start 0.7 --battery-drain-per-min 0.3 \\
      --charge 90:150 --charge-per-min 0.5 --duration 180
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slimseg_ros.errors import SlimsegError
from slimseg_ros.policy import PARAMETERS, POLICIES, Observation, WidthPolicy, make_policy
from slimseg_ros.policy_params import ROWS

DEFAULT_LATENCY = "0.25:8,0.5:14,0.75:22,1.0:30"
# Measured ladders (docs/bench.md, 480x360, 1 thread unless said): WIDTH:P50/P95 in ms, usable as --latency.
LADDERS = {
    # EfficientNet-Lite0 (the shipped model), ONNX Runtime CPU, 1 thread, load average 7.8
    "lite0-480": "0.25:13.08/19.26,0.5:24.26/37.80,0.75:56.17/110.45,1.0:80.39/118.57",
    # the same model at its training size 240x176, load average 8.4
    "lite0-240": "0.25:1.87/5.78,0.5:4.28/8.50,0.75:8.41/12.56,1.0:12.23/18.63",
    # the former ResNet-18 model, 2 threads, quiet machine (load average 1.4)
    "r18-480": "0.25:10.66/32.79,0.5:26.94/58.28,0.75:56.19/101.25,1.0:94.08/133.96",
}
Z95 = 1.6448536269514722  # standard normal 95th percentile: a log-normal's sigma is ln(p95 / p50) / Z95
MAX_FRAMES = 5_000_000  # about a minute of simulation; longer runs are almost certainly a typo


@dataclass(frozen=True)
class Phase:
    """A time interval [start_s, end_s) with a value: a load factor, or 1.0 for charging/unknown phases."""

    start_s: float
    end_s: float
    factor: float = 1.0

    def covers(self, t: float) -> bool:
        """Whether time t falls inside the phase."""
        return self.start_s <= t < self.end_s


@dataclass
class SimConfig:
    """Everything a run depends on; validated so a bad scenario fails before simulating."""

    latency_ms: dict[float, float]
    latency_p95_ms: dict[float, float] = field(default_factory=dict)  # widths here: log-normal, no jitter
    duration_s: float = 60.0
    camera_fps: float = 30.0
    jitter: float = 0.05
    load: tuple[Phase, ...] = ()
    battery_start: float | None = 1.0
    battery_drain_per_min: float = 0.0
    charge: tuple[Phase, ...] = ()
    charge_per_min: float = 0.05
    battery_unknown: tuple[Phase, ...] = ()
    warmup_s: float = 10.0
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if not self.latency_ms:
            raise ValueError("latency profile is empty: give at least one WIDTH:MS")
        for w, ms in self.latency_ms.items():
            if not (0 < w <= 1 and math.isfinite(ms) and ms > 0):
                raise ValueError(f"latency profile entry {w:g}:{ms:g} needs width in (0, 1] and ms > 0")
        for w, p95 in self.latency_p95_ms.items():
            if w not in self.latency_ms or not (math.isfinite(p95) and p95 >= self.latency_ms[w]):
                raise ValueError(f"latency p95 {p95:g} ms of width {w:g} needs a p50 at or below it")
        frames = self.duration_s * self.camera_fps
        checks = [
            ("duration", self.duration_s, self.duration_s > 0, "> 0 s"),
            ("camera fps", self.camera_fps, 0 < self.camera_fps <= 1000, "(0, 1000]"),
            ("frames (duration x camera fps)", frames, frames <= MAX_FRAMES, f"at most {MAX_FRAMES:,}"),
            ("jitter", self.jitter, 0 <= self.jitter < 1, "[0, 1)"),
            ("warmup", self.warmup_s, 0 <= self.warmup_s < self.duration_s, "[0, duration)"),
            (
                "battery drain per minute",
                self.battery_drain_per_min,
                0 <= self.battery_drain_per_min <= 1,
                "[0, 1]",
            ),
            ("charge per minute", self.charge_per_min, 0 <= self.charge_per_min <= 1, "[0, 1]"),
        ]
        for name, value, ok, allowed in checks:
            if not (math.isfinite(value) and ok):
                raise ValueError(f"{name} = {value:g} is out of range: {allowed}")
        if self.battery_start is not None and not (0 <= self.battery_start <= 1):
            raise ValueError(f"battery start {self.battery_start:g} is not a fraction in [0, 1]")
        for ph in (*self.load, *self.charge, *self.battery_unknown):
            if not (0 <= ph.start_s < ph.end_s):
                raise ValueError(f"phase {ph.start_s:g}:{ph.end_s:g} needs 0 <= start < end")
        for ph in self.load:
            if not (math.isfinite(ph.factor) and ph.factor > 0):
                raise ValueError(f"load factor {ph.factor:g} must be > 0")


@dataclass
class Switch:
    """One width change, as the node would log it."""

    t: float
    old: float
    new: float
    reason: str


@dataclass
class SimResult:
    """Figures of a run; `to_dict` is what --json writes."""

    policy: dict[str, Any]
    duration_s: float
    warmup_s: float
    frames_arrived: int
    frames_processed: int
    frames_dropped: int
    fps: float
    steady_fps: float
    switches: list[Switch] = field(default_factory=list)
    time_per_width_s: dict[float, float] = field(default_factory=dict)
    steady_time_per_width_s: dict[float, float] = field(default_factory=dict)
    latency_p50_ms: dict[float, float] = field(default_factory=dict)
    final_width: float = 0.0
    battery_end: float | None = None

    @property
    def switches_per_min(self) -> float:
        """Width changes per minute over the whole run."""
        return len(self.switches) * 60.0 / self.duration_s

    def steady_switches(self) -> list[Switch]:
        """Width changes after the warm-up period."""
        return [s for s in self.switches if s.t >= self.warmup_s]

    def max_switches_in(self, window_s: float = 5.0) -> int:
        """Most steady-state switches inside any window of `window_s` seconds (oscillation check)."""
        times = [s.t for s in self.steady_switches()]
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] < t - window_s:
                j += 1
            best = max(best, i - j + 1)
        return best

    def dominant_width(self) -> float:
        """The width held longest after warm-up."""
        return max(self.steady_time_per_width_s.items(), key=lambda kv: kv[1])[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (widths as strings for keys)."""
        return {
            "policy": self.policy,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "frames_arrived": self.frames_arrived,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
            "fps": round(self.fps, 3),
            "steady_fps": round(self.steady_fps, 3),
            "switch_count": len(self.switches),
            "switches_per_min": round(self.switches_per_min, 3),
            "steady_switches": len(self.steady_switches()),
            "max_steady_switches_in_5s": self.max_switches_in(5.0),
            "time_per_width_s": {f"{w:g}": round(v, 3) for w, v in self.time_per_width_s.items()},
            "steady_time_per_width_s": {
                f"{w:g}": round(v, 3) for w, v in self.steady_time_per_width_s.items()
            },
            "latency_p50_ms": {f"{w:g}": round(v, 3) for w, v in self.latency_p50_ms.items()},
            "final_width": self.final_width,
            "battery_end": None if self.battery_end is None else round(self.battery_end, 4),
            "switches": [{**asdict(s), "t": round(s.t, 4)} for s in self.switches],
        }


class _Battery:
    """Battery level advanced along the simulated clock: linear drain, linear charge during charge phases."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.level = cfg.battery_start
        self.t = 0.0

    def charging(self, t: float) -> bool:
        return any(ph.covers(t) for ph in self.cfg.charge)

    def advance(self, t: float) -> float | None:
        """Level at time t (times must not go backwards); None when the battery was never known."""
        if self.level is None:
            return None
        # Integrate in small steps so a charge phase boundary inside [self.t, t) is honoured.
        while self.t < t:
            step = min(t - self.t, 0.05)
            rate = self.cfg.charge_per_min if self.charging(self.t) else -self.cfg.battery_drain_per_min
            self.level = min(1.0, max(0.0, self.level + rate * step / 60.0))
            self.t += step
        return self.level

    def reading(self, t: float) -> float | None:
        """What BatteryState would say at t: NaN inside an unknown phase."""
        level = self.advance(t)
        if any(ph.covers(t) for ph in self.cfg.battery_unknown):
            return float("nan")
        return level


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def simulate(policy: WidthPolicy, cfg: SimConfig) -> SimResult:
    """Run the policy against the scenario; every width the policy may pick needs a latency profile."""
    cfg.validate()
    missing = [w for w in policy.widths if w not in cfg.latency_ms]
    if missing:
        raise ValueError(f"no latency profile for width(s) {missing}; profile has {sorted(cfg.latency_ms)}")
    rng = random.Random(cfg.seed)
    battery = _Battery(cfg)
    period = 1.0 / cfg.camera_fps
    n_frames = int(math.floor(cfg.duration_s * cfg.camera_fps + 1e-9))

    switches: list[Switch] = []
    latencies: dict[float, list[float]] = {w: [] for w in policy.widths}
    completions: list[float] = []
    held: list[tuple[float, float]] = [(0.0, policy.width)]  # (from time, width)

    def process(start: float) -> float:
        width = policy.width
        load = 1.0
        for ph in cfg.load:
            if ph.covers(start):
                load *= ph.factor
        if width in cfg.latency_p95_ms:
            sigma = math.log(cfg.latency_p95_ms[width] / cfg.latency_ms[width]) / Z95
            noise = math.exp(rng.gauss(0.0, sigma))
        else:
            noise = max(0.1, 1.0 + rng.gauss(0.0, cfg.jitter)) if cfg.jitter > 0 else 1.0
        lat = cfg.latency_ms[width] / 1000.0 * load * noise
        end = start + lat
        latencies[width].append(lat)
        completions.append(end)
        obs = Observation(
            now=end, latency_s=lat, battery=battery.reading(end), charging=battery.charging(end)
        )
        decision = policy.update(obs)
        if decision.changed:
            switches.append(Switch(end, width, decision.width, decision.reason))
            held.append((end, decision.width))
        return end

    busy_until = 0.0
    pending: float | None = None  # arrival time of the newest frame waiting for the worker
    dropped = 0
    for k in range(n_frames):
        t = k * period
        if pending is not None and busy_until <= t:
            busy_until = process(max(busy_until, pending))
            pending = None
        if busy_until <= t:
            busy_until = process(t)
        else:
            if pending is not None:
                dropped += 1
            pending = t
    if pending is not None:
        if busy_until < cfg.duration_s:
            process(busy_until)
        else:
            dropped += 1

    done = [c for c in completions if c <= cfg.duration_s]
    steady = [c for c in done if c >= cfg.warmup_s]
    return SimResult(
        policy=policy.describe(),
        duration_s=cfg.duration_s,
        warmup_s=cfg.warmup_s,
        frames_arrived=n_frames,
        frames_processed=len(completions),
        frames_dropped=dropped,
        fps=len(done) / cfg.duration_s,
        steady_fps=len(steady) / (cfg.duration_s - cfg.warmup_s),
        switches=switches,
        time_per_width_s=_time_per_width(held, 0.0, cfg.duration_s, policy.widths),
        steady_time_per_width_s=_time_per_width(held, cfg.warmup_s, cfg.duration_s, policy.widths),
        latency_p50_ms={w: _median(v) * 1000.0 for w, v in latencies.items() if v},
        final_width=policy.width,
        battery_end=battery.advance(cfg.duration_s),
    )


def _time_per_width(
    held: list[tuple[float, float]], start: float, end: float, widths: Sequence[float]
) -> dict[float, float]:
    """Seconds each width was in force inside [start, end]."""
    out = {w: 0.0 for w in widths}
    for i, (t0, w) in enumerate(held):
        t1 = held[i + 1][0] if i + 1 < len(held) else end
        out[w] += max(0.0, min(t1, end) - max(t0, start))
    return out


# ----------------------------------------------------------------------------------------------- CLI


def parse_latency(text: str) -> tuple[dict[float, float], dict[float, float]]:
    """'0.25:8,0.5:14/20' or a LADDERS name -> ({0.25: 8.0, 0.5: 14.0}, {0.5: 20.0}): ms per width, p50
    (or mean, without a p95) and the p95 where given."""
    hint = f"e.g. --latency {DEFAULT_LATENCY}, WIDTH:P50/P95 items, or one of {', '.join(LADDERS)}"
    out: dict[float, float] = {}
    p95: dict[float, float] = {}
    for item in filter(None, (p.strip() for p in LADDERS.get(text, text).split(","))):
        w, sep, ms = item.partition(":")
        mid, slash, high = ms.partition("/")
        try:
            if not sep:
                raise ValueError
            width, value = float(w), float(mid)
            if slash:
                p95[width] = float(high)
        except ValueError:
            raise SlimsegError(f"--latency: '{item}' is not WIDTH:MS or WIDTH:P50/P95", hint=hint) from None
        if width in out:
            raise SlimsegError(f"--latency: width {width:g} given twice", hint="one WIDTH:MS per width")
        out[width] = value
    if not out:
        raise SlimsegError("--latency is empty", hint=hint)
    return out, p95


def parse_phase(text: str, option: str, with_factor: bool) -> Phase:
    """'START:END' or 'START:END:FACTOR' (seconds) into a Phase."""
    parts = text.split(":")
    want = 3 if with_factor else 2
    form = "START:END:FACTOR" if with_factor else "START:END"
    try:
        if len(parts) != want:
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise SlimsegError(
            f"{option}: '{text}' is not {form}", hint="times in seconds, e.g. 20:40:1.5"
        ) from None
    return Phase(values[0], values[1], values[2] if with_factor else 1.0)


def parse_floats(text: str | None, option: str) -> list[float] | None:
    """'0.2,0.4,0.6' -> [0.2, 0.4, 0.6]; None stays None (policy default)."""
    if text is None:
        return None
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise SlimsegError(f"{option}: '{text}' is not a comma-separated list of numbers") from None


# Scenario options: (option, type, default, help); the default goes into the help text as "(default X)".
SCENARIO_OPTIONS: tuple[tuple[str, type, Any, str], ...] = (
    ("--jitter", float, 0.05, "latency std dev as a fraction, for widths without a p95"),
    ("--camera-fps", float, 30.0, "camera frame rate"),
    ("--duration", float, 120.0, "simulated seconds"),
    ("--battery-start", float, 1.0, "battery fraction at t=0"),
    ("--battery-drain-per-min", float, 0.0, "fraction per minute"),
    ("--charge-per-min", float, 0.05, "charge rate, fraction/min"),
    ("--width", float, None, "fixed policy: the width"),
    ("--initial-width", float, None, "width at start (default widest)"),
    ("--seed", int, 0, "random seed for latency noise"),
)
# Phase options, repeatable: (option, form, help)
PHASE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--load", "START:END:FACTOR", "scale every latency by FACTOR between START and END seconds"),
    ("--charge", "START:END", "charging between START and END seconds"),
    ("--battery-unknown", "START:END", "battery reads NaN between START and END seconds"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `slimseg simulate`."""
    parser.add_argument(
        "--policy", choices=list(POLICIES), default="budget", help="width policy (default budget)"
    )
    parser.add_argument(
        "--latency",
        default=DEFAULT_LATENCY,
        help=f"latency per width, WIDTH:MS (mean) or WIDTH:P50/P95 (log-normal) list, or a measured ladder: "
        f"{', '.join(LADDERS)} (default {DEFAULT_LATENCY})",
    )
    for option, kind, default, text in SCENARIO_OPTIONS:
        suffix = "" if default is None else f" (default {default:g})"
        parser.add_argument(option, type=kind, default=default, help=text + suffix)
    for option, form, text in PHASE_OPTIONS:
        parser.add_argument(option, action="append", default=[], metavar=form, help=f"{text} (repeatable)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds excluded from steady figures (default 10, or a quarter of a shorter run)",
    )
    add_policy_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")


# Parameters that default to true get a flag that turns them off, named for what it does.
BOOL_FLAGS = {"charging_full": "--ignore-charging"}


def policy_option(arg: str) -> str:
    """The command-line option of a policy argument (the parameter table's field name)."""
    return BOOL_FLAGS.get(arg, "--" + arg.replace("_", "-"))


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per row of the policy parameter table (slimseg_ros/policy_params.py): its description
    and default come from there, so the simulator cannot drift from the node."""
    for row in ROWS:
        default = ",".join(f"{v:g}" for v in row.default) if row.kind is list else row.default
        text = f"{row.description} (node parameter {row.node}; default {default})"
        if row.kind is bool:
            flip = "turns off" if row.default else "turns on"
            parser.add_argument(
                policy_option(row.arg), dest=row.arg, action="store_const", const=not row.default,
                default=None, help=f"{flip}: {text}",
            )
        elif row.kind is list:
            option = policy_option(row.arg)
            parser.add_argument(option, dest=row.arg, default=None, help=f"{text}; comma-separated")
        else:
            parser.add_argument(policy_option(row.arg), dest=row.arg, type=row.kind, default=None, help=text)


def _policy_from_args(args: argparse.Namespace, widths: list[float]) -> WidthPolicy:
    candidates = {"width": args.width, "initial_width": args.initial_width}
    for row in ROWS:
        value = getattr(args, row.arg)
        candidates[row.arg] = parse_floats(value, policy_option(row.arg)) if row.kind is list else value
    accepted = PARAMETERS[args.policy]
    ignored = [k for k, v in candidates.items() if v is not None and k not in accepted]
    if ignored:
        opts = ", ".join(policy_option(k) for k in ignored)
        raise SlimsegError(
            f"{opts} do(es) not apply to policy '{args.policy}'", hint=f"it takes {', '.join(accepted)}"
        )
    params = {k: v for k, v in candidates.items() if k in accepted}
    try:
        return make_policy(args.policy, widths, **params)
    except ValueError as exc:
        raise SlimsegError(f"policy '{args.policy}': {exc}") from None


def format_report(result: SimResult) -> str:
    """The figures as a few readable lines."""
    lines = [
        f"policy {result.policy.get('policy')}  duration {result.duration_s:g} s  "
        f"(steady: after {result.warmup_s:g} s)",
        f"frames: {result.frames_arrived} arrived, {result.frames_processed} processed, "
        f"{result.frames_dropped} dropped",
        f"achieved fps: {result.fps:.2f} overall, {result.steady_fps:.2f} steady",
        f"switches: {len(result.switches)} ({result.switches_per_min:.2f}/min), "
        f"steady {len(result.steady_switches())}, max {result.max_switches_in(5.0)} in any 5 s",
        "time per width (s): "
        + ", ".join(
            f"{w:g}: {v:.1f} ({v / result.duration_s:.0%})" for w, v in result.time_per_width_s.items()
        ),
        "latency p50 (ms): " + ", ".join(f"{w:g}: {v:.1f}" for w, v in result.latency_p50_ms.items()),
        f"final width {result.final_width:g}"
        + ("" if result.battery_end is None else f", battery at end {result.battery_end:.0%}"),
    ]
    for s in result.switches[:20]:
        lines.append(f"  t={s.t:7.2f} s  {s.old:g} -> {s.new:g}: {s.reason}")
    if len(result.switches) > 20:
        lines.append(f"  ... {len(result.switches) - 20} more switches (see --json)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Build the scenario and policy from the options, simulate, print (and optionally save) the figures."""
    latency, p95 = parse_latency(args.latency)
    cfg = SimConfig(
        latency_ms=latency,
        latency_p95_ms=p95,
        duration_s=args.duration,
        camera_fps=args.camera_fps,
        jitter=args.jitter,
        load=tuple(parse_phase(p, "--load", True) for p in args.load),
        battery_start=args.battery_start,
        battery_drain_per_min=args.battery_drain_per_min,
        charge=tuple(parse_phase(p, "--charge", False) for p in args.charge),
        charge_per_min=args.charge_per_min,
        battery_unknown=tuple(parse_phase(p, "--battery-unknown", False) for p in args.battery_unknown),
        warmup_s=min(10.0, args.duration / 4) if args.warmup is None else args.warmup,
        seed=args.seed,
    )
    try:
        cfg.validate()
    except ValueError as exc:
        raise SlimsegError(f"scenario: {exc}", hint="see `slimseg simulate --help`") from None
    policy = _policy_from_args(args, sorted(latency))
    result = simulate(policy, cfg)
    print(format_report(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
