"""Run the whole idea end to end: the real node switches width as a battery drains, then under a load spike.

Exports the committed checkpoint to ONNX (once, cached), starts `slimseg_node` exactly as launch would
(entry point + --ros-args --params-file), plays street frames to it as a camera over DDS, drains a simulated
battery from 100% to 10% (policy `battery`), then sets policy `fps` with a frame-rate target and loads the CPU
to show the closed loop stepping down and back up. Writes a montage of every width, a timeline plot, an
animated overlay GIF and JSON records to --out.

examples:
  slimseg demo                                  # shipped CamVid frames, committed model, ~2 minutes
  slimseg demo --data ../shared/data/camvid     # the whole CamVid val sequence as the camera
  slimseg demo --source drive.mp4 --out my_demo # any video file or image folder
  slimseg demo --quick                          # short phases (what the tests run)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from slimseg_ros.errors import SlimsegError
from slimseg_ros.frames import Frame, open_frames

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CKPT = REPO_ROOT / "models" / "slimseg_camvid_r18"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `slimseg demo`."""
    src = parser.add_argument_group("input")
    src.add_argument("--data", help="CamVid-layout dataset folder: plays its --split as the camera")
    src.add_argument("--split", default="val", help="split of --data to play (default val)")
    src.add_argument("--source", help="an image folder or video file to play instead")
    src.add_argument("--frames", type=int, default=None, help="play at most this many distinct frames")
    model = parser.add_argument_group("model")
    model.add_argument("--ckpt", default=str(DEFAULT_CKPT),
                       help="checkpoint to export (default: the committed one)")
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
    run.add_argument("--camera-fps", type=float, default=15.0, help="simulated camera rate (CamVid: 15)")
    run.add_argument("--battery-s", type=float, default=40.0, help="seconds to drain the battery 100%%->10%%")
    run.add_argument("--fps-phase-s", type=float, default=45.0, help="seconds of the fps-target phase")
    run.add_argument("--target-fps", type=float, default=None,
                     help="fps target (default: from measured latency)")
    run.add_argument("--quick", action="store_true", help="short phases and few frames (for tests)")
    run.add_argument("--no-live", action="store_true", help="plain log lines instead of the live view")


def _resolve_manifest(args: argparse.Namespace, out: Path) -> Path:
    """An existing manifest, or the checkpoint exported once into out/model (re-exported if it changed)."""
    if args.manifest:
        return Path(args.manifest)
    from slimseg_ros.engines.export import export_model
    from slimseg_ros.manifest import sha256_file
    from slimseg_ros.training.checkpoint import load_checkpoint

    ckpt = Path(args.ckpt)
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


def _montage(manifest_path: Path, frame: Frame, out: Path, backend_name: str,
             threads: int) -> dict[float, float]:
    """Every width on one frame, captioned; returns measured latency (ms) per width for the fps phase."""
    from slimseg_ros.backends import create_backend
    from slimseg_ros.demo_report import WidthResult, miou, montage
    from slimseg_ros.manifest import Manifest
    from slimseg_ros.visualize import make_palette

    manifest = Manifest.load(manifest_path)
    options = {"threads": threads} if backend_name.startswith("onnxruntime") and threads > 0 else {}
    backend = create_backend(backend_name, manifest, **options)
    try:
        results = []
        latency = {}
        for width in backend.widths:
            backend.infer(frame.rgb, width)  # warm-up
            times = []
            for _ in range(5):
                t = time.perf_counter()
                labels = backend.infer(frame.rgb, width)
                times.append(1e3 * (time.perf_counter() - t))
            latency[width] = float(np.median(times))
            score = None
            if frame.label is not None:
                score = miou(labels, frame.label, manifest.num_classes, manifest.ignore_index)
            flops = manifest.entry(width).get("flops")
            results.append(WidthResult(width, labels, score, flops / 1e9 if flops else None, latency[width]))
        montage(frame.rgb, results, make_palette(manifest.colors), out / "montage.png")
        for width, ms in latency.items():  # the node's fps policy starts from these instead of FLOPs
            manifest.set_latency(width, backend.name, {"p50_ms": ms, "frames": 5, "source": "slimseg demo"})
        try:
            manifest.save()
        except OSError as exc:  # a read-only export still runs; the node then falls back to FLOPs
            print(f"note: could not record latencies in {manifest_path}: {exc}")
    finally:
        backend.close()
    return latency


