"""Manifest: schema validation, round trip, sha256 checks and the writers' helpers (no model needed)."""

from __future__ import annotations

import copy

import pytest
import yaml

from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import FORMAT, Manifest, sha256_file, verify_file


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
    assert again.data == m.data
    assert again.widths == [0.25, 0.5, 1.0]
    assert again.input_size == (96, 128)
    assert again.class_names == ["sky", "road"] and again.colors == [(128, 128, 128), (1, 2, 3)]
    assert again.entry(0.5000000001)["params"] == 500000
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
    m.set_latency(0.25, "onnxruntime-cpu", {"p50_ms": 3.0})
    m.set_latency(0.25, "onnxruntime-cpu", {"p50_ms": 2.5})
    assert m.entry(0.25)["latency"] == {"onnxruntime-cpu": {"p50_ms": 2.5}}
    plan = {"file": "w0.25.fp16.plan", "precision": "fp16", "trt_version": "10.3.0", "gpu": "Orin"}
    m.set_engine(0.25, plan)
    m.set_engine(0.25, {**plan, "file": "new.plan"})  # same precision/version/GPU: replaced
    m.set_engine(0.25, {**plan, "precision": "int8", "file": "int8.plan"})
    assert [e["file"] for e in m.entry(0.25)["engines"]] == ["new.plan", "int8.plan"]
    Manifest.load(m.save(tmp_path / "manifest.yaml"))  # still valid after the writers' edits
