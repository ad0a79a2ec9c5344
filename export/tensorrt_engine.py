"""TensorRT engines built from the exported ONNX; the runner that executes them is the
scanner's (``scanner.backends.tensorrt``).

Written against the TensorRT 10 and 11 Python APIs: ``Builder`` + ``OnnxParser`` on a strongly
typed network + one optimisation profile over the batch axis (1 .. max_batch, opt in the
middle) -> ``build_serialized_network``.

Precision comes from the ONNX, not from builder flags: an fp32 engine is built from
``model.onnx``, an fp16 engine from ``model.fp16.onnx`` (fp16 weights and compute, fp32 inputs
and outputs). A strongly typed network keeps exactly the types of the graph it parses, so the
engine computes what the verified ONNX computes. TensorRT 11 removed weak typing and with it
the FP16 builder flag; TensorRT 10 offers strong typing behind a creation flag. One path
serves both.

An engine is specific to the TensorRT version and the GPU model that built it; the sidecar
records both and ``scanner.backends.tensorrt.engine_mismatch`` says why an engine cannot load
here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import ModuleType

import torch

from scanner.artifact_writer import ExportError, RuntimeUnavailable
from scanner.artifacts import INPUT_NAME
from scanner.backends.base import optimisation_profile
from scanner.backends.tensorrt import EngineRunner, gpu_identity, major_version, tensorrt_missing
from scanner.contract import Preprocessing
from scanner.files import replacing
from scanner.parity import Parity, ParityCase, compare

log = logging.getLogger(__name__)


def strongly_typed_network(trt: ModuleType, builder: object) -> object:
    """An empty strongly typed network: the only kind in TensorRT >= 11, a flag in 10."""
    if major_version(trt.__version__) >= 11:
        return builder.create_network(0)
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))


def build_engine(
    onnx_path: Path,
    path: Path,
    contract: Preprocessing,
    *,
    precision: str,
    max_batch: int,
    device: torch.device,
) -> dict:
    """Build and serialize an engine from ``onnx_path``; returns the sidecar's tensorrt record.

    ``onnx_path`` carries the precision in its own types (``model.onnx`` for "fp32",
    ``model.fp16.onnx`` for "fp16"); the strongly typed network keeps them. An fp32 engine
    has TF32 switched off too, so it keeps the fp32 tolerance.
    """
    reason = tensorrt_missing()
    if reason is not None:
        raise RuntimeUnavailable(f"cannot build a TensorRT engine: {reason}")
    import tensorrt as trt

    start = time.perf_counter()
    low, opt, high = optimisation_profile(max_batch)
    frame = (contract.num_frames, 3, contract.crop_size, contract.crop_size)
    logger = trt.Logger(trt.Logger.WARNING)
    with torch.cuda.device(device):
        builder = trt.Builder(logger)
        network = strongly_typed_network(trt, builder)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (low, *frame), (opt, *frame), (high, *frame))
        config.add_optimization_profile(profile)
        if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path} (see its log)")
    with replacing(path) as tmp:
        tmp.write_bytes(serialized)
    log.info(
        "build_engine: wrote %s (%.1f MB, %s from %s, batch %d..%d opt %d) in %.1f s",
        path,
        path.stat().st_size / 1e6,
        precision,
        onnx_path.name,
        low,
        high,
        opt,
        time.perf_counter() - start,
    )
    return {
        "version": trt.__version__,
        **gpu_identity(device),
        "profile": {"min": low, "opt": opt, "max": high},
        "network": "strongly typed",
        "built_from": onnx_path.name,
    }


def verify_engine(
    path: Path, cases: tuple[ParityCase, ...], tolerance: float, device: torch.device
) -> Parity:
    """Run the engine on the cases; ExportError past ``tolerance``."""
    start = time.perf_counter()
    try:
        runner = EngineRunner(path, device)
        outputs = []
        for case in cases:
            probs, attention = runner(torch.from_numpy(case.clips).to(device))
            outputs.append((probs.cpu().numpy(), attention.cpu().numpy()))
    except RuntimeError as e:  # TensorRT cannot load or run it: the export failed
        raise ExportError(f"TensorRT cannot run {path.name}: {e}") from e
    parity = compare(cases, outputs, runner.runtime, tolerance, path.name)
    log.info("verify_engine: %s checked in %.1f s", path.name, time.perf_counter() - start)
    return parity
