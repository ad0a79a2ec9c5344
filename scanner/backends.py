"""Model backends: a batch of face clips in, P(fake) and per-frame attention out.

Every backend exposes the preprocessing contract and threshold of the artifact it runs, so
the scanner reads them from the backend and never re-declares them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from scanner.checkpoint import LoadedCheckpoint, load_checkpoint
from scanner.contract import Preprocessing
from training.model import fake_probability

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str  # reported in the CSV `backend` column
    device: str  # reported in the CSV `device` column
    contract: Preprocessing
    threshold: float
    model_label: str  # reported in the CSV `model` column

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """crops: (B, T, S, S, 3) uint8 RGB -> (P(fake) (B,), attention (B, T)) float64."""
        ...


def resolve_device(spec: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a usable torch.device (ValueError if not)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


def normalise(crops: torch.Tensor, contract: Preprocessing) -> torch.Tensor:
    """(B, T, S, S, 3) uint8 -> (B, T, 3, S, S) float32 normalised by the contract's mean/std."""
    x = crops.permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean = torch.tensor(contract.mean, device=x.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(contract.std, device=x.device).view(1, 1, 3, 1, 1)
    return (x - mean) / std


class TorchBackend:
    """Runs a dfscan checkpoint with PyTorch; fp16 and channels_last on CUDA."""

    name = "torch"

    def __init__(
        self, checkpoint: LoadedCheckpoint, device: torch.device, half: bool | None = None
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

    @classmethod
    def from_path(cls, path: Path, device: torch.device, half: bool | None = None) -> TorchBackend:
        return cls(load_checkpoint(path), device, half)

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """(B, T, S, S, 3) uint8 -> model input (B, T, 3, S, S) on the backend's device."""
        t = torch.from_numpy(np.ascontiguousarray(crops)).to(self.torch_device, non_blocking=True)
        x = normalise(t, self.contract)
        return x.half() if self.half else x

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, alpha = self.model(self.preprocess(crops))
        prob = fake_probability(logits)
        return prob.double().cpu().numpy(), alpha.double().cpu().numpy()
