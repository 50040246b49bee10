"""Run the whole idea end to end: the real node switches width as a battery drains, then under a load spike.

Exports the committed checkpoint to ONNX (once, cached), starts `slimseg_node` exactly as launch would
(entry point + --ros-args --params-file), plays street frames to it as a camera over DDS, drains a simulated
battery from 100% to 10% (policy `battery`), pauses inference for a moment (~/enable), then sets policy `fps`
with a frame-rate target and loads the CPU to show the closed loop stepping down and back up. Writes to --out:
a montage of every width on one frame, a timeline of the policy's inputs and decisions, the run as an MP4
with a GIF preview, and summary.json, which accounts for every frame the camera published.

examples:
  slimseg demo                                  # shipped CamVid frames, committed model, ~3 minutes
  slimseg demo --data ../shared/data/camvid     # CamVid val (101 consecutive frames) as the camera
  slimseg demo --source drive.mp4 --out my_demo # any video file or image folder
  slimseg demo --quick                          # short phases (what the tests run)
  slimseg demo --bag ~/bags/drive --topic /camera/image_raw --record drive_labels   # a recorded bag instead
  slimseg demo --bag --as-fast --record out_bag  # the shipped frames as a bag, every frame labelled
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from slimseg_ros.errors import SlimsegError
from slimseg_ros.frames import Frame, open_frames

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
# The shipped frames are every 6th of a 15 fps sequence: each is held for 6 camera periods (real speed).
SHIPPED_HOLD = 6
MONTAGE_CANDIDATES = 24  # frames scored at every width to pick the montage frame
DRAIN_S = 1.5  # after the camera stops: the node finishes its last frame, the last diagnostics arrive
# What a run leaves in --out; PICTURES are what --pictures copies (the README shows them).
OUTPUTS = {"montage": "montage.png", "timeline": "timeline.png", "video": "demo.mp4", "preview": "demo.gif",
           "summary": "summary.json", "record": "timeline.json", "stamps": "animation.json",
           "node_log": "node.log"}
PICTURES = ("montage", "timeline", "video", "preview", "summary")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `slimseg demo`."""
    src = parser.add_argument_group("input")
    src.add_argument("--data", help="CamVid-layout dataset folder: plays its --split as the camera")
    src.add_argument("--split", default="val", help="split of --data to play (default val)")
    src.add_argument("--source", help="an image folder or video file to play instead")
    src.add_argument("--frames", type=int, default=None, help="play at most this many distinct frames")
    src.add_argument("--hold", type=int, default=None,
                     help=f"camera periods each frame is shown (default {SHIPPED_HOLD} for the shipped "
                     "frames, which are 0.4 s apart; 1 otherwise)")
    bag = parser.add_argument_group(
        "bag (rosbag2, sqlite3 or MCAP; needs `pip install 'slimseg_ros[bag]'`; docs/node.md#bags)")
    bag.add_argument("--bag", nargs="?", const="shipped", metavar="PATH",
                     help="play this bag's camera topic through the node once and account for every frame, "
                     "instead of the demo's phases (no PATH: the shipped frames written as a bag to "
                     "OUT/demo_bag); the node runs its config/slimseg.yaml defaults")
    bag.add_argument("--topic", help="the bag's sensor_msgs/Image or CompressedImage topic (needed when it "
                     "has several)")
    bag.add_argument("--as-fast", action="store_true",
                     help="publish each frame once the previous one's labels are back, on reliable QoS "
                     "(default: at the bag's own rate, on the camera's sensor-data QoS)")
    bag.add_argument("--frame-timeout", type=float, default=10.0,
                     help="with --as-fast: seconds to wait for a frame's labels before the next (default 10)")
    bag.add_argument("--record", metavar="PATH",
                     help="write the node's labels, color, camera_info, width, class_info and /diagnostics "
                     "(and, with --bag, the played input) to a new rosbag2 MCAP folder")
    model = parser.add_argument_group("model")
    model.add_argument("--ckpt", default=None,
                       help="checkpoint to export (default: the one checkpoint in models/)")
    model.add_argument("--manifest", help="use an existing export (manifest.yaml) instead of --ckpt")
    model.add_argument("--backend", default="onnxruntime", help="node backend (default onnxruntime)")
    model.add_argument("--threads", type=int, default=1,
                       help="ONNX Runtime threads, in the node and for the montage timing (default 1: on a "
                       "2-core machine the node's ROS threads and a larger pool slow each other down)")
    model.add_argument("--height", type=int, help="network input height for the export "
                       "(default: the checkpoint's training eval size, else 360)")
    model.add_argument("--width", type=int, help="network input width (default: likewise, else 480)")
    run = parser.add_argument_group("run")
    run.add_argument("--out", default="demo_out", help="folder for pictures and records (default demo_out)")
    run.add_argument("--pictures", help="also copy the pictures and summary.json here (README: docs/img)")
    run.add_argument("--camera-fps", type=float, default=15.0, help="simulated camera rate (CamVid: 15)")
    run.add_argument("--battery-s", type=float, default=40.0, help="seconds to drain the battery 100%%->10%%")
    run.add_argument("--pause-s", type=float, default=3.0,
                     help="seconds inference is paused through ~/enable after the drain (0: no pause)")
    run.add_argument("--fps-phase-s", type=float, default=45.0, help="seconds of the fps-target phase")
    run.add_argument("--target-fps", type=float, default=None,
                     help="fps target (default: from measured latency)")
    run.add_argument("--quick", action="store_true", help="short phases and few frames (for tests)")
    run.add_argument("--no-live", action="store_true", help="plain log lines instead of the live view")


