"""TensorRT: the plan-compatibility rule (pure Python, tested everywhere); real builds where TRT imports."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import stat
import sys

import numpy as np
import pytest
from exported import DATA, camvid_frames, runtime_export

from slimseg_ros.backends.tensorrt.build import import_tensorrt, plan_intact, plan_name
from slimseg_ros.backends.tensorrt.cache import CACHE_DIRNAME, INDEX_NAME
from slimseg_ros.backends.tensorrt.compat import BUILD, REBUILD, USE, TrtTarget, decide_plan, mismatch
from slimseg_ros.engines.tensorrt_build import TRT_MISSING
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import FORMAT, Manifest, PlanRecord, sha256_file

ORIN = TrtTarget(trt_version="10.3.0", gpu="Orin", compute_capability="8.7")
PLAN = PlanRecord(file="w.plan", precision="fp16", trt_version="10.3.0", gpu="Orin", compute_capability="8.7")


def _with(plan: PlanRecord, **changes: str) -> PlanRecord:
    return dataclasses.replace(plan, **changes)


def _snapshot(folder):
    """Every file under a folder with its bytes: what "the runtime wrote nothing here" is checked against."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _edit_index(index, width, **changes):
    import yaml

    doc = yaml.safe_load(index.read_text())
    doc["widths"][width][0].update(changes)
    index.write_text(yaml.safe_dump(doc))


def test_matching_plan_is_used():
    d = decide_plan([PLAN], ORIN, "fp16", has_onnx=False, width=0.5)
    assert d.action == USE and d.plan is PLAN


@pytest.mark.parametrize(("field", "value", "words"), [
    ("trt_version", "10.1.0", "TensorRT 10.1.0"),
    ("gpu", "NVIDIA H100", "GPU 'NVIDIA H100'"),
    ("compute_capability", "9.0", "compute capability 9.0"),
])
def test_plan_from_elsewhere_is_rebuilt_from_onnx(field, value, words):
    stale = _with(PLAN, **{field: value})
    assert words in mismatch(stale, ORIN)
    d = decide_plan([stale], ORIN, "fp16", has_onnx=True, width=0.5)
    assert d.action == REBUILD and d.plan is stale and words in d.reason


def test_plan_from_elsewhere_without_onnx_is_refused():
    with pytest.raises(SlimsegError, match="width 0.5: fp16 plan w.plan built for TensorRT 9.3.0.*no ONNX"):
        decide_plan([_with(PLAN, trt_version="9.3.0")], ORIN, "fp16", has_onnx=False, width=0.5)


def test_missing_or_corrupt_plan_and_other_precision():
    d = decide_plan([PLAN], ORIN, "fp16", has_onnx=True, plan_ok=lambda p: False)
    assert d.action == REBUILD and "missing or corrupt" in d.reason
    d = decide_plan([PLAN], ORIN, "int8", has_onnx=True)
    assert d.action == BUILD and d.plan is None
    with pytest.raises(SlimsegError, match="no int8 plan recorded"):
        decide_plan([PLAN], ORIN, "int8", has_onnx=False)
    # a good plan next to a stale one of the same precision is the one used
    d = decide_plan([_with(PLAN, gpu="Xavier", file="old.plan"), PLAN], ORIN, "fp16", has_onnx=False)
    assert d.action == USE and d.plan.file == "w.plan"


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
                        "engines": [_with(PLAN, sha256=sha256_file(plan_file)).to_dict()]}]}
    manifest = Manifest(data, tmp_path)
    plan = manifest.entry(1.0).engines[0]
    assert plan_intact(manifest.file_path(plan.file), plan)
    plan_file.write_bytes(b"truncated")
    assert not plan_intact(manifest.file_path(plan.file), plan)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_is_a_clear_error():
    with pytest.raises(SlimsegError, match="needs tensorrt and pycuda"):
        import_tensorrt()


# --- real TensorRT: only where it imports -------------------------------------------------------------------
@pytest.fixture(scope="module")
def trt_export(tmp_path_factory):
    pytest.importorskip("tensorrt", reason=TRT_MISSING)
    pytest.importorskip("pycuda.driver", reason=TRT_MISSING)
    return runtime_export(tmp_path_factory.mktemp("trt") / "export", height=96, width=128)


