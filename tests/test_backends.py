"""Backends: ONNX Runtime and PyTorch agree on real frames, resize to/from input size, survive bad files.

The ONNX Runtime tests are runtime tests: they run without torch on an export made elsewhere
(SLIMSEG_TEST_EXPORT, see tests/exported.py); the torch comparisons skip there.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml
from exported import DATA, camvid_frames, runtime_export

from slimseg_ros.backends import WidthUnavailable, auto_candidates, create_backend
from slimseg_ros.backends.base import to_frame_size, to_input_size
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest, sha256_file

H, W = 96, 128
TORCH_MISSING = "the torch backend needs PyTorch (pip install .[train])"


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    return runtime_export(tmp_path_factory.mktemp("backends") / "export", height=H, width=W)


@pytest.fixture(scope="module")
def ort(manifest_path):
    backend = create_backend("onnxruntime", manifest_path, threads=1)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def frames():
    images, _ = camvid_frames("val", count=2, step=50)  # full 360x480 frames: exercises the resize path
    if not images:
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    return images


@pytest.fixture()
def export_copy(tmp_path, manifest_path):
    """A private copy of the export folder that a test may damage."""
    dst = tmp_path / "copy"
    shutil.copytree(manifest_path.parent, dst)
    return dst


def test_onnxruntime_and_torch_agree(manifest_path, ort, frames):
    pytest.importorskip("torch", reason=TORCH_MISSING)
    tb = create_backend("torch", manifest_path, threads=2)
    assert tb.name == "torch-cpu" and tb.widths == ort.widths == [0.25, 0.5, 0.75, 1.0]
    for w in ort.widths:
        for image in frames:
            a, b = ort.infer(image, w), tb.infer(image, w)
            assert a.shape == b.shape == image.shape[:2] and a.dtype == b.dtype == np.uint8
            assert (a == b).mean() >= 0.999, f"width {w}: {(a == b).mean():.5f}"
            assert len(np.unique(a)) >= 2, "constant label map: comparison would be vacuous"
    tb.close()


def test_resize_to_and_from_input_size(ort, frames):
    image = frames[0]
    assert image.shape[:2] != (H, W)
    labels = ort.infer(image, 0.5)
    small = ort.infer(cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR), 0.5)
    assert labels.shape == image.shape[:2]
    assert np.array_equal(labels, cv2.resize(small, (image.shape[1], image.shape[0]),
                                             interpolation=cv2.INTER_NEAREST))
    # the helpers themselves: identity at the input size, nearest (no blended ids) on the way back
    same = np.ascontiguousarray(image[:H, :W])
    assert to_input_size(same, (H, W)) is same
    ids = np.array([[0, 9], [3, 5]], np.uint8)
    assert set(np.unique(to_frame_size(ids, (7, 9)))) == {0, 9, 3, 5}


def test_bad_images_are_clear_errors(ort):
    with pytest.raises(SlimsegError, match="HxWx3"):
        ort.infer(np.zeros((H, W), np.uint8), 0.25)
    with pytest.raises(SlimsegError, match="uint8"):
        ort.infer(np.zeros((H, W, 3), np.float32), 0.25)
    with pytest.raises(SlimsegError, match="numpy array"):
        ort.infer([[1, 2, 3]], 0.25)
    with pytest.raises(WidthUnavailable, match="not in the manifest"):
        ort.infer(np.zeros((H, W, 3), np.uint8), 0.3)


def test_corrupt_onnx_disables_only_its_width(export_copy):
    manifest = Manifest.load(export_copy)
    target = manifest.onnx_path(0.5)
    data = bytearray(target.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    target.write_bytes(bytes(data))
    backend = create_backend("onnxruntime", export_copy / "manifest.yaml", threads=1)
    assert backend.widths == [0.25, 0.75, 1.0]
    assert "sha256 mismatch" in backend.disabled[0.5]
    image = np.full((H, W, 3), 90, np.uint8)
    assert backend.infer(image, 0.75).shape == (H, W)
    with pytest.raises(WidthUnavailable, match="disabled.*sha256"):
        backend.infer(image, 0.5)
    backend.close()


def test_unloadable_or_missing_file_disables_its_width(export_copy):
    manifest = Manifest.load(export_copy)
    garbage = manifest.onnx_path(0.25)
    garbage.write_bytes(b"not an onnx model")  # sha256 updated below, so only the load itself can fail
    data = yaml.safe_load((export_copy / "manifest.yaml").read_text())
    next(e for e in data["widths"] if e["width"] == 0.25)["onnx"]["sha256"] = sha256_file(garbage)
    (export_copy / "manifest.yaml").write_text(yaml.safe_dump(data))
    manifest.onnx_path(1.0).unlink()
    backend = create_backend("onnxruntime", export_copy, threads=1)
    assert backend.widths == [0.5, 0.75]
    assert "could not load" in backend.disabled[0.25]
    assert "not found" in backend.disabled[1.0]
    backend.close()


def test_read_only_model_folder_runs_and_is_left_as_it_was(export_copy):
    """A robot's model folder may be read-only (chmod -w, a read-only mount): the runtime only reads it."""
    for path in [export_copy, *export_copy.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = {p: p.read_bytes() for p in export_copy.rglob("*") if p.is_file()}
    try:
        with create_backend("onnxruntime", export_copy, threads=1) as backend:
            assert backend.widths == [0.25, 0.5, 0.75, 1.0]
            assert backend.infer(np.full((H, W, 3), 90, np.uint8), 0.5).shape == (H, W)
        assert {p: p.read_bytes() for p in export_copy.rglob("*") if p.is_file()} == before
    finally:
        for path in [export_copy, *export_copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_no_usable_width_is_an_error(export_copy):
    for f in export_copy.glob("*.onnx"):
        f.unlink()
    with pytest.raises(SlimsegError, match="no usable width"):
        create_backend("onnxruntime", export_copy, threads=1)


def test_auto_and_unknown_names(manifest_path):
    candidates = auto_candidates()
    assert candidates[-1] == "onnxruntime-cpu"  # always the last resort here
    backend = create_backend("auto", manifest_path)
    assert backend.name == candidates[0]
    backend.close()
    with pytest.raises(SlimsegError, match="unknown backend"):
        create_backend("openvino", manifest_path)
    with pytest.raises(SlimsegError, match="not available"):
        create_backend("onnxruntime-tensorrt", manifest_path)


def test_backend_names_are_one_table(manifest_path):
    """The node's choices, bench's choices and create_backend all come from backends/registry.py."""
    import argparse
    import importlib.util

    from slimseg_ros import params
    from slimseg_ros.backends import registry
    from slimseg_ros.backends.base import Backend
    from slimseg_ros.engines import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    option = next(a for a in parser._actions if a.dest == "backend")
    assert tuple(option.choices) == registry.BACKEND_NAMES == ("auto", *registry.KINDS)
    assert params.BACKENDS == registry.NODE_BACKENDS and set(params.BACKENDS) <= set(registry.BACKEND_NAMES)
    for name, kind in registry.KINDS.items():  # every name leads to a Backend class (found lazily, by name)
        if all(importlib.util.find_spec(m) for m in kind.needs):
            assert issubclass(getattr(importlib.import_module(kind.module), kind.cls), Backend), name
    with create_backend("onnxruntime", manifest_path, threads=1) as backend:  # a family name: default device
        assert backend.name == "onnxruntime-cpu"


def test_closed_backend_refuses(manifest_path):
    backend = create_backend("onnxruntime", manifest_path, threads=1)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(SlimsegError, match="closed"):
        backend.infer(np.zeros((H, W, 3), np.uint8), 0.25)


def test_runtime_backend_imports_no_torch(manifest_path):
    code = (
        "import sys, numpy as np\n"
        "from slimseg_ros.backends import create_backend\n"
        f"b = create_backend('onnxruntime', r'{manifest_path}', threads=1)\n"
        f"assert b.infer(np.zeros(({H}, {W}, 3), np.uint8), 0.25).shape == ({H}, {W})\n"
        "assert 'torch' not in sys.modules, 'runtime path imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_bench_records_latency_and_markdown(manifest_path, tmp_path, frames):
    """Bench bookkeeping (not its speed): every width timed, recorded, tabulated with the command."""
    import argparse

    from slimseg_ros.engines import bench

    copy = tmp_path / "bench"
    shutil.copytree(manifest_path.parent, copy)
    md = tmp_path / "bench.md"
    md.write_text("# Benchmarks\n\nhand-written notes stay\n")
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--manifest", str(copy / "manifest.yaml"), "--backend", "onnxruntime-cpu",
                              "--threads", "1", "--frames", "3", "--warmup", "1", "--data", str(DATA),
                              "--update-manifest", "--markdown", str(md)])
    assert bench.run(args) == 0
    assert bench.run(args) == 0  # a second run replaces its section instead of appending another
    manifest = Manifest.load(copy)
    for w in manifest.widths:
        rec = manifest.entry(w).latency["onnxruntime-cpu"]
        assert rec.frames == 3 and 0 < rec.p50_ms <= rec.p95_ms and "cores" in rec.machine
    text = md.read_text()
    assert "hand-written notes stay" in text and text.count("<!-- bench:onnxruntime-cpu:128x96 -->") == 1
    assert text.count("| 0.25 |") == 1 and "Command: `slimseg bench" in text



def test_tensorrt_device_strings():
    from slimseg_ros.backends.tensorrt.cuda import gpu_index as _gpu_index

    assert [_gpu_index(d) for d in (None, "", 0, "2", "cuda", "cuda:1")] == [0, 0, 0, 2, 0, 1]
    with pytest.raises(SlimsegError, match="not a GPU index"):
        _gpu_index("cpu")


def test_postprocess_breakdown_times_three_variants(manifest_path):
    """The GPU breakdown's logic, run on CPU with one iteration (its figures only mean something on a GPU)."""
    pytest.importorskip("torch", reason=TORCH_MISSING)
    from slimseg_ros.engines.bench import breakdown_section, postprocess_breakdown

    rows = postprocess_breakdown(Manifest.load(manifest_path), device="cpu", fp16=False, iters=1, warmup=0)
    assert sorted(rows) == [0.25, 0.5, 0.75, 1.0]
    for row in rows.values():
        assert min(row["network_ms"], row["fast_ms"], row["exact_ms"]) > 0
        assert row["fast_share"] == pytest.approx(row["fast_ms"] / row["network_ms"] - 1)
    assert "| 0.25 |" in breakdown_section("t", "cmd", "machine", rows)


def test_spin_and_threads_reach_the_session_and_keep_the_labels(manifest_path, ort, frames):
    """spin is onnxruntime's session.intra_op.allow_spinning; no setting changes a label."""
    from slimseg_ros.backends.onnxruntime_backend import SPIN_KEY

    for threads, spin, entry in ((2, False, "0"), (2, True, "1"), (0, None, None)):
        backend = create_backend("onnxruntime", manifest_path, threads=threads, spin=spin)
        try:
            if entry is None:  # onnxruntime's own default: no entry set (reading an unset key raises)
                with pytest.raises(RuntimeError, match="does not have configuration"):
                    backend._options.get_session_config_entry(SPIN_KEY)
            else:
                assert backend._options.get_session_config_entry(SPIN_KEY) == entry
            for w in backend.widths:
                assert np.array_equal(backend.infer(frames[0], w), ort.infer(frames[0], w))
        finally:
            backend.close()


def test_auto_hands_threads_and_spin_to_onnxruntime_only(manifest_path):
    backend = create_backend("auto", manifest_path, threads=1, spin=False)
    try:
        assert backend.name == "onnxruntime-cpu" and (backend.threads, backend.spin) == (1, False)
    finally:
        backend.close()


def test_warm_up_runs_every_usable_width_once(export_copy):
    (export_copy / "slimseg_w0.50.onnx").write_bytes(b"broken")
    backend = create_backend("onnxruntime", export_copy, threads=1)
    try:
        calls = []
        run = backend._run
        backend._run = lambda image, width: calls.append((image.shape, width)) or run(image, width)
        times = backend.warm_up()
        assert sorted(times) == backend.widths == [0.25, 0.75, 1.0] and all(t > 0 for t in times.values())
        assert calls == [((H, W, 3), w) for w in backend.widths]
    finally:
        backend.close()


def test_bench_threads_auto_compares_settings_per_width(manifest_path, tmp_path, capsys):
    """--threads auto: every width under every setting in one interleaved run, a best setting per width."""
    import argparse

    from slimseg_ros.engines import bench

    assert bench.thread_settings(1) == [(1, False)]
    assert bench.thread_settings(2) == [(1, False), (2, True), (2, False)]
    assert [t for t, _ in bench.thread_settings(6)] == [1, 2, 2, 4, 4, 6, 6]
    rows = {(0.5, 1, False): {"p50_ms": 10.0, "cpu_ms": 10.0},
            (0.5, 2, True): {"p50_ms": 9.8, "cpu_ms": 19.0},
            (1.0, 1, False): {"p50_ms": 20.0, "cpu_ms": 20.0},
            (1.0, 2, False): {"p50_ms": 12.0, "cpu_ms": 22.0}}
    assert bench.best_settings(rows) == {0.5: (1, False), 1.0: (2, False)}  # within 5 %: the cheaper one
    tie = {(0.25, 1, False): {"p50_ms": 2.74, "cpu_ms": 2.5},
           (0.25, 2, True): {"p50_ms": 2.65, "cpu_ms": 2.5}}
    assert bench.best_settings(tie) == {0.25: (1, False)}  # same speed and CPU: fewer threads
    md = tmp_path / "bench.md"
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--manifest", str(manifest_path), "--threads", "auto", "--frames", "2",
                              "--warmup", "1", "--markdown", str(md)])
    assert bench.run(args) == 0
    text = md.read_text()
    assert "<!-- bench:threads:onnxruntime-cpu:128x96 -->" in text
    cores = len(bench.thread_settings(len(__import__("os").sched_getaffinity(0))))
    for w in ("0.25", "0.5", "0.75", "1"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {w} |"))
        assert row.count(" / ") == cores and row.rstrip().endswith("|")
    assert "best threads=" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--manifest", "m", "--threads", "many"])


def test_bench_first_frame_compares_fresh_backends_without_and_with_warm_up(manifest_path, tmp_path):
    import argparse

    from slimseg_ros.engines import bench

    md = tmp_path / "bench.md"
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--manifest", str(manifest_path), "--threads", "1", "--first-frame",
                              "--markdown", str(md)])
    assert bench.run(args) == 0
    rows = [line for line in md.read_text().splitlines() if line.startswith(("| 0.", "| 1 |"))]
    assert len(rows) == 4
    for row in rows:
        cold, warm = (float(v) for v in row.strip("|").split("|")[1:3])
        assert cold > 0 and warm > 0
