"""Model backends: a batch of face clips in, P(fake) and per-frame attention out.

Every backend exposes the preprocessing contract and threshold of the artifact it runs, so
the scanner reads them from the backend and never re-declares them.

- ``TorchBackend``: a dfscan checkpoint in PyTorch; on CUDA fp16, channels_last and one CUDA
  graph per (power-of-two) batch size.
- ``OnnxBackend``: an exported ``.onnx`` in onnxruntime (TensorRT / CUDA providers on a GPU).
- ``TensorRTBackend``: an exported ``.engine`` in TensorRT.

``make_backend`` picks one for a checkpoint, an artifact or an export directory. onnxruntime
and TensorRT are imported inside the backend that needs them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import torch

from export.artifacts import (
    CHECKPOINT_FILE,
    ENGINE_FILE,
    GPU_INSTALL_HINT,
    INPUT_NAME,
    ONNX_FILE,
    ONNX_FP16_FILE,
    OUTPUT_NAMES,
    ArtifactError,
    parse_onnx_metadata,
    read_sidecar,
    verify_artifact,
)
from scanner.checkpoint import CheckpointError, CheckpointMeta, LoadedCheckpoint, load_checkpoint
from scanner.contract import Preprocessing
from scanner.model import fake_probability

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


class BackendUnavailable(Exception):
    """A backend cannot run here: a package, a GPU or an artifact it needs is missing."""


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
        logits, alpha = self._run(self.preprocess(crops))
        prob = fake_probability(logits)
        return prob.double().cpu().numpy(), alpha.double().cpu().numpy()


def _cache_dir() -> Path:
    """Where onnxruntime's TensorRT provider keeps built engines (never the working dir)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dfscan" / "ort-tensorrt"


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
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about node placement
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except (ort_state.Fail, ort_state.InvalidGraph, ort_state.InvalidProtobuf) as e:
            raise ArtifactError(f"onnxruntime cannot load {path}: {e}") from e
        self._errors = (ort_state.Fail, ort_state.InvalidArgument, ort_state.RuntimeException)
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
        opt = max(1, (self.info.max_batch + 1) // 2)
        providers: list = []
        if "TensorrtExecutionProvider" in available:
            cache = _cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            trt_options = {
                "device_id": index,
                "trt_fp16_enable": self.precision == "fp16",
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_profile_min_shapes": f"{INPUT_NAME}:1x{frame}",
                "trt_profile_opt_shapes": f"{INPUT_NAME}:{opt}x{frame}",
                "trt_profile_max_shapes": f"{INPUT_NAME}:{self.info.max_batch}x{frame}",
            }
            providers.append(("TensorrtExecutionProvider", trt_options))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        return [*providers, "CPUExecutionProvider"]  # CPU takes what a GPU provider will not

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = normalise(torch.from_numpy(np.ascontiguousarray(crops)), self.contract).numpy()
        pieces = np.split(x, range(self._chunk, len(x), self._chunk)) if self._chunk else [x]
        probs, attention = [], []
        for piece in pieces:
            try:
                p, a = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: piece})
            except self._errors as e:  # not RuntimeError subclasses; the scanner catches those
                raise RuntimeError(f"onnxruntime: {e}") from e
            probs.append(p)
            attention.append(a)
        p, a = np.concatenate(probs), np.concatenate(attention)
        return p[:, 1].astype(np.float64), a.astype(np.float64)


class TensorRTBackend:
    """Runs an exported ``.engine`` with TensorRT on the GPU that built it."""

    name = "tensorrt"

    def __init__(self, path: Path, device: torch.device) -> None:
        from export.tensorrt_engine import EngineRunner, engine_mismatch, tensorrt_missing

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
        t = torch.from_numpy(np.ascontiguousarray(crops)).to(self.torch_device, non_blocking=True)
        x = normalise(t, self.contract)
        outputs = [self.runner(piece) for piece in x.split(self.runner.max_batch)]
        probs = torch.cat([p for p, _ in outputs])[:, 1]
        attention = torch.cat([a for _, a in outputs])
        return probs.double().cpu().numpy(), attention.double().cpu().numpy()


@dataclass(frozen=True)
class Artifacts:
    """What a ``--weights`` path offers: a checkpoint and/or exported files."""

    source: Path
    checkpoint: Path | None = None
    onnx: Path | None = None  # fp32
    onnx_fp16: Path | None = None
    engine: Path | None = None


def find_artifacts(weights: Path) -> Artifacts:
    """A checkpoint, an ``.onnx``, an ``.engine``, or a directory written by ``dfscan export``."""
    weights = Path(weights)
    if weights.is_dir():

        def present(name: str) -> Path | None:
            return weights / name if (weights / name).is_file() else None

        found = Artifacts(
            weights,
            present(CHECKPOINT_FILE),
            present(ONNX_FILE),
            present(ONNX_FP16_FILE),
            present(ENGINE_FILE),
        )
        if found == Artifacts(weights):
            raise CheckpointError(
                f"{weights} holds none of {CHECKPOINT_FILE}, {ONNX_FILE}, {ONNX_FP16_FILE}, "
                f"{ENGINE_FILE}: not a directory written by `dfscan export`"
            )
        return found
    suffix = weights.suffix.lower()
    if suffix == ".onnx":
        if read_sidecar(weights).precision == "fp16":
            return Artifacts(weights, onnx_fp16=weights)
        return Artifacts(weights, onnx=weights)
    if suffix == ".engine":
        return Artifacts(weights, engine=weights)
    # Anything else is read as a checkpoint, whose loader says what is wrong with it.
    return Artifacts(weights, checkpoint=weights)


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
        wanted = {"fp16": ONNX_FP16_FILE, "fp32": ONNX_FILE}.get(precision, "ONNX file")
        raise BackendUnavailable(
            f"{found.source} has no {wanted}: write one with `dfscan export --format onnx`"
            + (" --fp16" if precision == "fp16" else "")
        )
    return OnnxBackend(path, device)


def _tensorrt(found: Artifacts, device: torch.device, precision: str) -> Backend:
    from export.tensorrt_engine import tensorrt_missing

    reason = tensorrt_missing()
    if reason is not None:
        raise BackendUnavailable(f"TensorRT cannot run: {reason}")
    if device.type != "cuda":
        raise BackendUnavailable(f"TensorRT runs on a CUDA device, not {device}")
    if found.engine is None:
        raise BackendUnavailable(
            f"{found.source} has no TensorRT engine: build one with `dfscan export --format engine`"
        )
    _check_precision(found.engine, precision)
    return TensorRTBackend(found.engine, device)


_BUILDERS = {"torch": _torch, "onnx": _onnx, "tensorrt": _tensorrt}


def make_backend(
    weights: Path,
    backend: str = "auto",
    device: torch.device | str = "auto",
    precision: str = "auto",
) -> Backend:
    """The backend for ``weights`` (checkpoint, .onnx, .engine or export directory).

    backend "auto" takes the fastest that can run here (``AUTO_ORDER_CUDA`` /
    ``AUTO_ORDER_CPU``); a named one that cannot run raises BackendUnavailable. A damaged
    checkpoint or artifact raises CheckpointError (ArtifactError) either way: it is never
    skipped in favour of another file.
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
            chosen = _BUILDERS[name](found, dev, precision)
        except BackendUnavailable as e:
            log.debug("backend auto: not %s: %s", name, e)
            reasons.append(f"{name}: {e}")
            continue
        log.info("backend auto: %s on %s", chosen.name, chosen.device)
        return chosen
    raise BackendUnavailable(f"no backend can run {weights} here; " + "; ".join(reasons))
