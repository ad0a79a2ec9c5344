"""onnxruntime backend: an exported ``.onnx``, on the CPU or onnxruntime's GPU providers."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from scanner.artifacts import (
    INPUT_NAME,
    OUTPUT_NAMES,
    ArtifactError,
    parse_onnx_metadata,
    verify_artifact,
)
from scanner.backends.base import (
    GPU_INSTALL_HINT,
    BackendUnavailable,
    DeviceFailure,
    optimisation_profile,
)
from scanner.checkpoint import CheckpointMeta
from scanner.contract import normalise_lookup, normalise_table
from scanner.files import cache_root


def onnx_session(path: Path, providers: list):  # noqa: ANN201 - onnxruntime is optional
    """An onnxruntime InferenceSession of ``path`` on ``providers``; logs errors only (its
    warnings are about node placement). The one place dfscan opens a session: the backend
    and the exporter's parity check alike."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if providers == ["CPUExecutionProvider"]:
        # No busy-waiting between parallel sections: the scan's worker processes need the
        # cores. On the 2-core dev machine this also ran the shipped model alone faster
        # (163 against 190 ms a clip, 300 against 327 CPU-ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=providers)


def _cache_dir() -> Path:
    """Where onnxruntime's TensorRT provider keeps built engines (never the working dir)."""
    return cache_root() / "ort-tensorrt"


# onnxruntime's errors of opening a session for a file it can read but not run here: an
# operator its provider lacks (an fp16 graph on the CPU), a provider failing to build
# (TensorRT), a device gone; the automatic choice then moves on to the next backend
_CANNOT_RUN = (
    "NotImplemented",
    "EPFail",
    "EngineError",
    "DeviceReset",
    "RuntimeException",
    "ModelRequiresCompilation",
)


def _ort_errors(ort_state: object, *names: str) -> tuple[type[BaseException], ...]:
    """onnxruntime's exception classes of these names that this version has."""
    return tuple(getattr(ort_state, n) for n in names if hasattr(ort_state, n))


class OnnxBackend:
    """Runs an exported ``.onnx`` in onnxruntime.

    On a CUDA device it asks for the TensorRT and CUDA providers (onnxruntime-gpu); on the
    CPU for the CPU provider. The contract and threshold come from the file's own
    ``metadata_props``, which must agree with its sidecar; the file must match the sha256 in
    the sidecar.
    """

    name = "onnx"

    def __init__(self, path: Path, device: torch.device) -> None:
        try:
            import onnxruntime as ort
            from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
        except ImportError as e:
            raise BackendUnavailable(
                "onnxruntime is not installed: pip install onnxruntime (CPU), or "
                f"{GPU_INSTALL_HINT}"
            ) from e
        path = Path(path)
        self.info = verify_artifact(path, "onnx")
        self.precision = self.info.precision
        providers = self._providers(ort, device)
        try:
            self.session = onnx_session(path, providers)
        except (ort_state.Fail, ort_state.InvalidGraph, ort_state.InvalidProtobuf) as e:
            raise ArtifactError(f"onnxruntime cannot load {path}: {e}") from e
        except _ort_errors(ort_state, *_CANNOT_RUN) as e:  # a sound file this machine cannot run
            raise BackendUnavailable(
                f"onnxruntime cannot run {path.name} on {device}: {type(e).__name__}: {e}"
            ) from e
        # onnxruntime's errors of a run, none a RuntimeError: those of one call (an error
        # row for its video), and those of the device as a whole (the scan stops); as
        # attributes where this version has them
        self._errors = _ort_errors(ort_state, "Fail", "InvalidArgument", "RuntimeException")
        self._fatal = _ort_errors(ort_state, "DeviceReset", "EPFail", "EngineError")
        props = self.session.get_modelmeta().custom_metadata_map
        embedded = parse_onnx_metadata(props, path)
        if (embedded.checkpoint, embedded.source_sha256, embedded.precision) != (
            self.info.checkpoint,
            self.info.source_sha256,
            self.info.precision,
        ):
            raise ArtifactError(f"{path}: its metadata_props and its sidecar disagree")
        self.meta: CheckpointMeta = embedded.checkpoint
        self.source_sha256 = embedded.source_sha256
        self.contract = self.meta.preprocessing
        self._table = normalise_table(self.contract)
        self.threshold = self.meta.threshold
        self.model_label = f"{self.meta.name}@{self.source_sha256[:12]}"
        self.provider = self.session.get_providers()[0]
        if device.type == "cuda" and self.provider == "CPUExecutionProvider":
            raise BackendUnavailable(
                f"onnxruntime could not start a GPU provider for {path.name} (CUDA or cuDNN "
                "libraries missing?); use --device cpu, or --backend torch"
            )
        on_gpu = self.provider != "CPUExecutionProvider"
        self.torch_device = device if on_gpu else torch.device("cpu")
        suffix = " fp16" if self.precision == "fp16" else ""
        if on_gpu:
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.device = f"cuda:{index}{suffix} ({self.provider})"
        else:
            self.device = f"cpu{suffix}"
        # TensorRT's profile stops at the exported max batch; bigger batches go in pieces.
        self._chunk = self.info.max_batch if self.provider == "TensorrtExecutionProvider" else 0

    def _providers(self, ort: ModuleType, device: torch.device) -> list:
        if device.type != "cuda":
            return ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        if not {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(available):
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} here has no GPU provider (it has "
                f"{', '.join(available)}); {GPU_INSTALL_HINT}; or use --device cpu"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        c = self.info.checkpoint.preprocessing
        frame = f"{c.num_frames}x3x{c.crop_size}x{c.crop_size}"
        low, opt, high = optimisation_profile(self.info.max_batch)
        providers: list = []
        if "TensorrtExecutionProvider" in available:
            # one folder per artifact: onnxruntime keys a cached engine by the graph's file
            # and tensor names, not its weights, and every export is a model.onnx of the
            # same names, so another checkpoint's engine would be taken for this one's
            cache = _cache_dir() / self.info.sha256[:16]
            cache.mkdir(parents=True, exist_ok=True)
            trt_options = {
                "device_id": index,
                "trt_fp16_enable": self.precision == "fp16",
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_profile_min_shapes": f"{INPUT_NAME}:{low}x{frame}",
                "trt_profile_opt_shapes": f"{INPUT_NAME}:{opt}x{frame}",
                "trt_profile_max_shapes": f"{INPUT_NAME}:{high}x{frame}",
            }
            providers.append(("TensorrtExecutionProvider", trt_options))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        return [*providers, "CPUExecutionProvider"]  # CPU takes what a GPU provider will not

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = normalise_lookup(crops, self._table)
        pieces = np.split(x, range(self._chunk, len(x), self._chunk)) if self._chunk else [x]
        probs, attention = [], []
        for piece in pieces:
            try:
                p, a = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: piece})
            except self._errors as e:  # not RuntimeError subclasses; the scanner catches those
                raise RuntimeError(f"onnxruntime: {e}") from e
            except self._fatal as e:
                raise DeviceFailure(f"onnxruntime on {self.device}: {e}") from e
            probs.append(p)
            attention.append(a)
        p, a = np.concatenate(probs), np.concatenate(attention)
        return p[:, 1].astype(np.float64), a.astype(np.float64)