def default_checkpoint(models: Path = MODELS_DIR) -> Path:
    """The committed model: the one checkpoint in models/ (its name is not written into the demo)."""
    found = sorted(p.with_suffix("") for p in models.glob("*.safetensors"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise SlimsegError(f"expected one checkpoint in {models}, found {names}", "pass --ckpt or --manifest")
    return found[0]


def resolve_manifest(args: argparse.Namespace, out: Path) -> Path:
    """An existing manifest, or the checkpoint exported once into out/model (re-exported if it changed)."""
    if args.manifest:
        return Path(args.manifest)
    from slimseg_ros.engines.export import export_model
    from slimseg_ros.manifest import sha256_file
    from slimseg_ros.training.checkpoint import load_checkpoint

    ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint()
    weights = ckpt.with_suffix(".safetensors") if ckpt.suffix != ".safetensors" else ckpt
    if not weights.is_file():
        raise SlimsegError(f"no checkpoint at {weights}", "pass --ckpt or --manifest (see README: training)")
    model, meta = load_checkpoint(ckpt)
    eval_size = (meta.get("train", {}).get("data", {}) or {}).get("eval_size") or [360, 480]
    args.height = args.height or int(eval_size[0])
    args.width = args.width or int(eval_size[1])
    key = f"{sha256_file(weights)[:16]}-{args.height}x{args.width}"
    target = out / "model"
    stamp = target / "source.txt"
    if stamp.is_file() and stamp.read_text().strip() == key and (target / "manifest.yaml").is_file():
        return target / "manifest.yaml"
    shutil.rmtree(target, ignore_errors=True)
    print(f"exporting {ckpt.name} to ONNX, one sub-network per width ({args.height}x{args.width}) ...")
    eval_json = weights.with_name(weights.stem + ".eval.json")
    accuracy = None
    if eval_json.is_file():
        from slimseg_ros.engines.export import load_eval_json

        accuracy = load_eval_json(eval_json)
    manifest = export_model(model, meta, target, height=args.height, width=args.width, checkpoint=ckpt,
                            accuracy=accuracy, log=lambda *a, **k: None)
    stamp.write_text(key + "\n")
    return manifest


def _montage(manifest_path: Path, frames: list[Frame], out: Path, backend_name: str,
             threads: int) -> tuple[dict, dict[float, float]]:
    """Every width on the played frame where the widths differ most; returns what it shows and latency (ms)
    per width, which the fps phase's target and the node's first guesses start from."""
    from slimseg_ros.backends import create_backend
    from slimseg_ros.demo_report import WidthResult, miou, montage
    from slimseg_ros.manifest import LatencyRecord, Manifest

    manifest = Manifest.load(manifest_path)
    options = {"threads": threads} if backend_name.startswith("onnxruntime") and threads > 0 else {}
    backend = create_backend(backend_name, manifest, **options)
    try:
        pool = [f for f in frames if f.label is not None] or frames
        candidates = pool[::max(1, math.ceil(len(pool) / MONTAGE_CANDIDATES))]
        scored = []
        for frame in candidates:  # mIoU spread across widths, or without ground truth how much they disagree
            preds = {w: backend.infer(frame.rgb, w) for w in backend.widths}
            if frame.label is not None:
                scores = {w: miou(p, frame.label, manifest.num_classes, manifest.ignore_index)
                          for w, p in preds.items()}
                spread = 100 * (max(scores.values()) - min(scores.values()))
            else:
                scores, spread = None, None
            disagree = float((preds[backend.widths[0]] != preds[backend.widths[-1]]).mean())
            scored.append((frame, preds, scores, spread, disagree))
        frame, preds, scores, spread, disagree = max(
            scored, key=lambda s: s[3] if s[3] is not None else s[4])
        results, latency = [], {}
        for width in backend.widths:
            backend.infer(frame.rgb, width)  # warm-up
            times = []
            for _ in range(5):
                t = time.perf_counter()
                backend.infer(frame.rgb, width)
                times.append(1e3 * (time.perf_counter() - t))
            latency[width] = float(np.median(times))
            flops = manifest.flops(width)
            results.append(WidthResult(width, preds[width], scores[width] if scores else None,
                                       flops / 1e9 if flops else None, latency[width]))
        if spread is not None:
            lo, hi = min(scores, key=scores.get), max(scores, key=scores.get)
            chosen = "largest mIoU spread across widths"
            why = (f"of the {len(candidates)} played frames scored, the one where frame mIoU differs most "
                   f"across widths ({spread:.1f} points, width {lo:g} to {hi:g})")
        else:
            chosen = "largest disagreement between narrowest and widest width"
            why = (f"of the {len(candidates)} played frames, the one where widths {backend.widths[0]:g} and "
                   f"{backend.widths[-1]:g} disagree most ({100 * disagree:.1f}% of pixels); no ground truth")
        h, w = manifest.input_size
        name = manifest.model_name
        note = (f"model {name}, network input {w}x{h}; latency: {backend.name} on {threads or 'default'} CPU "
                f"thread(s), median of 5 runs on this machine; GFLOPs at the network input size")
        classes = manifest.class_table()
        panels = montage(frame.rgb, frame.label, results, classes, manifest.ignore_index,
                         out / OUTPUTS["montage"], title=f"Frame {frame.name}: {why}", note=note)
        for width, ms in latency.items():  # the node's fps policy starts from these instead of FLOPs
            manifest.record_latency(width, backend.name, LatencyRecord(ms, frames=5, source="slimseg demo"))
        try:
            manifest.save()
        except OSError as exc:  # a read-only export still runs; the node then falls back to FLOPs
            print(f"note: could not record latencies in {manifest_path}: {exc}")
        widths = list(backend.widths)
    finally:
        backend.close()
    info = {
        "frame": frame.name, "chosen": chosen, "spread": spread, "panels": panels,
        "candidates": [{"name": f.name, "spread": s,
                        "miou": {f"{w:g}": v for w, v in sc.items()} if sc else None}
                       for f, _, sc, s, _ in scored],
        "widths": [{"width": r.width, "miou": r.miou, "gflops": r.gflops, "latency_ms": r.latency_ms}
                   for r in results],
    }
    return info, {w: latency[w] for w in widths}


def _policy_params(n_widths: int) -> dict:
    """The policy parameters the node is given: the shipped defaults, thresholds fitted to the widths."""
    from slimseg_ros.params import load_defaults
    from slimseg_ros.policy import default_thresholds

    defaults = load_defaults()
    thresholds = [float(t) for t in defaults["battery_thresholds"]]
    if len(thresholds) != n_widths - 1:
        thresholds = default_thresholds(n_widths)
    return {"battery_thresholds": thresholds,
            **{k: defaults[k] for k in ("battery_hysteresis", "fps_window", "fps_margin", "fps_stable_s")}}


def _node_process(manifest: Path, backend: str, threads: int, policy: dict, out: Path):
    """slimseg_node as launch starts it, in the user's ROS domain if one is set (to watch it in rviz), else a
    private one; its log (out/node.log) is parsed for the switches afterwards."""
    from slimseg_ros.node_process import NodeProcess

    params = {"manifest": str(manifest.resolve()), "backend": backend, "policy": "battery", "width": 1.0,
              "threads": threads, "diagnostics_period_s": 0.25, **policy}
    domain = os.environ.get("ROS_DOMAIN_ID")
    env = {"FASTDDS_BUILTIN_TRANSPORTS": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA"),
           "RCUTILS_CONSOLE_OUTPUT_FORMAT": "[{severity}] [{time}] [{name}]: {message}"}  # parsed afterwards
    return NodeProcess(params, out, namespace=f"/slimseg_demo_{os.getpid()}",
                       domain_id=int(domain) if domain else None, env=env, log=out / OUTPUTS["node_log"],
                       params_file=out / "demo_params.yaml")


def _set_enabled(client, driver, enabled: bool) -> None:
    """Pause or resume inference through the node's ~/enable; the driver records the paused span."""
    from std_srvs.srv import SetBool

    if not enabled:
        driver.paused(True)
    try:
        reply = client.call(SetBool, "enable", SetBool.Request(data=enabled))
    except TimeoutError as exc:
        raise SlimsegError(f"slimseg_node's ~/enable service did not answer: {exc}") from exc
    if enabled:
        driver.paused(False)
    if not reply.success:
        raise SlimsegError(f"slimseg_node refused ~/enable {enabled}: {reply.message}")


def status_fields(s: dict, n_widths: int) -> dict[str, str]:
    """The live figures as text; until the first output they say the node is starting, never None/nan."""
    battery = "unknown" if s["battery"] is None else f"{100 * s['battery']:.0f}%"
    fields = {"t": f"{s['t']:.1f}", "phase": s["phase_name"], "battery": battery,
              "target": "-" if s["target_fps"] is None else f"{s['target_fps']:g}",
              "frames": f"{s['published']}/{s['received']}"}
    if s["width"] is None:
        return {**fields, "width": f"starting (loading {n_widths} widths)", "fps": "-", "latency": "-"}
    latency = "-" if s["latency_ms"] is None else f"{s['latency_ms']:.0f} ms"
    return {**fields, "width": f"{s['width']:g}", "fps": f"{s['fps_out']:.1f}", "latency": latency}


class _LiveView:
    """Rich live table on a terminal, one plain line every 2 s elsewhere (CI logs stay readable)."""

    COLUMNS = {"t": "t [s]", "phase": "phase", "battery": "battery", "width": "width", "fps": "fps out",
               "target": "target fps", "latency": "latency", "frames": "frames published/labelled"}

    def __init__(self, driver, phases: list[dict], enabled: bool) -> None:
        from rich.console import Console

        self.driver = driver
        self.phases = phases
        self.console = Console()
        self.live = None
        self._last = 0.0
        if enabled and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def _fields(self) -> dict[str, str]:
        s = self.driver.stats()
        s["phase_name"] = self.phases[-1]["name"] if self.phases else "starting"
        return status_fields(s, self.driver.n_widths)

    def _table(self):
        from rich.table import Table

        fields = self._fields()
        table = Table(title="slimseg_node live", show_header=True)
        for title in self.COLUMNS.values():
            table.add_column(title, justify="right")
        table.add_row(*(fields[k] for k in self.COLUMNS))
        return table

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
            return
        if time.monotonic() - self._last >= 2.0:
            self._last = time.monotonic()
            f = self._fields()
            print(f"t={f['t']:>5}s {f['phase']:<14} battery={f['battery']:>4} width={f['width']} "
                  f"fps={f['fps']} latency={f['latency']} published/labelled={f['frames']}", flush=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


class CpuLoad:
    """Busy processes that take the node's CPU away (the fps phase's load spike), alike on any machine.

    Where Linux lets it, the node and `busy` busy processes share one core, so the node gets 1/(busy+1) of it
    however many cores there are; elsewhere, more busy processes than cores. `stop` undoes both.
    """

    def __init__(self, node_pid: int, busy: int = 2) -> None:
        self.node_pid = node_pid
        self.BUSY = max(1, int(busy))
        self.saved: set[int] | None = None
        self.procs: list[subprocess.Popen] = []

    def _pin(self, cores: set[int]) -> None:
        for tid in os.listdir(f"/proc/{self.node_pid}/task"):  # every thread: the pid alone is the main one
            try:
                os.sched_setaffinity(int(tid), cores)
            except OSError:  # a thread that just ended
                pass

    def start(self) -> str:
        """Start the load; returns what it is, for the phase's name."""
        busy = [sys.executable, "-c", "while True: pass"]
        if hasattr(os, "sched_setaffinity") and Path(f"/proc/{self.node_pid}/task").is_dir():
            self.saved = os.sched_getaffinity(self.node_pid)
            core = {max(self.saved)}
            self._pin(core)
            self.procs = [subprocess.Popen(busy) for _ in range(self.BUSY)]
            for p in self.procs:
                os.sched_setaffinity(p.pid, core)
            return f"CPU load ({self.BUSY} busy processes on the node's core)"
        n = (os.cpu_count() or 2) + 1
        self.procs = [subprocess.Popen(busy) for _ in range(n)]
        return f"CPU load ({n} busy processes)"

    def stop(self) -> None:
        """End the busy processes and give the node its cores back."""
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []
        if self.saved is not None:
            try:
                self._pin(self.saved)
            except FileNotFoundError:  # the node has exited
                pass
            self.saved = None


def _wait(seconds: float, view: _LiveView, until=None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until()):
        view.tick()
        time.sleep(0.05)


def _check_installed(args: argparse.Namespace) -> None:
    """Everything this run needs is importable, checked before the minutes of export and playback."""
    from slimseg_ros import deps

    needed = ["rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs"]
    if not args.bag:  # the phases draw pictures and a live view
        needed += ["rich", "matplotlib", "PIL", "imageio_ffmpeg"]
    if args.bag or args.record:
        needed += ["rosbags"]
    if not args.manifest:  # the checkpoint is exported first
        needed += ["torch", "safetensors", "onnx"]
    deps.require(needed + deps.backend_modules(args.backend))  # everything missing, in one line
    deps.require_backend(args.backend)  # `auto`: any one backend


def _at(rows: list[dict], t: float) -> dict:
    """The last row at or before t (rows in time order)."""
    before = [r for r in rows if r["t"] <= t]
    return before[-1] if before else rows[0]


def run(args: argparse.Namespace) -> int:
    """Export, montage, start the node, run the phases, then draw the pictures, account and list them."""
    _check_installed(args)
    if args.bag:
        from slimseg_ros import bag_play

        return bag_play.run(args)
    from slimseg_ros.demo_driver import DemoDriver
    from slimseg_ros.node_process import NodeClient

    if args.quick:
        args.battery_s, args.fps_phase_s = min(args.battery_s, 14.0), min(args.fps_phase_s, 14.0)
        args.pause_s = min(args.pause_s, 2.0)
        args.frames = args.frames or 6
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = list(open_frames(args.source, args.data, args.split, args.frames))
    if not frames:
        raise SlimsegError("no frames to play", "check --source/--data")
    hold = args.hold or (SHIPPED_HOLD if args.source is None and args.data is None else 1)
    manifest = resolve_manifest(args, out)
    montage_info, latency = _montage(manifest, frames, out, args.backend, args.threads)
    print("single-frame latency per width: " + ", ".join(f"{w:g}: {ms:.1f} ms" for w, ms in latency.items()))
    widths = sorted(latency)
    policy = _policy_params(len(widths))
    # feasible at full width when the CPU is free, not under the load spike
    target = args.target_fps or round(min(0.9 * args.camera_fps, 0.6 * 1000.0 / latency[widths[-1]]), 1)

    writer = None
    if args.record:  # a new bag (an existing path is refused before anything starts)
        from slimseg_ros.bag import BagWriter
        from slimseg_ros.bag_record import OutputRecorder

        writer = BagWriter(args.record)
    proc = _node_process(manifest, args.backend, args.threads, policy, out)
    client = NodeClient(proc, make_node=lambda context: DemoDriver(
        proc.namespace, [f.rgb for f in frames], args.camera_fps, len(widths), hold=hold, context=context))
    driver = client.node
    if writer is not None:
        OutputRecorder(driver, proc.full_name, writer)
    phases: list[dict] = []

    def enter(key: str, name: str, detail: str = "") -> None:
        phases.append({"t": round(driver.elapsed(), 3), "key": key, "name": name, "detail": detail or name})
        driver.phase = key

    enter("starting", "starting")
    proc.start()
    view = _LiveView(driver, phases, enabled=not args.no_live)
    load: CpuLoad | None = None
    try:
        _wait(120.0, view, until=lambda: driver.rec.received > 0 or proc.poll() is not None)
        if proc.poll() is None and driver.rec.received == 0:
            client.wait_up("active", timeout=10.0)  # a failed autostart: its state and the log's reason
        if proc.poll() is not None or driver.rec.received == 0:
            raise SlimsegError(f"slimseg_node did not produce labels (see {proc.log_path})",
                               "check the manifest and backend")
        enter("battery", "battery drain")
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < args.battery_s:
            driver.battery = max(0.10, 1.0 - 0.9 * elapsed / args.battery_s)
            _wait(0.1, view)
        driver.battery = 0.10
        _wait(1.0, view)
        if args.pause_s > 0:
            enter("paused", "paused (~/enable false)")
            _set_enabled(client, driver, False)
            _wait(args.pause_s, view)
            _set_enabled(client, driver, True)
        rejected = client.set_parameters({"policy": "fps", "target_fps": float(target)})
        if rejected:
            raise SlimsegError(f"slimseg_node rejected the fps phase parameters: {rejected}")
        driver.policy, driver.target_fps = "fps", target
        enter("fps", f"fps target {target:g}")
        third = args.fps_phase_s / 3
        _wait(third, view)
        # Enough busy processes that the widest width's unloaded latency, stretched by sharing one core, lands
        # 30 % over the per-frame budget: the load then forces a step down whatever the model's speed.
        load = CpuLoad(proc.pid, busy=math.ceil(1.3 * (1000.0 / target) / latency[widths[-1]]) - 1)
        enter("load", "CPU load", load.start())
        _wait(third, view)
        load.stop()
        enter("load_off", "load off")
        _wait(third, view)
        enter("stopping", "camera stopped")
        driver.stop_camera()
        _wait(DRAIN_S, view)
    finally:
        view.stop()
        if load is not None:
            load.stop()
        proc.stop()
        client.close()
        if writer is not None:
            writer.close()
    summary = report(driver, frames, phases, policy, target, widths, latency, montage_info, manifest, out,
                     args.camera_fps)
    print()
    print(summary["frames"]["sentence"])
    for s in summary["switches"]:
        battery = "-" if s["battery"] is None else f"{100 * s['battery']:.0f}%"
        print(f"  t={s['t']:5.1f}s  width {s['previous']:g} -> {s['width']:g}  ({s['phase']}, "
              f"battery {battery}): {s['reason']}")
    broken = [k for k, v in summary["claims"].items() if v is False]
    if broken:
        print(f"note: README caption claims that did not hold in this run: {', '.join(broken)}")
    print("outputs:")
    for name in summary["outputs"].values():
        print(f"  {out / name}")
    if writer is not None:
        counts = ", ".join(f"{t} {n}" for t, n in writer.counts.items())
        print(f"  {args.record} (rosbag2 MCAP): {counts}")
    if args.pictures:
        pictures = Path(args.pictures)
        pictures.mkdir(parents=True, exist_ok=True)
        for key in PICTURES:
            shutil.copy2(out / summary["outputs"][key], pictures / summary["outputs"][key])
        print(f"copied {', '.join(summary['outputs'][k] for k in PICTURES)} to {pictures}")
    return 0


def report(driver, frames: list[Frame], phases: list[dict], policy: dict, target: float,
           widths: list[float], latency: dict[float, float], montage_info: dict, manifest: Path,
           out: Path, camera_fps: float) -> dict:
    """Account for every frame, draw the timeline and the animation, check the caption claims, write JSON."""
    from slimseg_ros.demo_animation import Track, render
    from slimseg_ros.demo_report import timeline
    from slimseg_ros.demo_summary import account_frames, check_claims, parse_switches
    from slimseg_ros.manifest import Manifest
    from slimseg_ros.visualize import make_palette

    rec = driver.rec
    samples = rec.samples or [driver.stats()]
    for span in rec.disabled:  # a pause the run did not get to end lasted until the camera stopped
        span[1] = min(span[1], rec.camera_stop or driver.elapsed())
    switches = parse_switches((out / "node.log").read_text(errors="replace"), driver.wall0)
    for s in switches:  # the battery the demo published when the node announced the width, and the phase
        seen = [w for w in rec.widths if (w.previous, w.width) == (s["previous"], s["width"])
                and abs(w.t - s["t"]) < 1.0]
        s["battery"] = seen[0].battery if seen else _at(samples, s["t"])["battery"]
        s["phase"] = _at(phases, s["t"])["key"] if phases else "starting"
    for d in rec.diagnostics:
        d["phase"] = _at(phases, d["t"])["key"]
    account = account_frames(rec.publish_t, rec.label_index, rec.label_t,
                             [w.t for w in rec.widths if w.previous is not None], rec.disabled)
    data = Manifest.load(manifest)
    params = {**policy, "target_fps": target}
    load_phase = [p for p in phases if p["key"] == "load"]
    under_load = [d for d in rec.diagnostics if d["phase"] == "load" and d["policy_p50_ms"] is not None]
    outputs = {k: out / f for k, f in OUTPUTS.items()}
    title = f"slimseg demo: what the width policy saw and decided (target {target:g} fps)"
    timeline_panels = timeline(samples, rec.diagnostics, switches, phases, params, widths, rec.publish_t,
                               account.causes, outputs["timeline"], title=title)
    track = Track(frames=[f.rgb for f in frames], publish_t=rec.publish_t, publish_frame=rec.publish_frame,
                  label_index=rec.label_index, label_t=rec.label_t, labels=rec.label_png, samples=samples,
                  switches=switches, phases=phases)
    animation = render(track, widths, make_palette(data.colors), camera_fps, outputs["video"],
                       outputs["preview"])
    animation.update(mp4=OUTPUTS["video"], gif=OUTPUTS["preview"])
    outputs["stamps"].write_text(json.dumps(animation.pop("stamps")))
    last = rec.diagnostics[-1] if rec.diagnostics else {}
    summary = {
        "model": {"manifest": manifest.name, "widths": widths, "input_size": list(data.input_size),
                  "checkpoint": data.model.get("checkpoint"), "arch": data.model.get("arch")},
        "policy": params,
        "latency_ms_single_frame": {f"{w:g}": v for w, v in latency.items()},
        "phases": phases,
        "switches": switches,
        "frames": {"published": account.published, "labelled": account.labelled,
                   "unlabelled": account.unlabelled, "adds_up": account.adds_up(),
                   "sentence": account.sentence(len(widths))},
        "node_counters": {k: last.get(k) for k in ("frames_received", "frames_processed", "drops_superseded",
                                                   "frames_paused", "drops_invalid", "drops_failed",
                                                   "width_switches")},
        "load": {"width_at_start": _at(samples, load_phase[0]["t"])["width"] if load_phase else None,
                 "max_policy_p50_ms": max((d["policy_p50_ms"] for d in under_load), default=None),
                 "budget_ms": under_load[-1]["policy_budget_ms"] if under_load else None},
        "montage": montage_info,
        "timeline": {"panels": timeline_panels},
        "animation": animation,
        "outputs": dict(OUTPUTS),
    }
    summary["claims"] = check_claims(summary)
    outputs["record"].write_text(json.dumps({
        "samples": samples, "diagnostics": rec.diagnostics, "switches": switches, "phases": phases,
        "policy": params, "widths": widths, "publish_t": rec.publish_t, "causes": account.causes,
        "width_events": [asdict(w) for w in rec.widths], "disabled": rec.disabled,
    }))
    outputs["summary"].write_text(json.dumps(summary, indent=2))
    return summary