def test_tensorrt_backend_matches_onnxruntime(trt_export):
    from slimseg_ros.backends import create_backend

    images, _ = camvid_frames("val", count=2, step=50)
    images = images or [np.random.default_rng(0).integers(0, 255, (360, 480, 3), dtype=np.uint8)]
    trt_backend = create_backend("tensorrt", trt_export)  # builds missing fp16 plans into the plan cache
    ort = create_backend("onnxruntime", trt_export)
    manifest = Manifest.load(trt_export)
    for w in manifest.widths:
        (plan, _), = trt_backend.cache.plans(w)
        assert plan.precision == "fp16" and plan.trt_version == trt_backend.target.trt_version
        for image in images:
            a, b = trt_backend.infer(image, w), ort.infer(image, w)
            assert a.shape == image.shape[:2]
            assert (a == b).mean() >= 0.98, f"fp16 width {w}: {(a == b).mean():.4f}"  # fp16 flips near ties
    trt_backend.close()
    ort.close()


def test_tensorrt_stale_plan_is_rebuilt_and_corrupt_plan_without_onnx_disabled(trt_export, tmp_path):
    from slimseg_ros.backends import create_backend

    create_backend("tensorrt", trt_export).close()  # make sure cached plans exist
    copy = tmp_path / "copy"
    shutil.copytree(trt_export.parent, copy)
    cache = copy / CACHE_DIRNAME
    _edit_index(cache / INDEX_NAME, "0.25", trt_version="9.0.0")  # built elsewhere: rebuild, never load
    Manifest.load(copy).onnx_path(0.5).unlink()
    plan = next(cache.glob("slimseg_w0.50_*.plan"))
    plan.write_bytes(plan.read_bytes()[:100])
    manifest_bytes = (copy / "manifest.yaml").read_bytes()
    backend = create_backend("tensorrt", copy)
    assert 0.25 in backend.widths and 0.5 in backend.disabled and "no ONNX" in backend.disabled[0.5]
    assert backend.cache.plans(0.25)[-1][0].trt_version == backend.target.trt_version
    assert (copy / "manifest.yaml").read_bytes() == manifest_bytes
    backend.close()


# --- the TensorRT layer's own logic, on a stand-in for tensorrt + pycuda ------------------------------------
# TensorRT cannot be installed here, so the builder/backend code would otherwise never execute in CI. This
# stand-in implements just the TensorRT 10 / pycuda calls the code makes; its "plan" wraps the ONNX bytes and
# its "engine" runs them with ONNX Runtime on buffers that play device memory, so the data path is real.
class _FakeCuda:
    """pycuda.driver: device memory as numpy byte arrays addressed by integer handles."""

    class Error(Exception):
        pass

    def __init__(self):
        self.memory, self.allocations, self.context_depth = {}, 0, 0
        fake = self

        class Alloc:
            def __init__(self, nbytes):
                fake.allocations += 1
                self.buf = np.zeros(nbytes, np.uint8)
                fake.memory[id(self)] = self

            def __int__(self):
                return id(self)

            def free(self):
                fake.memory.pop(id(self), None)

        class Context:
            def push(self):
                fake.context_depth += 1

            def pop(self):
                fake.context_depth -= 1

            def detach(self):
                fake.detached = True

        class Device:
            def __init__(self, index):
                self.index = index

            def name(self):
                return "Fake GPU"

            def compute_capability(self):
                return (8, 7)

            def retain_primary_context(self):
                return Context()

        class Stream:
            handle = 7

            def synchronize(self):
                pass

        self.mem_alloc, self.Device, self.Stream = Alloc, Device, Stream
        self.detached = False

    def init(self):
        pass

    def pagelocked_empty(self, shape, dtype):
        return np.zeros(shape, dtype)

    def memcpy_htod_async(self, dev, host, stream=None):
        dev.buf[:] = np.ascontiguousarray(host).view(np.uint8).ravel()

    memcpy_htod = memcpy_htod_async

    def memcpy_dtoh_async(self, host, dev, stream=None):
        host.view(np.uint8).ravel()[:] = dev.buf


