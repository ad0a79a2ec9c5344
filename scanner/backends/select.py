"""Which backend runs a ``--weights`` path: ``make_backend`` and the order ``auto`` tries."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from scanner.artifacts import (
    ENGINE_FILE,
    ONNX_FILE,
    ONNX_FP16_FILE,
    Artifacts,
    find_artifacts,
    read_sidecar,
    unverified_reason,
)
from scanner.backends.base import Backend, BackendUnavailable, resolve_device
from scanner.backends.onnx import OnnxBackend
from scanner.backends.tensorrt import TensorRTBackend, tensorrt_missing
from scanner.backends.torch import TorchBackend

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16")

# `auto` on a GPU: TensorRT engine > ONNX on onnxruntime's TensorRT/CUDA provider > PyTorch
# (fp16 + CUDA graphs), fastest first.
AUTO_ORDER_CUDA = ("tensorrt", "onnx", "torch")
# `auto` on the CPU: onnxruntime beats PyTorch eager. Measured 2026-11-27 on the 2-core dev
# machine, with a training run busy in the background, for build_detector(DetectorConfig(
# backbone="tf_efficientnet_lite0")) (random weights), one (B, 15, 3, 224, 224) call, median of
# 3 after a warm-up, two rounds; torch 2.14.1 eager fp32 vs onnxruntime 1.32.0 CPU provider on
# the graph export_onnx writes:
#   default threads  batch 1: torch 3640 / 3688 ms, onnxruntime 478 / 438 ms
#                    batch 8: torch 18.7 / 17.7 s,  onnxruntime 2.47 / 2.39 s
#   one thread each  batch 1: torch 512 / 476 ms,   onnxruntime 300 / 238 ms
# (Contention with the training run inflates torch's default-thread figures; with one thread
# each, free of it, onnxruntime is still about 2x faster.)
AUTO_ORDER_CPU = ("onnx", "torch")


def _check_precision(path: Path, precision: str) -> None:
    have = read_sidecar(path).precision
    if precision != "auto" and have != precision:
        raise BackendUnavailable(f"{path} is {have}, but --precision {precision} was asked for")


def _torch(found: Artifacts, device: torch.device, precision: str) -> Backend:
    if found.checkpoint is None:
        raise BackendUnavailable(
            f"the torch backend needs a dfscan checkpoint (.safetensors); {found.source} has none"
        )
    half = None if precision == "auto" else precision == "fp16"
    return TorchBackend.from_path(found.checkpoint, device, half)


def _onnx(found: Artifacts, device: torch.device, precision: str) -> Backend:
    if precision == "fp16":
        order = [found.onnx_fp16]
    elif precision == "fp32":
        order = [found.onnx]
    else:  # fp16 where a GPU runs it natively; the CPU casts fp16 back and forth
        gpu = device.type == "cuda"
        order = [found.onnx_fp16, found.onnx] if gpu else [found.onnx, found.onnx_fp16]
    path = next((p for p in order if p is not None), None)
    if path is None:
        names = {"fp16": [ONNX_FP16_FILE], "fp32": [ONNX_FILE]}.get(
            precision, [ONNX_FP16_FILE, ONNX_FILE]
        )
        unverified = [p for p in map(found.unverified_file, names) if p is not None]
        if unverified:  # exported, but it failed its check: say so, not "export one"
            raise BackendUnavailable("; ".join(map(unverified_reason, unverified)))
        wanted = {"fp16": ONNX_FP16_FILE, "fp32": ONNX_FILE}.get(precision, "ONNX file")
        raise BackendUnavailable(
            f"{found.source} has no {wanted}: write one with `dfscan export --format onnx`"
            + (" --fp16" if precision == "fp16" else "")
        )
    return OnnxBackend(path, device)


def _tensorrt(found: Artifacts, device: torch.device, precision: str) -> Backend:
    reason = tensorrt_missing()
    if reason is not None:
        raise BackendUnavailable(f"TensorRT cannot run: {reason}")
    if device.type != "cuda":
        raise BackendUnavailable(f"TensorRT runs on a CUDA device, not {device}")
    if found.engine is None:
        unverified = found.unverified_file(ENGINE_FILE)
        if unverified is not None:
            raise BackendUnavailable(unverified_reason(unverified))
        raise BackendUnavailable(
            f"{found.source} has no TensorRT engine: build one with `dfscan export --format engine`"
        )
    _check_precision(found.engine, precision)
    return TensorRTBackend(found.engine, device)


_BUILDERS = {"torch": _torch, "onnx": _onnx, "tensorrt": _tensorrt}


def _onnx_cached(found: Artifacts, device: torch.device, precision: str) -> Backend:
    """``auto`` on the CPU for a checkpoint with no ONNX file beside it: its fp32 graph,
    exported once into the user's cache (``scanner.onnx_writer.cached_onnx``)."""
    if found.checkpoint is None or precision == "fp16":
        raise BackendUnavailable(f"{found.source} has no checkpoint to export to ONNX")
    from scanner.onnx_writer import ExportError, cached_onnx

    try:
        path = cached_onnx(found.checkpoint)
    except (ExportError, OSError) as e:
        raise BackendUnavailable(f"cannot export {found.checkpoint} to ONNX here: {e}") from e
    return OnnxBackend(path, device)


def make_backend(
    weights: Path,
    backend: str = "auto",
    device: torch.device | str = "auto",
    precision: str = "auto",
) -> Backend:
    """The backend for ``weights`` (checkpoint, .onnx, .engine or export directory).

    backend "auto" takes the fastest that can run here (``AUTO_ORDER_CUDA`` /
    ``AUTO_ORDER_CPU``); on the CPU, a checkpoint without an ONNX file beside it runs as its
    fp32 graph, exported once into the user's cache (``scanner.onnx_writer.cached_onnx``;
    PyTorch if that fails). A named one that cannot run raises BackendUnavailable. A damaged
    checkpoint or artifact raises CheckpointError (ArtifactError) either way: it is never
    skipped in favour of another file. An exported file in a directory without its sidecar
    (one that failed its check at export) is not a candidate: ``auto`` passes over it with a
    warning, a named backend or precision that only it could serve raises BackendUnavailable
    saying so.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = resolve_device(device) if isinstance(device, str) else device
    if precision == "fp16" and dev.type != "cuda":
        raise ValueError("fp16 needs a CUDA device")
    found = find_artifacts(weights)
    if backend != "auto":
        return _BUILDERS[backend](found, dev, precision)
    reasons = []
    for name in AUTO_ORDER_CUDA if dev.type == "cuda" else AUTO_ORDER_CPU:
        try:
            try:
                chosen = _BUILDERS[name](found, dev, precision)
            except BackendUnavailable:
                # A checkpoint alone on the CPU: onnxruntime on its graph, exported once.
                if name != "onnx" or dev.type != "cpu" or found.onnx or found.onnx_fp16:
                    raise
                chosen = _onnx_cached(found, dev, precision)
        except BackendUnavailable as e:
            log.debug("backend auto: not %s: %s", name, e)
            reasons.append(f"{name}: {e}")
            continue
        log.info("backend auto: %s on %s", chosen.name, chosen.device)
        return chosen
    raise BackendUnavailable(f"no backend can run {weights} here; " + "; ".join(reasons))
