"""INT8 per width (engines/quantize.py): the QDQ graphs each scheme writes, the decision rule, the manifest.

The speed and accuracy figures themselves are measured by `slimseg export --int8 auto` on the shipped model
and recorded in docs/bench.md; here a small export checks what gets written and why.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from exported import DATA, export_test_manifest

onnx = pytest.importorskip("onnx", reason="needs onnx, not in the runtime install (pip install .[export])")
pytest.importorskip("torch", reason="the test export needs PyTorch (pip install .[train])")

from slimseg_ros.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from slimseg_ros.engines import quantize as Q  # noqa: E402
from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.manifest import FileRef, Manifest  # noqa: E402

H, W = 96, 128


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    if not (DATA / "train").is_dir():
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    return export_test_manifest(tmp_path_factory.mktemp("quantize") / "export", height=H, width=W)


@pytest.fixture(scope="module")
def calibration():
    images, _ = Q.split_frames(DATA, Q.CALIBRATION_SPLIT, (H, W), 4)
    return images


def _initializer(model, name):
    return next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


@pytest.mark.parametrize("scheme", Q.SCHEMES)
def test_qdq_graph_quantises_the_encoder_only_in_the_scheme_s_form(export, calibration, tmp_path, scheme):
    """tensorrt: signed activations and weights, every zero point 0 (TensorRT's explicit quantisation);
    onnxruntime-cpu: unsigned activations. Stem and head convs take no quantised input, the labels still
    come out as uint8 of the input size."""
    manifest = Manifest.load(export)
    out = Q.quantize_graph(manifest.verify(1.0), tmp_path / "w1_int8.onnx", calibration, scheme)
    model = onnx.load(str(out))
    nodes = model.graph.node
    quant = [n for n in nodes if n.op_type == "QuantizeLinear"]
    assert quant and any(n.op_type == "DequantizeLinear" for n in nodes)
    zero_points = [_initializer(model, n.input[2]) for n in nodes
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    activations = {_initializer(model, n.input[2]).dtype for n in quant}
    assert activations == ({np.dtype(np.int8)} if scheme == "tensorrt" else {np.dtype(np.uint8)})
    if scheme == "tensorrt":
        assert all(not zp.any() for zp in zero_points)
    problems = Q.tensorrt_qdq_problems(model)  # TensorRT explicit quantisation: followed by tensorrt only
    assert (problems == []) == (scheme == "tensorrt"), problems[:3]
    produced = {o: n for n in nodes for o in n.output}
    convs = [n for n in nodes if n.op_type == "Conv"]
    for conv in (convs[0], convs[-1]):  # the stem sees the image, the classifier makes the logits: fp32
        assert produced.get(conv.input[0]) is None or produced[conv.input[0]].op_type != "DequantizeLinear"
    assert any(produced.get(c.input[0]) is not None and produced[c.input[0]].op_type == "DequantizeLinear"
               for c in convs if c.name.startswith(Q.ENCODER))
    staged = manifest.copy(root=out.parent)  # graph files must lie beside the manifest
    staged.record_precision(1.0, "int8", "the graph under test", onnx=FileRef(out.name))
    backend = OnnxRuntimeBackend(staged, threads=1)
    labels = backend.infer(calibration[0], 1.0)
    backend.close()
    assert labels.shape == (H, W) and labels.dtype == np.uint8
    with pytest.raises(SlimsegError, match="unknown INT8 scheme"):
        Q.quantize_graph(manifest.verify(1.0), tmp_path / "x.onnx", calibration, "fp4")


def test_tensorrt_qdq_graph_follows_explicit_quantisation_rules(export, calibration, tmp_path):
    """What TensorRT's explicit quantisation takes, read off the file: QDQ from opset 13, int8 zero points of
    0, weights per output channel on axis 0, activations per tensor, float Conv biases."""
    manifest = Manifest.load(export)
    path = Q.quantize_graph(manifest.verify(0.5), tmp_path / "w.onnx", calibration, "tensorrt")
    model = onnx.load(str(path))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    constants = {t.name for t in model.graph.initializer}
    weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    biases = {n.input[2] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2}
    qdq = [n for n in model.graph.node if n.op_type in Q.QDQ_OPS]
    seen = {"weight": 0, "activation": 0}
    for node in qdq:
        scale, zero = _initializer(model, node.input[1]), _initializer(model, node.input[2])
        assert zero.dtype == np.int8 and not zero.any() and (scale > 0).all()
        assert node.output[0] not in biases, "Conv biases stay float"
        if node.output[0] in weights:
            weight = _initializer(model, node.input[0])
            assert weight.dtype == np.int8 and scale.shape == (weight.shape[0],)
            assert next(a.i for a in node.attribute if a.name == "axis") == 0
            seen["weight"] += 1
        else:
            assert node.input[0] not in constants and scale.size == 1
            seen["activation"] += 1
    assert seen["weight"] and seen["activation"]
    assert all(n.input[2] in constants for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2)


def test_the_qdq_checker_names_what_tensorrt_refuses(export, calibration, tmp_path):
    """The onnxruntime-cpu graph breaks two rules (uint8 zero points, int32 bias DequantizeLinear)."""
    manifest = Manifest.load(export)
    model = onnx.load(str(Q.quantize_graph(manifest.verify(0.25), tmp_path / "w.onnx", calibration,
                                           "onnxruntime-cpu")))
    problems = " | ".join(Q.tensorrt_qdq_problems(model))
    assert "zero point must be int8 0" in problems and "quantised Conv bias" in problems


def test_calibration_frames_are_one_choice(export):
    """Both INT8 paths (quantize_graph here, TensorRT's calibrator) take calibration_frames: val frames at the
    export size, evenly spread, never the dev split."""
    size = Manifest.load(export).input_size
    frames = Q.calibration_frames(DATA, size, 3)
    assert len(frames) == 3 and all(f.shape == (*size, 3) and f.dtype == np.uint8 for f in frames)
    assert len({f.tobytes() for f in frames}) == 3
    dev, _ = Q.split_frames(DATA, Q.DEV_SPLIT, size, 3)
    assert not {f.tobytes() for f in frames} & {f.tobytes() for f in dev}


def test_decision_needs_both_speed_and_agreement() -> None:
    fast = {"fp32": {"p50_ms": 10.0}, "int8": {"p50_ms": 6.0}}
    slow = {"fp32": {"p50_ms": 10.0}, "int8": {"p50_ms": 11.0}}
    good = {"agreement": 0.995, "miou_delta": -0.001}
    poor = {"agreement": 0.97, "miou_delta": -0.02}
    assert Q.decide(good, fast, 1)[0] == "int8" and "0.60x" in Q.decide(good, fast, 1)[1]
    assert Q.decide(good, slow, 1) == ("fp32", Q.decide(good, slow, 1)[1])
    assert Q.decide(good, slow, 1)[1].startswith("int8 not faster")
    assert Q.decide(poor, fast, 2)[0] == "fp32" and "below 99 %" in Q.decide(poor, fast, 2)[1]


def test_miou_and_split_frames_of_the_dev_sequence() -> None:
    if not (DATA / "train").is_dir():
        pytest.skip(f"CamVid not found at {DATA}")
    images, targets = Q.split_frames(DATA, Q.DEV_SPLIT, (H, W), 3)
    assert len(images) == 3 and all(t is not None and t.shape == (H, W) for t in targets)
    assert Q.miou(Q._confusion(targets[0], targets[0], 11, 11)) == 1.0
    with pytest.raises(SlimsegError, match="no frames"):
        Q.split_frames(DATA, "train:9999XX", (H, W))


def test_int8_auto_records_precision_and_reason_per_width(export, tmp_path) -> None:
    folder = tmp_path / "auto"
    shutil.copytree(export.parent, folder)
    report = Q.int8_auto(folder / "manifest.yaml", DATA, threads=1, frames=2, warmup=1, calibration_count=4,
                         log=lambda _m: None)
    manifest = Manifest.load(folder)
    assert manifest.section("export")["int8"]["scheme"] == "tensorrt"
    for w in manifest.widths:
        entry, row = manifest.entry(w), report["widths"][f"{w:g}"]
        assert manifest.precision(w) == entry.precision == row["precision"]
        assert entry.precision_reason == row["reason"] and "agreement" in row["reason"]
        assert 0.0 <= row["agreement"] <= 1.0 and len(row["latency"]) == 2 * len(_settings())
        int8_file = folder / Q.int8_name(f"slimseg_w{w:.2f}.onnx")
        assert int8_file.is_file() == (entry.precision == "int8")
        chosen = int8_file.name if entry.precision == "int8" else f"slimseg_w{w:.2f}.onnx"
        assert entry.onnx.file == chosen
    backend = OnnxRuntimeBackend(manifest, threads=1)  # every chosen file loads and verifies
    assert backend.widths == manifest.widths
    backend.close()


def _settings() -> list:
    from slimseg_ros.engines.bench import thread_settings

    return thread_settings(len(Q._cores()))


def test_manifest_refuses_an_unknown_precision(export) -> None:
    manifest = Manifest.load(export).copy()
    with pytest.raises(SlimsegError, match="precision"):
        manifest.record_precision(0.25, "fp8", "not a precision the graphs have")
    assert manifest.precision(0.25) == "fp32"


def test_export_int8_auto_needs_data_and_a_plain_export_is_fp32(export) -> None:
    import argparse

    from slimseg_ros.engines import export as E

    parser = argparse.ArgumentParser()
    E.add_arguments(parser)
    args = parser.parse_args(["--ckpt", "x", "--out", "y", "--int8", "auto"])
    with pytest.raises(SlimsegError, match="need --data"):
        E.run(args)
    manifest = Manifest.load(export)
    assert [manifest.precision(w) for w in manifest.widths] == ["fp32"] * len(manifest.widths)


def test_sensitivity_knobs_keep_depthwise_convs_fp32_and_name_the_calibrations(calibration, tmp_path):
    """The knobs scripts/int8_sensitivity.py measures: `depthwise_fp32` leaves every grouped conv with a float
    weight while the pointwise convs stay quantised; a percentile range still writes a graph
    TensorRT takes; an unknown calibration is refused with the known ones."""
    if not (DATA / "train").is_dir():
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    manifest = Manifest.load(export_test_manifest(tmp_path / "mnv2", arch="mobilenetv2", height=H, width=W))
    fp32 = manifest.verify(1.0)
    model = onnx.load(str(Q.quantize_graph(fp32, tmp_path / "dw.onnx", calibration, depthwise_fp32=True,
                                           calibration="percentile")))
    produced = {o: n.op_type for n in model.graph.node for o in n.output}
    encoder_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith(Q.ENCODER)]
    depthwise = [n for n in encoder_convs if Q.is_depthwise(n)]
    assert depthwise, "the test model must have depthwise convs"
    for conv in depthwise:  # its input may be a quantised Clip output; weight and output float
        assert produced.get(conv.input[1]) != "DequantizeLinear", conv.name
    assert any(produced.get(c.input[1]) == "DequantizeLinear" for c in encoder_convs if not Q.is_depthwise(c))
    assert Q.tensorrt_qdq_problems(model) == []
    with pytest.raises(SlimsegError, match="unknown calibration 'kl'.*minmax, percentile"):
        Q.quantize_graph(fp32, tmp_path / "x.onnx", calibration, calibration="kl")
