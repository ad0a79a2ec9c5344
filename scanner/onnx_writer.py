"""The plain fp32 ONNX writer: the detector traced to one graph with its metadata, and its
parity check through onnxruntime. ``dfscan export`` (``export.pipeline``) writes its
``model.onnx`` with it; the scanner uses it for ``cached_onnx``: on the CPU, ``--backend
auto`` given a checkpoint with no ONNX file beside it exports the graph once into the user's
cache, keyed by the checkpoint file's sha256 and the graph's version, and runs that through
onnxruntime (about twice as fast as PyTorch there). The contract, threshold and name then
come from the artifact's own metadata and sidecar, as for any export.

The detector as one ONNX graph: backbone per frame and the attention ConvLSTM head.

One graph for the whole detector, not a backbone graph plus a head graph: a batch is one
session (or TensorRT engine) call, the (B*T, C, h, w) feature maps never make a round trip
through the host between backbone and head, and TensorRT can fuse and plan memory across the
boundary. The recurrence in ``scanner/model.py`` is a Python loop over the fixed frame count,
so tracing unrolls it into plain convolutions; only the batch axis is dynamic.

Exporter: the classic TorchScript tracer, ``torch.onnx.export(..., dynamo=False)``. The dynamo
exporter needs ``onnxscript``, which dfscan does not depend on, and tracing is exactly what a
fixed-length unrolled loop wants. Opset and tensor names are in ``scanner.artifacts``.

fp16 (``model.fp16.onnx``) is converted from this graph by ``export.onnx_export``.
"""

from __future__ import annotations

import copy
import io
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from scanner.artifact_writer import (
    TOLERANCE,
    ExportError,
    RuntimeUnavailable,
    make_info,
    onnx_metadata,
    write_sidecar,
)
from scanner.artifacts import (
    BATCH_AXIS,
    INPUT_NAME,
    ONNX_FILE,
    OPSET,
    OUTPUT_NAMES,
    ArtifactError,
    ArtifactInfo,
    verify_artifact,
)
from scanner.backends.onnx import onnx_session
from scanner.checkpoint import LoadedCheckpoint, load_checkpoint
from scanner.files import cache_root, file_sha256, replacing, replacing_folder
from scanner.model import Detector
from scanner.parity import Parity, ParityCase, compare, parity_cases

log = logging.getLogger(__name__)

TRACE_BATCH = 2  # any batch traces the same graph; parity runs other sizes to prove it


class ExportableDetector(nn.Module):
    """The detector's own forward with a softmax on the logits, for export.

    clips (B, T, 3, S, S) float32 -> (probabilities (B, 2), attention (B, T)). The model
    reshapes by the input's batch, so the traced graph keeps B symbolic.
    """

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, alpha = self.detector(clips)
        return torch.softmax(logits, dim=-1), alpha


class FixedPadConv(nn.Module):
    """A timm ``Conv2dSame`` (TensorFlow's "same" padding, computed from the input's size at
    every call) for one input size: the padding is a constant. Traced, the dynamic version
    is a Shape -> arithmetic -> Pad chain that onnxruntime can neither fold into the
    convolution nor keep in its blocked (NCHWc) layout, so every one cost a pad and two
    layout reorders of the whole activation."""

    def __init__(self, conv: nn.Conv2d, size: tuple[int, int]) -> None:
        from timm.layers import get_same_padding

        super().__init__()
        self.conv = conv
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        ph = get_same_padding(size[0], kh, sh, dh)
        pw = get_same_padding(size[1], kw, sw, dw)
        self.pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # timm's pad_same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(F.pad(x, self.pads), c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def fixed_padding(detector: Detector, crop_size: int) -> Detector:
    """A copy of ``detector`` whose backbone's ``Conv2dSame`` layers pad by constants for
    ``crop_size`` frames (``FixedPadConv``): the same outputs at that size, a graph that
    onnxruntime fuses. The detector itself is left as it is."""
    # timm is imported on export only: finding a graph already cached (``cached_onnx``, each
    # scan through onnxruntime) does without it
    from timm.layers import Conv2dSame

    detector = copy.deepcopy(detector)
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor]], None]:
        def hook(_: nn.Module, args: tuple[torch.Tensor]) -> None:
            sizes[name] = (args[0].shape[-2], args[0].shape[-1])

        return hook

    hooks = [
        m.register_forward_pre_hook(record(name))
        for name, m in detector.backbone.named_modules()
        if isinstance(m, Conv2dSame)
    ]
    try:
        with torch.no_grad():
            detector.backbone.forward_features(torch.zeros(1, 3, crop_size, crop_size))
    finally:
        for hook in hooks:
            hook.remove()
    for name, size in sizes.items():
        parent, _, leaf = name.rpartition(".")
        owner = detector.backbone.get_submodule(parent) if parent else detector.backbone
        setattr(owner, leaf, FixedPadConv(getattr(owner, leaf), size))
    return detector


