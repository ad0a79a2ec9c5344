"""What every backend is: the interface the scanner calls, its error, and device parsing."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from scanner.contract import Preprocessing

GPU_INSTALL_HINT = (
    'pip install "dfscan[gpu]" (tensorrt>=10 and onnxruntime-gpu), on a machine with an '
    "NVIDIA GPU and a CUDA build of PyTorch"
)


class BackendUnavailable(Exception):
    """A backend cannot run here: a package, a GPU or an artifact it needs is missing."""


class DeviceFailure(Exception):
    """The device running the model failed as a whole (a GPU reset, a provider that stopped):
    no later call can succeed, so the scan stops here rather than give every video left an
    error row that --resume would then skip; its finished rows stay and --resume continues."""


class Backend(Protocol):
    name: str  # reported in the CSV `backend` column
    device: str  # reported in the CSV `device` column
    contract: Preprocessing
    threshold: float
    model_label: str  # reported in the CSV `model` column

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """crops: (B, T, S, S, 3) uint8 RGB -> (P(fake) (B,), attention (B, T)) float64."""
        ...


def device_works(device: torch.device) -> bool:
    """Whether ``device`` still runs a tiny computation to the end (a CUDA error such as an
    illegal memory access stays with the device's context: every later call fails too)."""
    try:
        ok = torch.ones(1, device=device).add_(1).item() == 2.0
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return ok
    except RuntimeError:
        return False


def check_device(device: torch.device, error: BaseException) -> None:
    """After ``error`` from the model on ``device``: raise DeviceFailure if the device no
    longer works (the scan stops), else return (the caller re-raises; that batch failed)."""
    if not device_works(device):
        raise DeviceFailure(f"{device} stopped working: {error}") from error


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


def optimisation_profile(max_batch: int) -> tuple[int, int, int]:
    """(min, opt, max) batch of a TensorRT profile, built by export or by onnxruntime's
    TensorRT provider; opt in the middle, where scans run."""
    return 1, max(1, (max_batch + 1) // 2), max_batch
