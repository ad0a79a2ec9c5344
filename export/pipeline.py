"""``export_all``: checkpoint -> verified ONNX (fp32, optionally fp16) and TensorRT engine.

The steps, each logged with its time and file size, each artifact checked against PyTorch
before its sidecar is written (an artifact without a sidecar does not load):

1. copy the source checkpoint into the output directory as ``model.safetensors``;
2. ``export_onnx`` -> ``model.onnx``, ``verify_onnx`` at the fp32 tolerance;
3. with fp16: ``convert_fp16`` -> ``model.fp16.onnx``, ``verify_onnx`` at the fp16 tolerance;
4. with an engine: ``build_engine`` from the verified ONNX of its precision (``model.onnx``, or
   ``model.fp16.onnx`` with fp16) -> ``model.engine``, ``verify_engine`` at that precision's
   tolerance. With ``formats="engine"`` the ONNX files are written to a scratch directory.

Before it writes, an export removes from the output directory the files of the formats it
writes (``onnx``: both ONNX files, so no ``model.fp16.onnx`` of an earlier ``--fp16`` stays
beside a new ``model.onnx``; ``engine``: the engine) and any artifact whose sidecar does not
say it is of the same checkpoint. Another format's artifact of the same checkpoint stays:
``--format engine`` into a folder of verified ONNX files adds the engine beside them.

A step that fails, or whose parity cannot be checked here (no runtime that can run the
artifact: RuntimeUnavailable), raises; that artifact gets no sidecar, so it does not load.
Artifacts finished before it keep theirs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export.onnx_export import convert_fp16
from export.tensorrt_engine import build_engine, verify_engine
from scanner.artifact_writer import TOLERANCE, RuntimeUnavailable, make_info, write_sidecar
from scanner.artifacts import (
    CHECKPOINT_FILE,
    ENGINE_FILE,
    ONNX_FILE,
    ONNX_FP16_FILE,
    ArtifactError,
    ArtifactInfo,
    read_sidecar,
    sidecar_path,
)
from scanner.backends.tensorrt import tensorrt_missing
from scanner.checkpoint import load_checkpoint
from scanner.contract import Preprocessing
from scanner.files import replacing
from scanner.onnx_writer import MAX_BATCH, PARITY_BATCH, export_checked_onnx, verify_onnx
from scanner.parity import parity_cases

log = logging.getLogger(__name__)

FORMATS = ("onnx", "engine", "all")


@dataclass(frozen=True)
class ExportedArtifact:
    path: Path  # its sidecar beside it: scanner.artifacts.sidecar_path
    info: ArtifactInfo
    seconds: float  # export/build plus verification


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    checkpoint: Path  # the copy of the source checkpoint beside the artifacts
    artifacts: tuple[ExportedArtifact, ...]


def face_crops(video: Path, contract: Preprocessing, seed: int = 0) -> np.ndarray:
    """The dominant face of ``video`` cropped as the contract says: (T, S, S, 3) uint8 RGB."""
    from scanner.clip import read_face_clip
    from scanner.faces import FaceDetector

    detector = FaceDetector(contract, "cpu")
    return read_face_clip(video, detector, contract.num_frames, contract.sampling, seed).track.crops


def sample_face_crops(contract: Preprocessing) -> np.ndarray | None:
    """Face crops of the bundled sample clip, or None where the build ships none."""
    from scanner.errors import ClipError
    from scanner.models import sample_clip

    path = sample_clip()
    if path is None:
        log.info("no bundled sample clip: parity on random clips only")
        return None
    try:
        return face_crops(path, contract)
    except ClipError as e:
        log.warning("sample clip %s gives no face track (%s): parity on random clips only", path, e)
        return None


def check_formats(formats: str, device: torch.device | None = None) -> None:
    """Fail fast, before minutes of export, when a format cannot be produced here (on
    ``device``, where one is named: an engine is built on a CUDA device only)."""
    if formats not in FORMATS:
        raise ValueError(f"formats must be one of {FORMATS}, got {formats!r}")
    if formats in ("engine", "all") and (reason := engine_unavailable(device)) is not None:
        raise RuntimeUnavailable(f"a TensorRT engine cannot be built here: {reason}")


def engine_unavailable(device: torch.device | None = None) -> str | None:
    """Why no TensorRT engine can be built here (on ``device``, where one is named), or None."""
    if device is not None and device.type != "cuda":
        return f"an engine is built on a CUDA device, not {device}"
    return tensorrt_missing()


# The files each value of ``formats`` writes into the output directory.
FORMAT_FILES = {
    "onnx": (ONNX_FILE, ONNX_FP16_FILE),
    "engine": (ENGINE_FILE,),
    "all": (ONNX_FILE, ONNX_FP16_FILE, ENGINE_FILE),
}


def _of_checkpoint(path: Path, source_sha256: str) -> bool:
    """Whether ``path`` is an artifact whose sidecar says it was exported from the checkpoint
    with file sha256 ``source_sha256`` (the artifact itself is checked when it loads)."""
    if not path.is_file():
        return False
    try:
        info = read_sidecar(path)
    except ArtifactError:
        return False
    return info.file == path.name and info.source_sha256 == source_sha256


def _clear_artifacts(out_dir: Path, formats: str, source_sha256: str) -> None:
    """Remove, with their sidecars, the artifacts in ``out_dir`` this export replaces: every
    file of the formats it writes (stale, whatever wrote them), and another format's file
    unless its sidecar says it is of the same checkpoint (``source_sha256``): one of another
    checkpoint, or one that never passed its check, must not stay beside the new checkpoint,
    where a scan of the folder would load it."""
    writing = FORMAT_FILES[formats]
    for name in (ONNX_FILE, ONNX_FP16_FILE, ENGINE_FILE):
        path = out_dir / name
        if name not in writing and _of_checkpoint(path, source_sha256):
            log.info("keeping %s: a verified export of the same checkpoint", path)
            continue
        if path.exists():
            log.info("removing %s of an earlier export", path)
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)


def _copy_checkpoint(source: Path, out_dir: Path) -> Path:
    target = out_dir / CHECKPOINT_FILE
    if target.exists() and target.samefile(source):
        return target
    with replacing(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def export_all(
    weights: Path,
    out_dir: Path,
    *,
    formats: str = "onnx",
    fp16: bool = False,
    max_batch: int = MAX_BATCH,
    face: np.ndarray | None = None,
    seed: int = 0,
    device: torch.device | None = None,
) -> ExportResult:
    """Export ``weights`` into ``out_dir``; ``face`` (T, S, S, 3) uint8 joins the parity check.

    formats: "onnx" (ONNX files), "engine" (the engine; its ONNX stays temporary) or "all".
    Raises CheckpointError for a bad checkpoint, RuntimeUnavailable when TensorRT is needed
    but missing (checked before any work) or no runtime here can run an artifact to check
    it, ExportError when a step or its parity fails.
    """
    check_formats(formats, device)
    want_engine = formats in ("engine", "all")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")

    start = time.perf_counter()
    checkpoint = load_checkpoint(weights)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_artifacts(out_dir, formats, checkpoint.file_sha256)
    copy = _copy_checkpoint(checkpoint.path, out_dir)
    contract = checkpoint.meta.preprocessing
    log.info(
        "exporting %s (%s) to %s; checkpoint (%.1f MB) loaded and copied in %.1f s",
        checkpoint.label,
        checkpoint.meta.model.backbone,
        out_dir,
        copy.stat().st_size / 1e6,
        time.perf_counter() - start,
    )
    cases = parity_cases(checkpoint.model, contract, face, min(PARITY_BATCH, max_batch), seed)
    artifacts = []

    def finish(
        path: Path,
        kind: str,
        precision: str,
        parity: dict,
        began: float,
        tensorrt: dict | None = None,
    ) -> None:
        info = make_info(path, kind, precision, checkpoint, max_batch, parity, tensorrt)
        write_sidecar(path, info)
        artifacts.append(ExportedArtifact(path, info, time.perf_counter() - began))

    with tempfile.TemporaryDirectory(prefix="dfscan-export-") as scratch:
        onnx_dir = out_dir if formats != "engine" else Path(scratch)
        onnx_path = onnx_dir / ONNX_FILE
        began = time.perf_counter()
        info = export_checked_onnx(checkpoint, onnx_path, cases, max_batch)
        if formats != "engine":  # else it is only the engine's source, in the scratch folder
            artifacts.append(ExportedArtifact(onnx_path, info, time.perf_counter() - began))

        engine_source = onnx_path
        if fp16:
            fp16_path = onnx_dir / ONNX_FP16_FILE
            began = time.perf_counter()
            convert_fp16(checkpoint, onnx_path, fp16_path)
            # No runtime here that can run it (RuntimeUnavailable) fails the export like a
            # parity failure: an artifact that was never checked gets no sidecar.
            fp16_parity = verify_onnx(fp16_path, cases, TOLERANCE["fp16"]).to_dict()
            if formats != "engine":
                finish(fp16_path, "onnx", "fp16", fp16_parity, began)
            engine_source = fp16_path

        if want_engine:
            engine_path = out_dir / ENGINE_FILE
            precision = "fp16" if fp16 else "fp32"
            gpu = device or torch.device("cuda", torch.cuda.current_device())
            began = time.perf_counter()
            record = build_engine(
                engine_source,
                engine_path,
                contract,
                precision=precision,
                max_batch=max_batch,
                device=gpu,
            )
            parity = verify_engine(engine_path, cases, TOLERANCE[precision], gpu)
            finish(engine_path, "engine", precision, parity.to_dict(), began, tensorrt=record)

    log.info("export finished in %.1f s", time.perf_counter() - start)
    return ExportResult(out_dir=out_dir, checkpoint=copy, artifacts=tuple(artifacts))
