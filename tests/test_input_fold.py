"""Input normalisation folded into the first conv: every mode computes what the explicit normalisation does,
border included, for both encoder families; the exported graphs hold what the mode promises."""

from __future__ import annotations

import numpy as np
import pytest
from exported import build_test_model

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")
onnx = pytest.importorskip("onnx", reason="needs onnx, not in the runtime install (pip install .[export])")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime")

from slimseg_ros.engines.export import export_graph  # noqa: E402
from slimseg_ros.engines.input_fold import RawInputConv, fold_input  # noqa: E402
from slimseg_ros.engines.onnx_graph import INPUT_NORMS, DeployGraph  # noqa: E402
from slimseg_ros.training.checkpoint import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

H, W = 96, 128
torch.set_num_threads(2)


@pytest.fixture(scope="module", params=["resnet18", "efficientnet_lite0"])
def model(request):
    return build_test_model(request.param, widths=(0.25, 1.0), height=H, width=W)


def _image(seed: int = 0) -> torch.Tensor:
    """Random pixels with saturated (0 and 255) outer rows and columns, where padding matters most."""
    image = torch.randint(0, 256, (1, H, W, 3), generator=torch.Generator().manual_seed(seed)).to(torch.uint8)
    image[:, 0], image[:, :, 0], image[:, -1], image[:, :, -1] = 255, 0, 255, 0
    return image


def _reference(subnet: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    x = image.permute(0, 3, 1, 2).float()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return subnet.forward_lowres((x - mean) / std)


@pytest.mark.parametrize("norm", INPUT_NORMS)
def test_every_mode_computes_the_normalised_network(model, norm):
    image = _image()
    for w in (0.25, 1.0):
        subnet = model.subnet(w)
        graph = DeployGraph(subnet, IMAGENET_MEAN, IMAGENET_STD, postprocess="none", input_norm=norm).eval()
        with torch.inference_mode():
            ref, got = _reference(subnet, image), graph(image)
        scale = float(ref.abs().max())
        torch.testing.assert_close(got, ref, atol=1e-4 * scale, rtol=0, msg=f"{norm} width {w}")


def test_border_map_is_what_makes_the_full_fold_exact(model):
    """Without the border map the folded conv is wrong on its outer ring only: the test can see the border."""
    subnet = model.subnet(1.0)
    folded = fold_input(subnet, IMAGENET_MEAN, IMAGENET_STD)
    name, raw = next((n, m) for n, m in folded.named_modules() if isinstance(m, RawInputConv))
    x = _image().permute(0, 3, 1, 2).float()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    stem = subnet.get_submodule(name)
    bn = subnet.get_submodule(name.rpartition(".")[0] + "." + str(int(name.rpartition(".")[2]) + 1))
    with torch.inference_mode():
        want = bn(stem((x - mean) / std))
        exact, unbordered = raw(x), raw.conv(x)
    torch.testing.assert_close(exact, want, atol=1e-4 * float(want.abs().max()), rtol=0)
    wrong = (unbordered - want).abs().amax(dim=(0, 1)) > 1e-3 * float(want.abs().max())
    assert wrong[0].all() and wrong[:, 0].all(), "top row and left column differ without the map"
    k = raw.conv.kernel_size[0]  # beyond a kernel's reach of the border, no tap is padded
    assert not wrong[k:-k, k:-k].any(), "the inside is exact without the map"


def test_fold_leaves_the_subnet_alone(model):
    subnet = model.subnet(0.25)
    before = {k: v.clone() for k, v in subnet.state_dict().items()}
    fold_input(subnet, IMAGENET_MEAN, IMAGENET_STD)
    after = subnet.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("norm,before_conv", [("scale", ["Transpose", "Cast", "Sub"]),
                                              ("graph", ["Transpose", "Cast", "Sub", "Mul"]),
                                              ("fold", ["Transpose", "Cast"])])
def test_exported_graph_does_what_its_mode_says(model, tmp_path, norm, before_conv):
    subnet = model.subnet(0.25)
    graph = DeployGraph(subnet, IMAGENET_MEAN, IMAGENET_STD, keep_logits=True, input_norm=norm)
    path = export_graph(graph, tmp_path / f"{norm}.onnx", H, W)
    nodes = onnx.load(str(path)).graph.node
    first_conv = next(i for i, n in enumerate(nodes) if n.op_type == "Conv")
    assert [n.op_type for n in nodes[:first_conv] if n.op_type != "Constant"] == before_conv
    assert not any(n.op_type == "ConstantOfShape" for n in nodes), "the border map is one initializer"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = _image(1)
    _, logits = session.run(None, {"image": image.numpy()})
    with torch.inference_mode():
        _, ref = DeployGraph(subnet, IMAGENET_MEAN, IMAGENET_STD, keep_logits=True, input_norm="graph")(image)
    np.testing.assert_allclose(logits, ref.numpy(), atol=1e-4 * float(ref.abs().max()), rtol=0)
