"""Export: each width's ONNX graph computes what the PyTorch sub-network computes, on real CamVid frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
from exported import DATA, camvid_frames, export_test_manifest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")
onnx = pytest.importorskip("onnx", reason="needs onnx, not in the runtime install (pip install .[export])")

from slimseg_ros.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from slimseg_ros.engines.export import compare_postprocess, export_model, load_eval_json  # noqa: E402
from slimseg_ros.engines.onnx_graph import DeployGraph  # noqa: E402
from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.manifest import Manifest  # noqa: E402
from slimseg_ros.training.checkpoint import load_checkpoint  # noqa: E402

H, W = 96, 128
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def frames():
    images, labels = camvid_frames("val", count=3, size=(H, W), step=30)
    if not images:
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    return images, labels


@pytest.fixture(scope="module")
def logits_export(tmp_path_factory):
    """Both post-processing modes exported with logits kept, from one checkpoint."""
    out = tmp_path_factory.mktemp("export_logits")
    fast = export_test_manifest(out / "fast", height=H, width=W, keep_logits=True, postprocess="fast")
    model, meta = load_checkpoint(fast.parent / "checkpoint")
    exact = export_model(model, meta, out / "exact", H, W, widths=[0.25, 1.0], postprocess="exact",
                         keep_logits=True, log=lambda _m: None)
    return model, meta, Manifest.load(fast), Manifest.load(exact)


def test_graph_interface_matches_contract(logits_export):
    import yaml

    from slimseg_ros.engines.onnx_graph import INPUT_NORMS

    _, _, fast, _ = logits_export
    assert yaml.safe_load(fast.path.read_text())["export"]["input_norm"] == INPUT_NORMS[0]
    for w in fast.widths:
        graph = onnx.load(str(fast.onnx_path(w)))
        (inp,) = graph.graph.input
        assert inp.name == "image"
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, H, W, 3]
        out = {o.name: o for o in graph.graph.output}
        assert out["labels"].type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert [d.dim_value for d in out["labels"].type.tensor_type.shape.dim] == [1, H, W]


@pytest.mark.parametrize("mode", ["fast", "quarter", "exact"])
def test_onnx_matches_pytorch_on_real_frames(logits_export, frames, mode, tmp_path):
    model, meta, fast, exact = logits_export
    manifest = {"fast": fast, "exact": exact}.get(mode) or Manifest.load(
        export_model(model, meta, tmp_path, H, W, widths=[0.5], postprocess=mode, keep_logits=True,
                     log=lambda _m: None))
    backend = OnnxRuntimeBackend(manifest, threads=1)
    images, _ = frames
    for w in manifest.widths:
        graph = DeployGraph(model.subnet(w), meta["mean"], meta["std"], postprocess=mode, keep_logits=True)
        graph.eval()
        agree = total = 0
        classes: set[int] = set()
        for image in images:
            with torch.inference_mode():
                ref_labels, ref_logits = graph(torch.from_numpy(image)[None])
            outs = backend.run_outputs(image, w)
            np.testing.assert_allclose(outs["logits"], ref_logits.numpy(), atol=1e-3, rtol=0)
            agree += int((outs["labels"] == ref_labels.numpy()).sum())
            total += ref_labels.numel()
            classes |= set(np.unique(outs["labels"]).tolist())
        assert agree / total >= 0.999, f"width {w} {mode}: {agree / total:.5f} of labels agree"
        assert len(classes) >= 2, f"width {w}: constant label map makes the comparison vacuous"
    backend.close()


def test_exact_graph_labels_are_argmax_of_subnet(logits_export, frames):
    """The exact graph is the sub-network's own full-resolution output, argmaxed (no re-implementation)."""
    model, meta, _, exact = logits_export
    backend = OnnxRuntimeBackend(exact, threads=1)
    image = frames[0][0]
    mean, std = torch.tensor(meta["mean"]).view(1, 3, 1, 1), torch.tensor(meta["std"]).view(1, 3, 1, 1)
    x = (torch.from_numpy(image)[None].permute(0, 3, 1, 2).float() - mean) / std
    for w in exact.widths:
        with torch.inference_mode():
            ref = model.subnet(w)(x).argmax(1)[0].numpy()
        assert (backend.infer(image, w) == ref).mean() >= 0.999
    backend.close()


def test_postprocess_modes_are_one_table():
    import argparse

    from slimseg_ros import manifest
    from slimseg_ros.engines import export, onnx_graph

    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    option = next(a for a in parser._actions if a.dest == "postprocess")
    assert tuple(option.choices) == onnx_graph.POSTPROCESS_MODES == manifest.POSTPROCESS_MODES
    assert option.default == onnx_graph.DEFAULT_POSTPROCESS == manifest.DEFAULT_POSTPROCESS == "quarter"
    assert export.onnx_name(0.5) == "slimseg_w0.50.onnx"
    assert export.onnx_name(1.0, "exact") == "slimseg_w1.00_exact.onnx"


