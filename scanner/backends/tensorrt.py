"""TensorRT backend: an exported ``.engine`` on the GPU that built it, and the runner that
executes an engine (the exporter's parity check runs engines through it too).

Written against the TensorRT 10 and 11 Python APIs: ``Runtime.deserialize_cuda_engine``,
``set_input_shape``, ``set_tensor_address`` with torch CUDA tensors as the buffers, and
``execute_async_v3`` on torch's current stream, so no other CUDA binding (pycuda,
cuda-python) is needed. An engine is specific to the TensorRT version and the GPU model that
built it; the sidecar records both and ``engine_mismatch`` says why an engine cannot load here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scanner.artifacts import INPUT_NAME, OUTPUT_NAMES, ArtifactInfo, verify_artifact
from scanner.backends.base import GPU_INSTALL_HINT, BackendUnavailable, check_device
from scanner.checkpoint import CheckpointMeta
from scanner.contract import normalise


def major_version(version: str) -> int:
    """The major of a TensorRT version string: '10.3.0' -> 10."""
    return int(version.split(".")[0])


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot run on this machine, or None when it can."""
    try:
        import tensorrt as trt
    except ImportError:
        return f"the tensorrt package is not installed; {GPU_INSTALL_HINT}"
    if major_version(trt.__version__) < 10:
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
        # a context runs with the device it was made on as the current one (cuda:1 while
        # the process's current device is cuda:0)
        with torch.cuda.device(self.device):
            return self._execute(clips)

    def _execute(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


class TensorRTBackend:
    """Runs an exported ``.engine`` with TensorRT on the GPU that built it."""

    name = "tensorrt"

    def __init__(self, path: Path, device: torch.device) -> None:
        reason = tensorrt_missing()
        if reason is not None:
            raise BackendUnavailable(f"TensorRT cannot run: {reason}")
        if device.type != "cuda":
            raise BackendUnavailable(f"TensorRT runs on a CUDA device, not {device}")
        path = Path(path)
        self.info = verify_artifact(path, "engine")
        mismatch = engine_mismatch(self.info, device)
        if mismatch is not None:
            raise BackendUnavailable(mismatch)
        self.runner = EngineRunner(path, device)
        self.precision = self.info.precision
        self.meta: CheckpointMeta = self.info.checkpoint
        self.source_sha256 = self.info.source_sha256
        self.contract = self.meta.preprocessing
        self.threshold = self.meta.threshold
        self.model_label = self.info.label
        self.torch_device = device
        self.device = f"{device}" + (" fp16" if self.precision == "fp16" else "")

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            t = torch.from_numpy(np.ascontiguousarray(crops)).to(
                self.torch_device, non_blocking=True
            )
            x = normalise(t, self.contract)
            outputs = [self.runner(piece) for piece in x.split(self.runner.max_batch)]
            probs = torch.cat([p for p, _ in outputs])[:, 1]
            attention = torch.cat([a for _, a in outputs])
            return probs.double().cpu().numpy(), attention.double().cpu().numpy()
        except RuntimeError as e:  # torch's CUDA errors, and a failed execute_async_v3
            check_device(self.torch_device, e)
            raise