def _fake_tensorrt(cuda: _FakeCuda, version: str = "10.3.0"):
    import enum
    import types

    import onnx
    import onnxruntime as ort

    trt = types.SimpleNamespace(__version__=version, builds=[], calibrated=[])
    severity = enum.IntEnum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE", start=0)

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = list(severity)

        def __init__(self):
            pass

    class Calibrator:
        def __init__(self):
            pass

    class Layer:
        def __init__(self, node):
            qdq = {"QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE"}
            self.type = qdq.get(node.op_type, "OTHER")

    class Network:
        onnx_bytes, layers = None, []

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class Parser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse(self, data):
            try:
                model = onnx.load_model_from_string(data)
            except Exception:  # noqa: BLE001 - the stand-in reports any parse failure like TensorRT does
                self.num_errors = 1
                return False
            self.network.onnx_bytes, self.network.layers = data, [Layer(n) for n in model.graph.node]
            return True

        def get_error(self, i):
            return "fake parse error"

    class TimingCache:
        def serialize(self):
            return b"timing"

    class Config:
        int8_calibrator = None

        def __init__(self):
            self.flags, self.cache = set(), None

        def set_memory_pool_limit(self, pool, size):
            self.workspace = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def create_timing_cache(self, data):
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            qdq = any(layer.type != "OTHER" for layer in network.layers)
            if qdq and "INT8" not in config.flags:  # explicit quantisation needs the INT8 flag
                return None
            if config.int8_calibrator is not None:
                while (batch := config.int8_calibrator.get_batch(["image"])) is not None:
                    trt.calibrated.append(cuda.memory[batch[0]].buf.copy())
                config.int8_calibrator.write_calibration_cache(b"calibration")
            trt.builds.append(sorted(config.flags))
            return b"FAKEPLAN" + network.onnx_bytes

    class Context:
        def __init__(self, session):
            self.session, self.addresses = session, {}

        def set_tensor_address(self, name, address):
            self.addresses[name] = address
            return True

        def execute_async_v3(self, stream_handle):
            inp = self.session.get_inputs()[0]
            image = cuda.memory[self.addresses[inp.name]].buf.reshape(inp.shape)
            for out, value in zip(self.session.get_outputs(), self.session.run(None, {inp.name: image}),
                                  strict=True):
                cuda.memory[self.addresses[out.name]].buf[:] = value.view(np.uint8).ravel()
            return True

    class Engine:
        def __init__(self, session):
            self.session = session
            self.io = [(i, True) for i in session.get_inputs()] + [(o, False) for o in session.get_outputs()]
            self.num_io_tensors = len(self.io)

        def get_tensor_name(self, i):
            return self.io[i][0].name

        def _find(self, name):
            return next(item for item in self.io if item[0].name == name)

        def get_tensor_shape(self, name):
            return self._find(name)[0].shape

        def get_tensor_dtype(self, name):
            return {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}[self._find(name)[0].type]

        def get_tensor_mode(self, name):
            return "in" if self._find(name)[1] else "out"

        def create_execution_context(self):
            return Context(self.session)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            if not data.startswith(b"FAKEPLAN"):
                self.logger.log(severity.ERROR, "invalid plan")
                return None
            return Engine(ort.InferenceSession(data[8:], providers=["CPUExecutionProvider"]))

    trt.ILogger, trt.IInt8EntropyCalibrator2 = ILogger, Calibrator
    trt.Builder, trt.OnnxParser = Builder, Parser
    trt.Runtime, trt.nptype = Runtime, lambda dtype: dtype
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.LayerType = types.SimpleNamespace(QUANTIZE="QUANTIZE", DEQUANTIZE="DEQUANTIZE")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    return trt


@pytest.fixture()
def fake_trt(monkeypatch):
    import types

    pytest.importorskip("onnx", reason="the TensorRT stand-in reads the ONNX files with onnx (.[export])")
    cuda = _FakeCuda()
    trt = _fake_tensorrt(cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(driver=cuda))
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    return trt, cuda


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    return runtime_export(tmp_path_factory.mktemp("trt_fake") / "export", height=96, width=128)


