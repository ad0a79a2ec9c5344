"""Writing exported artifacts: the sidecar beside each file, the ONNX ``metadata_props``, the
parity tolerances, and the errors of an export.

The format itself (file and tensor names, the sidecar's fields, how a file is read and
verified before it loads) is ``scanner.artifacts``. The writers live in the scanner because
it exports the fp32 ONNX graph of a checkpoint itself, once, for the CPU
(``scanner.onnx_writer.cached_onnx``); ``dfscan export`` (the ``export`` package) uses them.
"""

from __future__ import annotations

import importlib.metadata
import json
from datetime import datetime, timezone
from pathlib import Path

from scanner.artifacts import (
    METADATA_KEY,
    OPSET,
    SIDECAR_VERSION,
    ArtifactInfo,
    interface,
    sidecar_path,
)
from scanner.checkpoint import LoadedCheckpoint
from scanner.files import file_sha256, replacing

# Max abs difference of probabilities and of attention weights against PyTorch fp32.
# fp32: the same arithmetic in a different order; fp16: 10-bit mantissas through a deep
# backbone and 2 x T recurrent steps.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


class ExportError(Exception):
    """An export step failed: the exporter, the builder, or the parity check."""


class RuntimeUnavailable(ExportError):
    """The runtime needed to run (and so to verify) an artifact is missing here."""


def tool_versions() -> dict[str, str]:
    """Versions of the packages that took part in an export (those installed)."""
    out = {}
    for pkg in ("dfscan", "torch", "timm", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_info(
    artifact: Path,
    kind: str,
    precision: str,
    checkpoint: LoadedCheckpoint,
    max_batch: int,
    parity: dict,
    tensorrt: dict | None = None,
) -> ArtifactInfo:
    """Describe a written artifact: hashes the file now, after its last write."""
    return ArtifactInfo(
        kind=kind,
        precision=precision,
        file=artifact.name,
        sha256=file_sha256(artifact),
        size_bytes=artifact.stat().st_size,
        checkpoint=checkpoint.meta,
        source_sha256=checkpoint.file_sha256,
        source_weights_sha256=checkpoint.weights_sha256,
        max_batch=max_batch,
        parity=parity,
        tensorrt=tensorrt or {},
        created=now_iso(),
        versions=tool_versions(),
    )


def write_sidecar(artifact: Path, info: ArtifactInfo) -> Path:
    path = sidecar_path(artifact)
    with replacing(path) as tmp:
        tmp.write_text(
            json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return path


def onnx_metadata(checkpoint: LoadedCheckpoint, precision: str) -> dict[str, str]:
    """ONNX ``metadata_props``: one JSON entry ``dfscan`` plus flat keys for other tools."""
    meta = checkpoint.meta
    c = meta.preprocessing
    full = {
        "format": "dfscan-onnx",
        "format_version": SIDECAR_VERSION,
        "checkpoint": meta.to_dict(),
        "source_sha256": checkpoint.file_sha256,
        "source_weights_sha256": checkpoint.weights_sha256,
        "precision": precision,
        "opset": OPSET,
        "interface": interface(meta),
    }
    return {
        METADATA_KEY: json.dumps(full, sort_keys=True),
        "dfscan.name": meta.name,
        "dfscan.threshold": repr(meta.threshold),
        "dfscan.source_sha256": checkpoint.file_sha256,
        "dfscan.precision": precision,
        "dfscan.num_frames": str(c.num_frames),
        "dfscan.crop_size": str(c.crop_size),
        "dfscan.mean": json.dumps(list(c.mean)),
        "dfscan.std": json.dumps(list(c.std)),
    }
