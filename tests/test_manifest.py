"""Manifest: schema validation, round trip, sha256 checks and the writers' helpers (no model needed)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import (
    FORMAT,
    WIDTH_TOL,
    FileRef,
    LatencyRecord,
    Manifest,
    PlanRecord,
    match_width,
    same_width,
    sha256_file,
    verify_file,
)


def _data(tmp_path) -> dict:
    files = {}
    for w in (0.5, 0.25, 1.0):  # deliberately unsorted: `widths` must come back ascending
        f = tmp_path / f"w{w}.onnx"
        f.write_bytes(f"model {w}".encode())
        files[w] = {"file": f.name, "sha256": sha256_file(f)}
    return {
        "format": FORMAT,
        "model": {"arch": "resnet18", "num_classes": 2},
        "input": {"height": 96, "width": 128, "encoding": "rgb8", "layout": "NHWC", "dtype": "uint8"},
        "classes": [{"id": 0, "name": "sky", "color": [128, 128, 128]},
                    {"id": 1, "name": "road", "color": [1, 2, 3]}],
        "ignore_index": 11,
        "widths": [{"width": w, "onnx": ref, "flops": 1e9 * w, "params": int(1e6 * w)}
                   for w, ref in files.items()],
    }


def test_round_trip(tmp_path):
    m = Manifest(_data(tmp_path), tmp_path)
    path = m.save(tmp_path)
    assert path.name == "manifest.yaml" and not list(tmp_path.glob("*.tmp"))
    again = Manifest.load(tmp_path)  # a folder means its manifest.yaml
    assert again.to_dict() == m.to_dict() == _data(tmp_path)  # nothing lost or reordered on a round trip
    assert again.widths == [0.25, 0.5, 1.0]
    assert again.input_size == (96, 128)
    assert again.class_names == ["sky", "road"] and again.colors == [(128, 128, 128), (1, 2, 3)]
    assert again.entry(0.5000000001).params == 500000
    assert again.resolve("w0.5.onnx") == tmp_path / "w0.5.onnx"
    assert again.postprocess == "fast" and again.normalization is None


def test_sha256_checks(tmp_path):
    m = Manifest(_data(tmp_path), tmp_path)
    assert m.verify(0.25) == tmp_path / "w0.25.onnx"
    (tmp_path / "w0.5.onnx").write_bytes(b"tampered")
    with pytest.raises(SlimsegError, match="sha256 mismatch"):
        m.verify(0.5)
    (tmp_path / "w1.0.onnx").unlink()
    with pytest.raises(SlimsegError, match="file not found"):
        m.verify(1.0)
    verify_file(tmp_path / "w0.25.onnx", None)  # no recorded hash: existence only


def test_unknown_width_names_known_ones(tmp_path):
    m = Manifest(_data(tmp_path), tmp_path)
    with pytest.raises(SlimsegError, match="0.25, 0.5, 1"):
        m.entry(0.3)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other/9"), "format"),
        (lambda d: d.pop("input"), "input"),
        (lambda d: d["input"].update(height=0), "input.height"),
        (lambda d: d["input"].update(layout="NCHW"), "input.layout"),
        (lambda d: d["classes"][1].update(id=5), r"classes\[1\]"),
        (lambda d: d["classes"][0].update(color=[1, 2]), "color"),
        (lambda d: d.update(widths=[]), "non-empty"),
        (lambda d: d["widths"][0].update(width=1.5), r"width in \(0, 1\]"),
        (lambda d: d["widths"].append(copy.deepcopy(d["widths"][0])), "listed twice"),
        (lambda d: d["widths"][0].pop("onnx"), "neither"),
        (lambda d: d["widths"][0]["onnx"].update(sha256="abc"), "sha256"),
        (lambda d: d.update(postprocess="bicubic"), "postprocess"),
        (lambda d: d["widths"][0].update(precision="fp8"), "precision must be one of"),
        (lambda d: d["widths"][0].update(precision_reason=3), "precision_reason"),
        (lambda d: d["widths"][0].update(flops="many"), "flops must be a number"),
        (lambda d: d["widths"][0].update(latency={"cpu": {"p95_ms": 2}}), "numeric p50_ms"),
        (lambda d: d["widths"][0].update(engines=[{"file": "p.plan", "workspace_mb": "9"}]), "workspace_mb"),
        (lambda d: d.update(model=["resnet"]), "'model' must be a mapping"),
        (lambda d: d.update(normalization={"mean": [1, 2]}), "normalization"),
    ],
)
def test_validation_errors(tmp_path, edit, message):
    data = _data(tmp_path)
    edit(data)
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SlimsegError, match=message):
        Manifest.load(tmp_path / "manifest.yaml")


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(SlimsegError, match="manifest not found"):
        Manifest.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("format: [unclosed")
    with pytest.raises(SlimsegError, match="not valid YAML"):
        Manifest.load(tmp_path / "bad.yaml")


def test_latency_and_engine_records(tmp_path):
    m = Manifest(_data(tmp_path), tmp_path)
    first = m.entry(0.25)
    m.record_latency(0.25, "onnxruntime-cpu", LatencyRecord(3.0))
    m.record_latency(0.25, "onnxruntime-cpu", LatencyRecord(2.5, frames=5))
    assert m.entry(0.25).latency == {"onnxruntime-cpu": LatencyRecord(2.5, frames=5)}
    assert m.latency_ms(0.25, "onnxruntime-cpu") == 2.5 and m.latency_ms(0.25, "tensorrt") is None
    assert first.latency == {}  # entries are frozen: a writer replaces them, readers never see a change
    plan = PlanRecord("w0.25.fp16.plan", precision="fp16", trt_version="10.3.0", gpu="Orin")
    m.record_plan(0.25, plan)
    m.record_plan(0.25, dataclasses.replace(plan, file="new.plan"))  # same precision/version/GPU: replaced
    m.record_plan(0.25, PlanRecord("int8.plan", precision="int8", trt_version="10.3.0", gpu="Orin"))
    assert [e.file for e in m.entry(0.25).engines] == ["new.plan", "int8.plan"]
    again = Manifest.load(m.save(tmp_path / "manifest.yaml"))  # still valid after the writers' edits
    assert again.entry(0.25) == m.entry(0.25)


def test_width_precision_fields_round_trip(tmp_path):
    """`export --int8 auto` writes precision and its reason per width; both survive load and save."""
    data = _data(tmp_path)
    data["widths"][0].update(precision="int8", precision_reason="int8 within 0.3 mIoU of fp32")
    data["widths"][1].update(precision="fp32")
    data["widths"][2]["latency"] = {"cpu": {"p50_ms": 2.0, "gpu_clock_mhz": 900}}  # newer keys survive
    data["widths"][2]["engines"] = [{"file": "p.plan", "sha256": None, "dla_core": 1}]
    m = Manifest(data, tmp_path)
    assert m.entry(0.5).precision == "int8" and m.entry(0.5).precision_reason.startswith("int8 within")
    assert m.entry(0.25).precision == "fp32" and m.entry(0.25).precision_reason is None
    assert m.entry(1.0).precision is None and m.precision(1.0) == "fp32"
    assert Manifest.load(m.save(tmp_path)).to_dict() == data
    int8 = FileRef("w1.0.int8.onnx", "0" * 64)
    m.record_precision(1.0, "int8", "3 % faster, 99.6 % agreement", onnx=int8)  # export --int8 auto's writer
    again = Manifest.load(m.save(tmp_path))
    assert again.precision(1.0) == "int8" and again.entry(1.0).onnx == int8
    assert again.entry(1.0).precision_reason == "3 % faster, 99.6 % agreement"
    with pytest.raises(SlimsegError, match="precision 'fp16' is not one of"):
        m.record_precision(1.0, "fp16", "no")


def test_one_width_equality():
    assert same_width(0.25, 0.25 + WIDTH_TOL / 2) and not same_width(0.25, 0.25 + 2 * WIDTH_TOL)
    assert match_width(0.7500000001, [0.25, 0.75]) == 0.75 and match_width(0.3, [0.25, 0.75]) is None


def test_binary_manifest_is_a_clean_error(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_bytes(bytes(range(256)) * 8)  # not UTF-8: UnicodeDecodeError inside the loader
    with pytest.raises(SlimsegError, match=f"manifest {path} is unreadable: UnicodeDecodeError"):
        Manifest.load(path)


def test_deeply_nested_manifest_is_a_clean_error(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in the YAML composer
    with pytest.raises(SlimsegError, match=f"manifest {path} is unreadable: RecursionError"):
        Manifest.load(path)


@pytest.mark.parametrize("value", [[1, 2], "text", 7, None])
def test_wrong_top_level_types_name_the_file(tmp_path, value):
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(value))
    with pytest.raises(SlimsegError, match=f"invalid manifest {path}: top level must be a mapping"):
        Manifest.load(path)


@pytest.mark.parametrize("ref", ["/etc/passwd", "../outside.onnx", "sub/../../outside.onnx"])
def test_model_files_must_stay_in_the_manifest_folder(tmp_path, ref):
    data = _data(tmp_path)
    data["widths"][0]["onnx"] = {"file": ref, "sha256": None}
    m = Manifest(data, tmp_path)
    with pytest.raises(SlimsegError, match="points outside the manifest's folder"):
        m.verify(0.5)
    assert m.verify(0.25) == tmp_path / "w0.25.onnx"  # the other widths are unaffected
    assert m.file_path("sub/./w.onnx") == tmp_path / "sub/w.onnx"
