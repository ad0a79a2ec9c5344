"""PyTorch backend: a dfscan checkpoint; on CUDA fp16, channels_last and CUDA graphs."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scanner.backends.base import check_device
from scanner.checkpoint import LoadedCheckpoint, load_checkpoint
from scanner.contract import normalise
from scanner.model import fake_probability

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Graph:
    """A captured CUDA graph and the static tensors it reads and writes."""

    graph: torch.cuda.CUDAGraph
    clips: torch.Tensor  # (N, T, 3, S, S) input buffer
    logits: torch.Tensor  # (N, 2)
    alpha: torch.Tensor  # (N, T)


class TorchBackend:
    """Runs a dfscan checkpoint with PyTorch; on CUDA fp16, channels_last and CUDA graphs.

    Small batches are bound by kernel-launch overhead on a GPU (one B5 clip: 12.6 ms eager,
    4.7 ms replayed from a graph on an H100), so each batch size is captured once and
    replayed; sizes are rounded up to a power of two and partial batches padded, which
    bounds the number of graphs. Capture failing falls back to eager, with a warning.
    """

    name = "torch"

    def __init__(
        self,
        checkpoint: LoadedCheckpoint,
        device: torch.device,
        half: bool | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.contract = checkpoint.meta.preprocessing
        self.threshold = checkpoint.meta.threshold
        self.model_label = checkpoint.label
        self.half = device.type == "cuda" if half is None else half
        if self.half and device.type != "cuda":
            raise ValueError("fp16 inference needs a CUDA device")
        self.torch_device = device
        self.device = str(device) + (" fp16" if self.half else "")
        model = checkpoint.model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model.half() if self.half else model
        self.model.eval()
        self.use_graphs = cuda_graphs and device.type == "cuda"
        self._graphs: dict[int, _Graph] = {}

    @classmethod
    def from_path(cls, path: Path, device: torch.device, half: bool | None = None) -> TorchBackend:
        return cls(load_checkpoint(path), device, half)

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """(B, T, S, S, 3) uint8 -> model input (B, T, 3, S, S) on the backend's device."""
        t = torch.from_numpy(np.ascontiguousarray(crops)).to(self.torch_device, non_blocking=True)
        x = normalise(t, self.contract)
        return x.half() if self.half else x

    def _capture(self, like: torch.Tensor, size: int) -> _Graph | None:
        """Capture the model on a (size, T, 3, S, S) buffer shaped like ``like``."""
        dev = self.torch_device
        try:
            static = torch.zeros((size, *like.shape[1:]), dtype=like.dtype, device=dev)
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            # Warm up outside the graph: cuDNN picks its kernels and the allocator its blocks.
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.model(static)
            torch.cuda.current_stream(dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the scan's face-detection threads keep launching CUDA work while
            # this thread captures; the default ("global") mode would make their calls fail.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                logits, alpha = self.model(static)
        except RuntimeError as e:
            log.warning("CUDA graph capture failed for batch %d (%s); running eagerly", size, e)
            self.use_graphs = False
            return None
        log.info("captured a CUDA graph for batch %d on %s", size, self.device)
        captured = self._graphs[size] = _Graph(graph, static, logits, alpha)
        return captured

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, 3, S, S) on the device -> (logits (B, 2), alpha (B, T))."""
        if not self.use_graphs:
            return self.model(x)
        b = x.shape[0]
        size = 1 << (b - 1).bit_length()
        captured = self._graphs.get(size) or self._capture(x, size)
        if captured is None:
            return self.model(x)
        captured.clips[:b].copy_(x)
        if b < size:
            captured.clips[b:].zero_()  # padding rows: finite inputs, outputs dropped
        captured.graph.replay()
        # Views of the static outputs: the caller copies them off before the next replay.
        return captured.logits[:b], captured.alpha[:b]

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # on CUDA the backend's device is the current one: a graph is captured on the
        # current device's side stream (cuda:1 captured on cuda:0's stream recorded nothing)
        on = torch.cuda.device(self.torch_device) if self.use_graphs else contextlib.nullcontext()
        try:
            with on:
                logits, alpha = self._run(self.preprocess(crops))
            prob = fake_probability(logits)
            return prob.double().cpu().numpy(), alpha.double().cpu().numpy()
        except RuntimeError as e:  # torch's CUDA errors (AcceleratorError, cuBLAS, cuDNN)
            check_device(self.torch_device, e)
            raise
