"""TensorRT: the plan-compatibility rule (pure Python, tested everywhere); real builds where TRT imports."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from exported import DATA, camvid_frames, export_test_manifest

from slimseg_ros.backends.trt_compat import BUILD, REBUILD, USE, TrtTarget, decide_plan, mismatch
from slimseg_ros.engines.tensorrt_build import (
    TRT_MISSING,
    calibration_images,
    import_tensorrt,
    plan_intact,
    plan_name,
)
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import FORMAT, Manifest, sha256_file

ORIN = TrtTarget(trt_version="10.3.0", gpu="Orin", compute_capability="8.7")
PLAN = {"file": "w.plan", "precision": "fp16", "trt_version": "10.3.0", "gpu": "Orin",
        "compute_capability": "8.7"}


def test_matching_plan_is_used():
    d = decide_plan([PLAN], ORIN, "fp16", has_onnx=False, width=0.5)
    assert d.action == USE and d.plan is PLAN


@pytest.mark.parametrize(("field", "value", "words"), [
    ("trt_version", "10.1.0", "TensorRT 10.1.0"),
    ("gpu", "NVIDIA H100", "GPU 'NVIDIA H100'"),
    ("compute_capability", "9.0", "compute capability 9.0"),
])
def test_plan_from_elsewhere_is_rebuilt_from_onnx(field, value, words):
    stale = {**PLAN, field: value}
    assert words in mismatch(stale, ORIN)
    d = decide_plan([stale], ORIN, "fp16", has_onnx=True, width=0.5)
    assert d.action == REBUILD and d.plan is stale and words in d.reason


def test_plan_from_elsewhere_without_onnx_is_refused():
    with pytest.raises(SlimsegError, match="width 0.5: fp16 plan w.plan built for TensorRT 9.3.0.*no ONNX"):
        decide_plan([{**PLAN, "trt_version": "9.3.0"}], ORIN, "fp16", has_onnx=False, width=0.5)


def test_missing_or_corrupt_plan_and_other_precision():
    d = decide_plan([PLAN], ORIN, "fp16", has_onnx=True, plan_ok=lambda p: False)
    assert d.action == REBUILD and "missing or corrupt" in d.reason
    d = decide_plan([PLAN], ORIN, "int8", has_onnx=True)
    assert d.action == BUILD and d.plan is None
    with pytest.raises(SlimsegError, match="no int8 plan recorded"):
        decide_plan([PLAN], ORIN, "int8", has_onnx=False)
    # a good plan next to a stale one of the same precision is the one used
    d = decide_plan([{**PLAN, "gpu": "Xavier", "file": "old.plan"}, PLAN], ORIN, "fp16", has_onnx=False)
    assert d.action == USE and d.plan["file"] == "w.plan"


def test_plan_names_and_integrity(tmp_path):
    names = {plan_name(w, p, t) for w in (0.25, 1.0) for p in ("fp16", "int8")
             for t in (ORIN, TrtTarget("10.3.0", "H100", "9.0"))}
    assert len(names) == 8  # never two plans in one file
    onnx = tmp_path / "w.onnx"
    onnx.write_bytes(b"graph")
    plan_file = tmp_path / "w.plan"
    plan_file.write_bytes(b"plan bytes")
    data = {"format": FORMAT, "input": {"height": 8, "width": 8}, "ignore_index": 11,
            "classes": [{"id": 0, "name": "a", "color": [0, 0, 0]}],
            "widths": [{"width": 1.0, "onnx": {"file": "w.onnx", "sha256": sha256_file(onnx)},
                        "engines": [{**PLAN, "sha256": sha256_file(plan_file)}]}]}
    manifest = Manifest(data, tmp_path)
    plan = manifest.entry(1.0)["engines"][0]
    assert plan_intact(manifest, plan)
    plan_file.write_bytes(b"truncated")
    assert not plan_intact(manifest, plan)


def test_calibration_images_are_real_frames_at_input_size():
    if not (DATA / "train").is_dir():
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    images = calibration_images(DATA, (96, 128), count=3)  # the dataset root: label folders must be skipped
    assert len(images) == 3
    assert all(i.shape == (96, 128, 3) and i.dtype == np.uint8 for i in images)
    assert len({i.tobytes() for i in images}) == 3


def test_calibration_folder_without_images(tmp_path):
    with pytest.raises(SlimsegError, match="no calibration images"):
        calibration_images(tmp_path, (96, 128), 4)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_is_a_clear_error():
    with pytest.raises(SlimsegError, match="needs tensorrt and pycuda"):
        import_tensorrt()


# --- real TensorRT: only where it imports -------------------------------------------------------------------
@pytest.fixture(scope="module")
def trt_export(tmp_path_factory):
    pytest.importorskip("tensorrt", reason=TRT_MISSING)
    pytest.importorskip("pycuda.driver", reason=TRT_MISSING)
    return export_test_manifest(tmp_path_factory.mktemp("trt") / "export", height=96, width=128)


def test_tensorrt_backend_matches_onnxruntime(trt_export):
    from slimseg_ros.backends import create_backend

    images, _ = camvid_frames("val", count=2, step=50)
    images = images or [np.random.default_rng(0).integers(0, 255, (360, 480, 3), dtype=np.uint8)]
    trt_backend = create_backend("tensorrt", trt_export)  # builds missing fp16 plans and records them
    ort = create_backend("onnxruntime", trt_export)
    manifest = Manifest.load(trt_export)
    for w in manifest.widths:
        plan = manifest.entry(w)["engines"][0]
        assert plan["precision"] == "fp16" and plan["trt_version"] == trt_backend.target.trt_version
        for image in images:
            a, b = trt_backend.infer(image, w), ort.infer(image, w)
            assert a.shape == image.shape[:2]
            assert (a == b).mean() >= 0.98, f"fp16 width {w}: {(a == b).mean():.4f}"  # fp16 flips near ties
    trt_backend.close()
    ort.close()


def test_tensorrt_stale_plan_is_rebuilt_and_corrupt_plan_without_onnx_disabled(trt_export, tmp_path):
    from slimseg_ros.backends import create_backend

    create_backend("tensorrt", trt_export).close()  # make sure plans exist
    copy = tmp_path / "copy"
    shutil.copytree(trt_export.parent, copy)
    manifest = Manifest.load(copy)
    for e in manifest.entry(0.25)["engines"]:
        e["trt_version"] = "9.0.0"  # pretend it was built elsewhere: must be rebuilt, not deserialised
    manifest.onnx_path(0.5).unlink()
    plan = manifest.resolve(manifest.entry(0.5)["engines"][0]["file"])
    plan.write_bytes(plan.read_bytes()[:100])
    manifest.save()
    backend = create_backend("tensorrt", copy)
    assert 0.25 in backend.widths and 0.5 in backend.disabled and "no ONNX" in backend.disabled[0.5]
    assert Manifest.load(copy).entry(0.25)["engines"][-1]["trt_version"] == backend.target.trt_version
    backend.close()