def drop_absent_pad_values(model: onnx.ModelProto) -> None:
    """Remove the empty trailing input ("" for no ``constant_value``) that the tracer gives
    every Pad. onnxruntime folds a zero Pad into the convolution after it only when each
    input it has is a constant, and counts "" as one that is not; without it the
    ``FixedPadConv`` pads are folded and the backbone stays in the blocked layout."""
    for node in model.graph.node:
        if node.op_type == "Pad":
            while node.input and not node.input[-1]:
                node.input.pop()


def log_written(step: str, path: Path, start: float) -> None:
    size_mb = path.stat().st_size / 1e6
    log.info("%s: wrote %s (%.1f MB) in %.1f s", step, path, size_mb, time.perf_counter() - start)


def save_onnx(model: onnx.ModelProto, path: Path, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    model.doc_string = "dfscan detector; metadata in metadata_props['dfscan']"
    onnx.checker.check_model(model)
    with replacing(path) as tmp:
        onnx.save(model, str(tmp))


def trace_onnx(detector: Detector, num_frames: int, crop_size: int) -> onnx.ModelProto:
    """The detector (fp32, CPU) traced to one graph for ``num_frames`` frames of ``crop_size``
    pixels, batch dynamic, with constant padding (``fixed_padding``, ``drop_absent_pad_values``).
    Raises ExportError when the tracer fails."""
    wrapper = ExportableDetector(fixed_padding(detector, crop_size)).eval()
    example = torch.zeros(TRACE_BATCH, num_frames, 3, crop_size, crop_size)
    buf = io.BytesIO()
    axes = {name: {0: BATCH_AXIS} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo (see module docstring).
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.onnx")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            # Detector.forward checks the fixed frame count in Python; in the graph T is a
            # constant by design (only the batch axis is dynamic).
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                wrapper,
                (example,),
                buf,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except (RuntimeError, ValueError, torch.onnx.errors.OnnxExporterError) as e:
        raise ExportError(f"ONNX export of {detector.config.backbone} failed: {e}") from e
    model = onnx.load_from_string(buf.getvalue())
    drop_absent_pad_values(model)
    return model


def export_onnx(checkpoint: LoadedCheckpoint, path: Path) -> Path:
    """Trace the checkpoint's detector (``trace_onnx``) to ``path`` with metadata_props."""
    start = time.perf_counter()
    c = checkpoint.meta.preprocessing
    model = trace_onnx(checkpoint.model, c.num_frames, c.crop_size)
    save_onnx(model, path, onnx_metadata(checkpoint, "fp32"))
    log_written("export_onnx", path, start)
    return path


def _run_cases(
    path: Path, cases: tuple[ParityCase, ...], providers: list[str]
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    import onnxruntime as ort

    session = onnx_session(path, providers)
    runtime = f"onnxruntime {ort.__version__} {session.get_providers()[0]}"
    outputs = [tuple(session.run(list(OUTPUT_NAMES), {INPUT_NAME: case.clips})) for case in cases]
    return outputs, runtime


def verify_onnx(path: Path, cases: tuple[ParityCase, ...], tolerance: float) -> Parity:
    """Run ``path`` through onnxruntime on the cases; ExportError past ``tolerance``.

    Tries the CPU provider first and, when onnxruntime cannot run the graph there (fp16
    kernels are missing for some ops in some builds), the CUDA provider if installed.
    Raises RuntimeUnavailable when no installed provider can run it.
    """
    try:
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import (
            Fail,
            InvalidArgument,
            InvalidGraph,
            NotImplemented,
        )
    except ImportError as e:
        raise RuntimeUnavailable(
            f"onnxruntime is not installed, so {path.name} cannot be verified: "
            "pip install onnxruntime"
        ) from e
    start = time.perf_counter()
    ort_errors = (Fail, InvalidArgument, InvalidGraph, NotImplemented)
    try:
        outputs, runtime = _run_cases(path, cases, ["CPUExecutionProvider"])
    except ort_errors as cpu_error:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeUnavailable(
                f"onnxruntime {ort.__version__} cannot run {path.name} on the CPU ({cpu_error}) "
                "and has no CUDA provider to verify it on: pip install onnxruntime-gpu "
                '(or "dfscan[gpu]") on a machine with an NVIDIA GPU'
            ) from cpu_error
        log.warning("onnxruntime CPU cannot run %s (%s); verifying on CUDA", path, cpu_error)
        try:
            outputs, runtime = _run_cases(path, cases, ["CUDAExecutionProvider"])
        except ort_errors as e:
            raise ExportError(f"onnxruntime cannot run {path}: {e}") from e
    parity = compare(cases, outputs, runtime, tolerance, path.name)
    log.info("verify_onnx: %s checked in %.1f s", path.name, time.perf_counter() - start)
    return parity


# What ``dfscan export`` records for an ONNX file (its default --max-batch) and checks: parity
# on a batch of this many random clips, not the trace batch, so that B must be dynamic.
MAX_BATCH = 16
PARITY_BATCH = 3


# Part of a cached graph's key: raised whenever export_onnx writes a different graph for the
# same checkpoint, so that caches written before are not used. 2: constant "same" padding.
GRAPH_VERSION = 2


def export_checked_onnx(
    checkpoint: LoadedCheckpoint, path: Path, cases: tuple[ParityCase, ...], max_batch: int
) -> ArtifactInfo:
    """The fp32 ONNX graph of ``checkpoint`` at ``path``, run on ``cases`` against PyTorch
    (ExportError past the fp32 tolerance), and its sidecar: what it is and how it checked."""
    written = export_onnx(checkpoint, path)
    parity = verify_onnx(written, cases, TOLERANCE["fp32"])
    info = make_info(written, "onnx", "fp32", checkpoint, max_batch, parity.to_dict())
    write_sidecar(written, info)
    return info


def cache_dir() -> Path:
    """The user's cache of exported graphs: $XDG_CACHE_HOME/dfscan/onnx (~/.cache/...)."""
    return cache_root() / "onnx"


def cached_onnx(weights: Path) -> Path:
    """The fp32 ``model.onnx`` (with its sidecar) of the checkpoint ``weights``, exported into
    ``cache_dir()/<sha256 of the checkpoint file>-g<GRAPH_VERSION>/`` on first use and checked
    against PyTorch as ``dfscan export`` checks it (random clips, the fp32 tolerance).

    A folder in the cache is written whole under a temporary name and then renamed, so a
    reader never sees half of one, and two processes exporting at once both end with one
    good copy; one that no longer matches its sidecar (a damaged disk, a hand edit) is
    exported again. Raises CheckpointError for a bad checkpoint, ExportError when the export
    or its parity fails, OSError when the cache cannot be written.
    """
    weights = Path(weights)
    folder = cache_dir() / f"{file_sha256(weights)}-g{GRAPH_VERSION}"
    path = folder / ONNX_FILE

    def whole() -> bool:
        try:
            verify_artifact(path, "onnx")
        except ArtifactError:
            return False
        return True

    if whole():
        return path
    if folder.exists():
        log.warning("cached graph %s does not match its sidecar; exporting it again", folder)
    start = time.perf_counter()
    checkpoint = load_checkpoint(weights)
    with replacing_folder(folder, whole) as scratch:
        cases = parity_cases(checkpoint.model, checkpoint.meta.preprocessing, None, PARITY_BATCH)
        export_checked_onnx(checkpoint, scratch / ONNX_FILE, cases, MAX_BATCH)
    log.info(
        "exported %s to %s for onnxruntime in %.1f s (once; cached)",
        checkpoint.label,
        path,
        time.perf_counter() - start,
    )
    return path