def test_build_engines_and_backend_on_stand_in(fake_trt, small_export, tmp_path):
    import argparse

    from slimseg_ros.backends import create_backend
    from slimseg_ros.engines import tensorrt_build

    trt, cuda = fake_trt
    folder = tmp_path / "export"
    shutil.copytree(small_export.parent, folder)
    args = argparse.Namespace(manifest=str(folder / "manifest.yaml"), precision="fp16", calib_data=None,
                              calib_frames=4, workspace_mb=256, timing_cache=str(folder / "timing.cache"),
                              widths=None, device=0, force=False)
    assert tensorrt_build.run(args) == 0
    manifest = Manifest.load(folder)
    plans = [manifest.entry(w).engines for w in manifest.widths]
    assert all(len(p) == 1 and p[0].precision == "fp16" and p[0].gpu == "Fake GPU" for p in plans)
    assert all(p[0].compute_capability == "8.7" and p[0].trt_version == "10.3.0" for p in plans)
    assert trt.builds == [["FP16"]] * 4 and (folder / "timing.cache").read_bytes() == b"timing"
    assert tensorrt_build.run(args) == 0 and len(trt.builds) == 4  # up-to-date plans are kept, not rebuilt

    backend = create_backend("tensorrt", folder)
    ort = create_backend("onnxruntime", folder, threads=1)
    images, _ = camvid_frames("val", count=1, step=10)
    image = images[0] if images else np.random.default_rng(1).integers(0, 255, (360, 480, 3), dtype=np.uint8)
    before = cuda.allocations
    for w in [1.0, 0.25, 0.75, 0.5, 0.25]:  # switching widths allocates nothing
        assert np.array_equal(backend.infer(image, w), ort.infer(image, w))
    assert cuda.allocations == before and cuda.context_depth == 0
    assert len(backend._buffers) == 2  # image and labels buffers shared by every width
    backend.close()
    ort.close()
    assert cuda.detached and not cuda.memory


def test_stand_in_plans_built_at_start_go_to_the_cache_never_the_manifest(fake_trt, small_export, tmp_path):
    from slimseg_ros.backends import create_backend

    trt, cuda = fake_trt
    folder = tmp_path / "export"
    shutil.copytree(small_export.parent, folder)
    manifest_bytes = (folder / "manifest.yaml").read_bytes()
    create_backend("tensorrt", folder).close()  # builds every missing plan at start (rebuild=True)
    assert len(trt.builds) == 4
    assert (folder / "manifest.yaml").read_bytes() == manifest_bytes
    cache = folder / CACHE_DIRNAME
    assert len(list(cache.glob("*.plan"))) == 4 and (cache / INDEX_NAME).is_file()
    create_backend("tensorrt", folder).close()
    assert len(trt.builds) == 4  # the next start uses the cached plans

    _edit_index(cache / INDEX_NAME, "0.25", trt_version="9.0.0")  # built "elsewhere": rebuild, never load
    next(cache.glob("slimseg_w0.50_*.plan")).write_bytes(b"garbage")
    Manifest.load(folder).onnx_path(0.5).unlink()  # ... and no ONNX to rebuild it from
    backend = create_backend("tensorrt", folder)
    assert backend.widths == [0.25, 0.75, 1.0]
    assert "no ONNX" in backend.disabled[0.5]
    assert len(trt.builds) == 5  # only width 0.25 was rebuilt
    assert (folder / "manifest.yaml").read_bytes() == manifest_bytes
    backend.close()
    with pytest.raises(SlimsegError, match="no usable width.*no int8 plan recorded.*slimseg build-engines"):
        create_backend("tensorrt", folder, rebuild=False, precision="int8")


def test_stand_in_read_only_model_folder_builds_into_the_user_cache(fake_trt, small_export, tmp_path,
                                                                     monkeypatch):
    from slimseg_ros.backends import create_backend

    trt, _ = fake_trt
    folder = tmp_path / "export"
    shutil.copytree(small_export.parent, folder)
    user_cache = tmp_path / "user_cache"
    monkeypatch.setenv("SLIMSEG_PLAN_CACHE", str(user_cache))
    for path in [folder, *folder.rglob("*")]:  # chmod -R a-w
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _snapshot(folder)
    try:
        backend = create_backend("tensorrt", folder)
        assert backend.widths == [0.25, 0.5, 0.75, 1.0] and len(trt.builds) == 4
        backend.close()
        assert _snapshot(folder) == before and not (folder / CACHE_DIRNAME).exists()
        (cached,) = user_cache.iterdir()
        assert len(list(cached.glob("*.plan"))) == 4 and (cached / INDEX_NAME).is_file()
        create_backend("tensorrt", folder).close()
        assert len(trt.builds) == 4  # found again in the user cache
        monkeypatch.setenv("SLIMSEG_PLAN_CACHE", str(folder / "nowhere"))  # no cache to write to at all
        with pytest.raises(SlimsegError, match="no usable width.*no writable plan cache.*build-engines"):
            create_backend("tensorrt", folder)
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _build_args(folder, precision, calib_data=None, widths=None):
    import argparse

    return argparse.Namespace(manifest=str(folder / "manifest.yaml"), precision=precision,
                              calib_data=calib_data, calib_frames=3, workspace_mb=256, timing_cache=None,
                              widths=widths, device=0, force=False)


