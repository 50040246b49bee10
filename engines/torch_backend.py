"""PyTorch backend: every width's sub-network built at start from the manifest's checkpoint; CPU or CUDA.

It runs the very module that export traces (engines/onnx_graph.DeployGraph), so its labels match the ONNX
graphs. On CUDA it defaults to fp16 and one CUDA graph per width with static, pre-allocated input/output
tensors and page-locked host copies: a frame is one H2D copy, one graph replay and one D2H copy of a byte
per pixel, and a width switch allocates nothing. It lives with the offline tools (it needs torch and the
training code); the runtime finds it by name (slimseg_ros/backends/registry.py) and imports it only when it
is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slimseg_ros.backends.base import Backend
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest, match_width, verify_file


class TorchBackend(Backend):
    """Owns the model's sub-networks (and, on CUDA, their CUDA graphs and buffers) until close()."""

    @staticmethod
    def cuda_available() -> bool:
        """Whether torch sees a CUDA GPU (what `auto` asks before trying torch-cuda)."""
        import torch

        return bool(torch.cuda.is_available())

    def __init__(self, manifest: Manifest, device: str = "cpu", fp16: bool | None = None,
                 cuda_graphs: bool | None = None, threads: int = 0) -> None:
        super().__init__(manifest)
        try:
            import torch
        except ImportError as exc:
            raise SlimsegError("the torch backend needs PyTorch",
                               "pip install torch, or use onnxruntime") from exc
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise SlimsegError(f"unknown torch device {device!r}", "use 'cpu' or 'cuda' (or 'cuda:N')")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SlimsegError("torch-cuda requested but torch sees no CUDA GPU", "use device 'cpu'")
        self._torch = torch
        self.device = torch.device(device)
        on_gpu = self.device.type == "cuda"
        self.name = "torch-cuda" if on_gpu else "torch-cpu"
        self.fp16 = on_gpu if fp16 is None else bool(fp16)
        self.cuda_graphs = on_gpu if cuda_graphs is None else bool(cuda_graphs)
        if self.cuda_graphs and not on_gpu:
            raise SlimsegError("CUDA graphs need a CUDA device", "pass cuda_graphs=False on CPU")
        if threads > 0:
            torch.set_num_threads(threads)
        if on_gpu:
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels once
        self._model, self._mean, self._std = self._load_model()
        self._graphs: dict[float, Any] = {}
        self._captured: dict[float, tuple[Any, Any]] = {}
        h, w = self.input_size
        if self.cuda_graphs:
            self._static_in = torch.zeros(1, h, w, 3, dtype=torch.uint8, device=self.device)
            self._host_in = torch.zeros(1, h, w, 3, dtype=torch.uint8).pin_memory()
            self._host_out = torch.zeros(1, h, w, dtype=torch.uint8).pin_memory()
        self._load_widths(self._load_one)
        self._model = None  # the slimmable model is no longer needed once every width has its sub-network

    def _load_model(self) -> tuple[Any, list[float], list[float]]:
        from slimseg_ros.training.checkpoint import load_checkpoint

        ckpt = self.manifest.checkpoint_path()
        if ckpt is None:
            raise SlimsegError(f"manifest {self.manifest.path} names no checkpoint",
                               "re-export with `slimseg export --ckpt ...` (--copy-checkpoint ships it)")
        verify_file(ckpt, self.manifest.checkpoint_sha256)
        model, meta = load_checkpoint(ckpt)
        norm = self.manifest.normalization
        mean, std = norm if norm else (meta["mean"], meta["std"])
        return model, mean, std

    def _load_one(self, width: float) -> None:
        from slimseg_ros.engines.onnx_graph import DeployGraph

        torch = self._torch
        if match_width(width, self._model.cfg.widths) is None:
            raise SlimsegError(f"width {width:g} is not in checkpoint {self.manifest.checkpoint_path()}",
                               f"it has {list(self._model.cfg.widths)}")
        graph = DeployGraph(self._model.subnet(width), self._mean, self._std,
                            postprocess=self.manifest.postprocess).eval().to(self.device)
        if self.fp16:
            graph = graph.half()
        self._graphs[width] = graph
        if self.cuda_graphs:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.no_grad(), torch.cuda.stream(side):
                for _ in range(3):  # warm up cuDNN autotuning and allocations outside the capture
                    graph(self._static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            cuda_graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(cuda_graph):
                static_out = graph(self._static_in)
            self._captured[width] = (cuda_graph, static_out)

    def _run(self, image: np.ndarray, width: float) -> np.ndarray:
        torch = self._torch
        if self.cuda_graphs:
            cuda_graph, static_out = self._captured[width]
            self._host_in.numpy()[0] = image
            self._static_in.copy_(self._host_in, non_blocking=True)
            cuda_graph.replay()
            self._host_out.copy_(static_out, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            return self._host_out.numpy()[0].copy()
        with torch.inference_mode():
            x = torch.from_numpy(image)[None].to(self.device)
            labels = self._graphs[width](x)
            return labels[0].cpu().numpy()

    def close(self) -> None:
        self._captured.clear()
        self._graphs.clear()
        if self.cuda_graphs and not self._closed:
            self._static_in = self._host_in = self._host_out = None
            self._torch.cuda.empty_cache()
        super().close()
