"""The machine in words, as benchmark rows and model cards name it."""

from __future__ import annotations

import os
import platform

import torch


def hardware() -> str:
    """The machine in words: GPU name if CUDA is present, CPU model and core count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        desc = f"{torch.cuda.get_device_name(0)}; {desc}"
    return desc