def test_stand_in_int8_of_fp32_graph_calibrates_on_the_quantiser_s_frames(fake_trt, small_export, tmp_path):
    """TensorRT's entropy calibrator gets exactly the frames engines/quantize.py calibrates QDQ graphs on."""
    from slimseg_ros.engines import tensorrt_build
    from slimseg_ros.engines.quantize import calibration_frames

    if not (DATA / "val").is_dir():
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    trt, _ = fake_trt
    folder = tmp_path / "export"
    shutil.copytree(small_export.parent, folder)
    with pytest.raises(SlimsegError, match="needs --calib-data"):
        tensorrt_build.run(_build_args(folder, "int8", widths=[0.25]))
    assert tensorrt_build.run(_build_args(folder, "int8", str(DATA), widths=[0.25])) == 0
    assert trt.builds == [["FP16", "INT8"]]
    expected = calibration_frames(DATA, Manifest.load(folder).input_size, 3)
    assert len(trt.calibrated) == 3
    assert all(np.array_equal(got, want.ravel()) for got, want in zip(trt.calibrated, expected, strict=True))
    assert (folder / "calib_w0.25.cache").read_bytes() == b"calibration"
    assert Manifest.load(folder).entry(0.25).engines[0].precision == "int8"


def test_stand_in_qdq_graph_builds_by_explicit_quantisation(fake_trt, small_export, tmp_path):
    """A width exported as INT8 (QDQ, scheme tensorrt) is built with the INT8 flag and no calibrator, whatever
    precision was asked, by build-engines and by the backend at start; its labels are the QDQ graph's."""
    pytest.importorskip("torch", reason="quantising needs the export tools (pip install .[export])")
    from slimseg_ros.backends import create_backend
    from slimseg_ros.engines import tensorrt_build
    from slimseg_ros.engines.quantize import calibration_frames, int8_name, quantize_graph
    from slimseg_ros.manifest import FileRef

    if not (DATA / "val").is_dir():
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    trt, _ = fake_trt
    folder = tmp_path / "export"
    shutil.copytree(small_export.parent, folder)
    manifest = Manifest.load(folder)
    frames = calibration_frames(DATA, manifest.input_size, 2)
    qdq = quantize_graph(manifest.verify(0.5), manifest.resolve(int8_name(manifest.entry(0.5).onnx.file)),
                         frames, "tensorrt")
    manifest.record_precision(0.5, "int8", "test", onnx=FileRef(qdq.name, sha256_file(qdq)))
    manifest.save()
    assert tensorrt_build.run(_build_args(folder, "fp16", widths=[0.25, 0.5])) == 0  # no --calib-data needed
    assert trt.builds == [["FP16"], ["FP16", "INT8"]] and not trt.calibrated
    assert not list(folder.glob("calib_*.cache"))
    recorded = Manifest.load(folder)
    assert [recorded.entry(w).engines[0].precision for w in (0.25, 0.5)] == ["fp16", "int8"]

    shutil.rmtree(folder / CACHE_DIRNAME, ignore_errors=True)
    for w in recorded.widths:  # the backend builds at start: the QDQ width as int8 again, uncalibrated
        for plan in recorded.entry(w).engines:
            recorded.file_path(plan.file).unlink()
    trt.builds.clear()
    backend = create_backend("tensorrt", folder)
    ort = create_backend("onnxruntime", folder, threads=1)
    assert sorted(trt.builds) == [["FP16"]] * 3 + [["FP16", "INT8"]] and not trt.calibrated
    assert np.array_equal(backend.infer(frames[0], 0.5), ort.infer(frames[0], 0.5))
    backend.close()
    ort.close()