def test_manifest_contents(logits_export):
    _, meta, fast, _ = logits_export
    assert fast.input_size == (H, W)
    assert fast.class_names == meta["classes"]
    assert fast.ignore_index == 11
    assert fast.normalization == (meta["mean"], meta["std"])
    assert fast.widths == [0.25, 0.5, 0.75, 1.0]
    flops = [fast.entry(w).flops for w in fast.widths]
    params = [fast.entry(w).params for w in fast.widths]
    assert all(a < b for a, b in zip(flops, flops[1:], strict=False)), flops
    assert all(a < b for a, b in zip(params, params[1:], strict=False)), params
    for w in fast.widths:
        fast.verify(w)  # sha256 recorded at export matches the file
    assert fast.checkpoint_path().is_file()


def test_eval_json_accuracy_goes_into_manifest(tmp_path, logits_export):
    model, meta, _, _ = logits_export
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"split": "val", "widths": {"0.25": {"miou": 0.5, "boundary_miou": 0.3},
                                                                 "1.0": {"miou": 0.6}}}))
    acc = load_eval_json(eval_json)
    assert acc[1.0] == {"miou": 0.6, "split": "val"}
    path = export_model(model, meta, tmp_path / "out", H, W, widths=[0.25], accuracy=acc, log=lambda _m: None)
    manifest = Manifest.load(path)
    assert manifest.widths == [0.25]
    assert manifest.entry(0.25).accuracy == {"miou": 0.5, "boundary_miou": 0.3, "split": "val"}


def test_compare_postprocess_on_real_frames(tmp_path, logits_export, frames):
    """The fast-vs-exact comparison runs end to end on real frames (figures matter for a trained model)."""
    model, meta, _, _ = logits_export
    path = export_model(model, meta, tmp_path / "cmp", H, W, widths=[0.5], log=lambda _m: None)
    result = compare_postprocess(model, meta, path, DATA, frames=2, log=lambda _m: None)
    row = result["widths"]["0.5"]
    assert result["frames"] == 2 and result["size"] == [H, W]
    for mode in ("fast", "quarter"):  # nearest vs bilinear upsampling differ only near label borders
        assert 0.5 < row[mode]["agreement"] <= 1.0
        assert row[mode]["miou_delta"] == pytest.approx(row[mode]["miou"] - row["miou_exact"])
    assert row["quarter"]["agreement"] >= row["fast"]["agreement"] - 0.02  # finer grid: no worse


def test_bad_eval_json_and_bad_width_are_clear_errors(tmp_path, logits_export):
    model, meta, _, _ = logits_export
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"miou": 0.5}))
    with pytest.raises(SlimsegError, match="no 'widths'"):
        load_eval_json(bad)
    with pytest.raises(SlimsegError, match="not in the model"):
        export_model(model, meta, tmp_path / "o", H, W, widths=[0.3], log=lambda _m: None)
    with pytest.raises(SlimsegError, match="multiple of 8"):
        export_model(model, meta, tmp_path / "o", 100, W, log=lambda _m: None)
    with pytest.raises(SlimsegError, match="ONNX export of slimseg_w0.25.onnx at 32x64 failed"):
        export_model(model, meta, tmp_path / "o", 32, 64, widths=[0.25], log=lambda _m: None)  # 1x2 map


def test_cli_run_with_copied_checkpoint(tmp_path, logits_export):
    """`slimseg export` end to end: the folder it writes is self-contained for the PyTorch backend too."""
    import argparse

    from slimseg_ros.backends import create_backend
    from slimseg_ros.engines import export

    _, _, fast, _ = logits_export
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"split": "val", "widths": {"0.25": {"miou": 0.42}}}))
    out = tmp_path / "deploy"
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    args = parser.parse_args(["--ckpt", str(fast.checkpoint_path()), "--out", str(out), "--height", str(H),
                              "--width", str(W), "--widths", "0.25", "--eval-json", str(eval_json),
                              "--copy-checkpoint"])
    assert export.run(args) == 0
    manifest = Manifest.load(out)
    assert manifest.model["checkpoint"] == "checkpoint.safetensors"
    assert manifest.entry(0.25).accuracy == {"miou": 0.42, "split": "val"}
    # textured input: on a flat grey frame a random-init net has near-tied logits; rounding flips argmax
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with create_backend("torch", out) as tb, create_backend("onnxruntime", out) as ob:
        assert (tb.infer(image, 0.25) == ob.infer(image, 0.25)).mean() >= 0.999
