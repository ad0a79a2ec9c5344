"""TensorRT engines built from the exported ONNX, and the runner that executes them.

Written against the TensorRT 10 and 11 Python APIs: ``Builder`` + ``OnnxParser`` on a strongly
typed network + one optimisation profile over the batch axis (1 .. max_batch, opt in the
middle) -> ``build_serialized_network``; at run time ``Runtime.deserialize_cuda_engine``,
``set_input_shape``, ``set_tensor_address`` with torch CUDA tensors as the buffers, and
``execute_async_v3`` on torch's current stream, so no other CUDA binding (pycuda,
cuda-python) is needed.

Precision comes from the ONNX, not from builder flags: an fp32 engine is built from
``model.onnx``, an fp16 engine from ``model.fp16.onnx`` (fp16 weights and compute, fp32 inputs
and outputs). A strongly typed network keeps exactly the types of the graph it parses, so the
engine computes what the verified ONNX computes. TensorRT 11 removed weak typing and with it
the FP16 builder flag; TensorRT 10 offers strong typing behind a creation flag. One path
serves both.

An engine is specific to the TensorRT version and the GPU model that built it; the sidecar
records both and ``engine_mismatch`` says why an engine cannot load here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import ModuleType

import torch

from export.artifacts import (
    GPU_INSTALL_HINT,
    INPUT_NAME,
    OUTPUT_NAMES,
    ArtifactInfo,
    ExportError,
    RuntimeUnavailable,
)
from export.parity import Parity, ParityCase, compare
from scanner.contract import Preprocessing

log = logging.getLogger(__name__)


def _major(version: str) -> int:
    return int(version.split(".")[0])


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot run on this machine, or None when it can."""
    try:
        import tensorrt as trt
    except ImportError:
        return f"the tensorrt package is not installed; {GPU_INSTALL_HINT}"
    if _major(trt.__version__) < 10:
        return (
            f"TensorRT {trt.__version__} is too old (dfscan needs 10 or newer); {GPU_INSTALL_HINT}"
        )
    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible to PyTorch; {GPU_INSTALL_HINT}"
    return None


def gpu_identity(device: torch.device) -> dict[str, str]:
    """Name and compute capability of a CUDA device, as recorded in engine sidecars."""
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def engine_mismatch(info: ArtifactInfo, device: torch.device) -> str | None:
    """Why the engine ``info`` describes cannot run on ``device`` here, or None."""
    import tensorrt as trt

    here = {"version": trt.__version__, **gpu_identity(device)}
    wrong = [
        f"{key} {info.tensorrt.get(key)!r} (here: {value!r})"
        for key, value in here.items()
        if info.tensorrt.get(key) != value
    ]
    if not wrong:
        return None
    return (
        f"{info.file} was built for another TensorRT or GPU: "
        + ", ".join(wrong)
        + "; engines only run where they were built. Build one here with "
        "`dfscan export --format engine`, or use the ONNX file (--backend onnx)"
    )


def optimisation_profile(max_batch: int) -> tuple[int, int, int]:
    """(min, opt, max) batch of the engine's profile; opt in the middle, where scans run."""
    return 1, max(1, (max_batch + 1) // 2), max_batch


def strongly_typed_network(trt: ModuleType, builder: object) -> object:
    """An empty strongly typed network: the only kind in TensorRT >= 11, a flag in 10."""
    if _major(trt.__version__) >= 11:
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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(serialized)
    tmp.replace(path)
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


class EngineRunner:
    """One deserialized engine and its execution context on a CUDA device."""

    def __init__(self, path: Path, device: torch.device) -> None:
        import tensorrt as trt

        self.device = device
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(device):
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
            if self.engine is None:
                raise RuntimeError(f"TensorRT {trt.__version__} cannot deserialize {path}")
            self.context = self.engine.create_execution_context()
        for name in (INPUT_NAME, *OUTPUT_NAMES):
            if self.engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise RuntimeError(f"{path}: tensor {name!r} is not float32")
        self.max_batch = int(self.engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        self.runtime = f"TensorRT {trt.__version__} {torch.cuda.get_device_name(device)}"

    def __call__(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clips (B, T, 3, S, S) float32 on the device, B <= max_batch.

        Returns (probabilities (B, 2), attention (B, T)) float32 on the device, ordered on
        torch's current stream (reading them, e.g. ``.cpu()``, waits for the engine).
        """
        if clips.shape[0] > self.max_batch:
            raise ValueError(f"batch {clips.shape[0]} > the engine's max batch {self.max_batch}")
        clips = clips.to(self.device, torch.float32).contiguous()
        b, t = clips.shape[:2]
        probs = torch.empty((b, 2), dtype=torch.float32, device=self.device)
        attention = torch.empty((b, t), dtype=torch.float32, device=self.device)
        ctx = self.context
        if not ctx.set_input_shape(INPUT_NAME, tuple(clips.shape)):
            raise RuntimeError(f"TensorRT rejected input shape {tuple(clips.shape)}")
        for name, tensor in zip((INPUT_NAME, *OUTPUT_NAMES), (clips, probs, attention)):
            ctx.set_tensor_address(name, tensor.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed (see its log)")
        return probs, attention


def verify_engine(
    path: Path, cases: tuple[ParityCase, ...], tolerance: float, device: torch.device
) -> Parity:
    """Run the engine on the cases; ExportError past ``tolerance``."""
    start = time.perf_counter()
    runner = EngineRunner(path, device)
    outputs = []
    for case in cases:
        probs, attention = runner(torch.from_numpy(case.clips).to(device))
        outputs.append((probs.cpu().numpy(), attention.cpu().numpy()))
    parity = compare(cases, outputs, runner.runtime, tolerance, path.name)
    log.info("verify_engine: %s checked in %.1f s", path.name, time.perf_counter() - start)
    return parity