def _node_command() -> list[str]:
    """The installed console entry (as launch runs it), or the module when running from a bare checkout."""
    entry = Path(sys.executable).with_name("slimseg_node")
    return [str(entry)] if entry.is_file() else [sys.executable, "-m", "slimseg_ros.node"]


def _start_node(manifest: Path, backend: str, threads: int, ns: str, out: Path,
                env: dict) -> subprocess.Popen:
    params = {"/**/slimseg_node": {"ros__parameters": {  # matches the node in any namespace
        "manifest": str(manifest.resolve()), "backend": backend, "policy": "battery", "width": 1.0,
        "threads": threads,
    }}}
    params_file = out / "demo_params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    log = open(out / "node.log", "w")  # noqa: SIM115 - closed with the process in run()
    cmd = _node_command() + ["--ros-args", "--params-file", str(params_file), "-r", f"__ns:={ns}"]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


class _LiveView:
    """Rich live table on a terminal, one plain line every 2 s elsewhere (CI logs stay readable)."""

    def __init__(self, driver, enabled: bool) -> None:
        from rich.console import Console

        self.driver = driver
        self.console = Console()
        self.live = None
        self._last = 0.0
        if enabled and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def _table(self):
        from rich.table import Table

        s = self.driver.stats()
        table = Table(title="slimseg_node live", show_header=True)
        for col in ("t [s]", "phase", "battery", "width", "fps", "target", "latency ms", "frames in/out"):
            table.add_column(col, justify="right")
        battery = "unknown" if s["battery"] is None else f"{100 * s['battery']:.0f}%"
        table.add_row(f"{s['t']:.1f}", s["phase"], battery, f"{s['width'] or 0:g}", f"{s['fps']:.1f}",
                      f"{s['target_fps'] or '-'}", f"{s['latency_ms']:.1f}",
                      f"{s['published']}/{s['received']}")
        return table

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
            return
        if time.monotonic() - self._last >= 2.0:
            self._last = time.monotonic()
            s = self.driver.stats()
            battery = "unknown" if s["battery"] is None else f"{100 * s['battery']:.0f}%"
            print(f"t={s['t']:5.1f}s phase={s['phase']:<8} battery={battery:>4} width={s['width']} "
                  f"fps={s['fps']:.1f} latency={s['latency_ms']:.0f}ms "
                  f"in/out={s['published']}/{s['received']}",
                  flush=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def _cpu_load(n: int) -> list[subprocess.Popen]:
    """Busy processes that compete with the node for the CPU (the 'extra load' of the fps phase)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _wait(seconds: float, view: _LiveView, until=None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until()):
        view.tick()
        time.sleep(0.05)


def _check_installed(args: argparse.Namespace) -> None:
    """Everything this run needs is importable, checked before the minutes of export and playback."""
    from slimseg_ros import deps

    needed = ["rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "rich", "matplotlib", "PIL"]
    if not args.manifest:  # the checkpoint is exported first
        needed += ["torch", "safetensors", "onnx"]
    deps.require(needed + deps.backend_modules(args.backend))  # everything missing, in one line
    deps.require_backend(args.backend)  # `auto`: any one backend


def run(args: argparse.Namespace) -> int:
    """Export, montage, start the node, run both phases, then draw the pictures and list them."""
    _check_installed(args)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from slimseg_ros.demo_driver import DemoDriver
    from slimseg_ros.demo_report import animation, timeline

    if args.quick:
        args.battery_s, args.fps_phase_s = min(args.battery_s, 14.0), min(args.fps_phase_s, 14.0)
        args.frames = args.frames or 6
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = list(open_frames(args.source, args.data, args.split, args.frames))
    if not frames:
        raise SlimsegError("no frames to play", "check --source/--data")
    manifest = _resolve_manifest(args, out)
    labelled = [f for f in frames if f.label is not None]
    shown = labelled[len(labelled) // 2] if labelled else frames[len(frames) // 2]
    latency = _montage(manifest, shown, out, args.backend, args.threads)
    print("single-frame latency per width: " + ", ".join(f"{w:g}: {ms:.1f} ms" for w, ms in latency.items()))
    widest = max(latency)
    # feasible at full width when the CPU is free, not under the load spike
    target = args.target_fps or round(min(0.9 * args.camera_fps, 0.6 * 1000.0 / latency[widest]), 1)

    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    env.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS")})
    ns = f"/slimseg_demo_{os.getpid()}"
    node = _start_node(manifest, args.backend, args.threads, ns, out, env)
    rclpy.init()
    driver = DemoDriver(ns, [f.rgb for f in frames], args.camera_fps)
    executor = SingleThreadedExecutor()
    executor.add_node(driver)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    view = _LiveView(driver, enabled=not args.no_live)
    load: list[subprocess.Popen] = []
    phases: list[tuple[float, str]] = []
    try:
        _wait(90.0, view, until=lambda: driver.rec.received > 0 or node.poll() is not None)
        if node.poll() is not None or driver.rec.received == 0:
            raise SlimsegError(f"slimseg_node did not produce labels (see {out / 'node.log'})",
                               "check the manifest and backend")
        phases.append((driver.elapsed(), "battery drain"))
        driver.phase = "battery"
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < args.battery_s:
            driver.battery = max(0.10, 1.0 - 0.9 * elapsed / args.battery_s)
            _wait(0.1, view)
        driver.battery = 0.10
        _wait(1.0, view)
        rejected = driver.set_node_parameters(policy="fps", target_fps=float(target))
        if rejected:
            raise SlimsegError(f"slimseg_node rejected the fps phase parameters: {rejected}")
        driver.target_fps = target
        phases.append((driver.elapsed(), f"fps target {target:g}"))
        driver.phase = "fps"
        third = args.fps_phase_s / 3
        _wait(third, view)
        phases.append((driver.elapsed(), "CPU load"))
        driver.phase = "fps+load"
        load = _cpu_load((os.cpu_count() or 2) + 1)  # more busy processes than cores
        _wait(third, view)
        for p in load:
            p.kill()
        load = []
        phases.append((driver.elapsed(), "load off"))
        driver.phase = "fps"
        _wait(third, view)
    finally:
        view.stop()
        for p in load:
            p.kill()
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
        executor.shutdown()
        driver.destroy_node()
        rclpy.try_shutdown()

    rec = driver.rec
    outputs = {
        "montage": out / "montage.png",
        "timeline": timeline(rec.samples, out / "timeline.png", phases),
    }
    if rec.overlays:
        outputs["animation"] = animation(rec.overlays, out / "overlays.gif", fps=args.camera_fps / 2)
    (out / "timeline.json").write_text(json.dumps(rec.samples))
    summary = {
        "manifest": str(manifest), "frames_published": rec.published, "labels_received": rec.received,
        "target_fps": target, "latency_ms_single_frame": {str(k): v for k, v in latency.items()},
        "phases": [{"t": t, "name": n} for t, n in phases],
        "switches": [asdict(s) for s in rec.switches],
        "outputs": {k: str(v) for k, v in outputs.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nframes published {rec.published}, label maps received {rec.received}")
    for s in rec.switches:
        battery = "-" if s.battery is None else f"{100 * s.battery:.0f}%"
        print(f"  t={s.t:5.1f}s  width {s.previous} -> {s.width}  (phase {s.phase}, battery {battery})")
    print("outputs:")
    for path in [*outputs.values(), out / "summary.json", out / "timeline.json", out / "node.log"]:
        print(f"  {path}")
    return 0
