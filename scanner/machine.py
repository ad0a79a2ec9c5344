"""The machine in words, as benchmark rows and model cards name it."""

from __future__ import annotations

import os
import platform

import torch


def hardware(device: str | torch.device | None = None) -> str:
    """The machine in words: CPU model and core count, after the name of the GPU that ran
    (``device``: ``cuda:N`` names GPU N, ``cuda`` the current one, ``cpu`` none; a backend's
    device text such as ``cuda:1 fp16 (...)`` too); without a device, GPU 0 where CUDA is."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores"
    gpu = _gpu_index(device) if torch.cuda.is_available() else None
    if gpu is not None:
        desc = f"{torch.cuda.get_device_name(gpu)}; {desc}"
    return desc


def _gpu_index(device: str | torch.device | None) -> int | None:
    """The CUDA device ``device`` names (None: none, or GPU 0 when no device is given)."""
    if device is None:
        return 0
    text = str(device).split()[0]
    if not text.startswith("cuda"):
        return None
    _, _, index = text.partition(":")
    return int(index) if index.isdigit() else torch.cuda.current_device()
