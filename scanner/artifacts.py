"""Exported artifacts, the format and its readers: file and tensor names, the JSON sidecar beside
each file, ONNX metadata, and the checks a file passes before it loads.

Every artifact (``model.onnx``, ``model.fp16.onnx``, ``model.engine``) has a sidecar
``<file>.json`` holding the source checkpoint's metadata (architecture, preprocessing contract,
threshold, calibration, name), the source checkpoint's sha256, the parity measured at export
and the artifact's own sha256 and size. Loading checks the artifact against its sidecar, so a
truncated or modified file is refused before it runs. ONNX files also carry the metadata
inside, in ``metadata_props``; TensorRT engines stay plain serialized engines (a header
written into them would break ``trtexec`` and every other TensorRT tool).

Graph interface (ONNX opset 17, one graph for the whole detector):

- input ``clips``: float32 (B, T, 3, S, S), RGB scaled to [0, 1] then normalised with the
  contract's mean/std; T = ``num_frames`` and S = ``crop_size`` are fixed, B is dynamic.
- output ``probabilities``: float32 (B, 2), softmax over [pristine, deepfake].
- output ``attention``: float32 (B, T), the per-frame attention weights (sum 1 over T).

The writers (export, parity, sidecars, ONNX metadata) are in the ``export`` package.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from scanner.checkpoint import CheckpointError, CheckpointMeta, check_format
from scanner.files import file_sha256

# Opset 17: parsed by TensorRT 8.6 and 10.x and by onnxruntime >= 1.14, and it covers every op
# the detector uses (Conv, BatchNorm, Sigmoid/Tanh/Softmax, Max, ReduceMean); nothing newer is
# needed, and an older TensorRT would refuse a newer opset.
OPSET = 17
INPUT_NAME = "clips"
OUTPUT_NAMES = ("probabilities", "attention")
BATCH_AXIS = "batch"

ONNX_FILE = "model.onnx"
ONNX_FP16_FILE = "model.fp16.onnx"
ENGINE_FILE = "model.engine"
CHECKPOINT_FILE = "model.safetensors"  # copy of the source checkpoint, for the torch backend

SIDECAR_FORMAT = "dfscan-artifact"
SIDECAR_VERSION = 1
METADATA_KEY = "dfscan"  # ONNX metadata_props key holding the JSON metadata

log = logging.getLogger(__name__)


class ArtifactError(CheckpointError):
    """An exported artifact is missing, truncated, modified, or lacks its sidecar."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What a sidecar says about its artifact."""

    kind: str  # "onnx" or "engine"
    precision: str  # "fp32" or "fp16"
    file: str  # the artifact's file name; the sidecar sits beside it
    sha256: str  # of the artifact file
    size_bytes: int
    checkpoint: CheckpointMeta  # of the source checkpoint
    source_sha256: str  # file sha256 of the source checkpoint
    source_weights_sha256: str
    opset: int = OPSET
    max_batch: int = 16  # largest batch a backend runs it with (engine: the profile's max)
    parity: dict = field(default_factory=dict)  # tolerance and observed max abs differences
    tensorrt: dict = field(default_factory=dict)  # engine only: version, gpu, capability, profile
    created: str = ""
    versions: dict = field(default_factory=dict)  # of the tools that made the artifact

    @property
    def label(self) -> str:
        """The source checkpoint's report label, so every backend reports the same model."""
        return f"{self.checkpoint.name}@{self.source_sha256[:12]}"

    def to_dict(self) -> dict:
        return {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "kind": self.kind,
            "precision": self.precision,
            "file": self.file,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "checkpoint": self.checkpoint.to_dict(),
            "source_sha256": self.source_sha256,
            "source_weights_sha256": self.source_weights_sha256,
            "opset": self.opset,
            "max_batch": self.max_batch,
            "interface": interface(self.checkpoint),
            "parity": self.parity,
            "tensorrt": self.tensorrt,
            "created": self.created,
            "versions": self.versions,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ArtifactInfo:
        check_format(data, SIDECAR_FORMAT, SIDECAR_VERSION, "sidecar")
        return cls(
            kind=data["kind"],
            precision=data["precision"],
            file=data["file"],
            sha256=data["sha256"],
            size_bytes=int(data["size_bytes"]),
            checkpoint=CheckpointMeta.from_dict(data["checkpoint"]),
            source_sha256=data["source_sha256"],
            source_weights_sha256=data["source_weights_sha256"],
            opset=int(data["opset"]),
            max_batch=int(data["max_batch"]),
            parity=dict(data.get("parity") or {}),
            tensorrt=dict(data.get("tensorrt") or {}),
            created=data.get("created", ""),
            versions=dict(data.get("versions") or {}),
        )


def interface(meta: CheckpointMeta) -> dict:
    """Names, shapes and dtypes of the graph's tensors for a checkpoint's contract."""
    t, s = meta.preprocessing.num_frames, meta.preprocessing.crop_size
    return {
        "inputs": {INPUT_NAME: {"shape": [BATCH_AXIS, t, 3, s, s], "dtype": "float32"}},
        "outputs": {
            OUTPUT_NAMES[0]: {"shape": [BATCH_AXIS, 2], "dtype": "float32"},
            OUTPUT_NAMES[1]: {"shape": [BATCH_AXIS, t], "dtype": "float32"},
        },
        "normalisation": "x / 255, then (x - mean) / std per RGB channel",
        "classes": ["pristine", "deepfake"],
    }


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def read_sidecar(artifact: Path) -> ArtifactInfo:
    """The sidecar of ``artifact``, parsed (no check of the artifact itself)."""
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ArtifactError(
            f"{artifact} has no sidecar {path.name} beside it; an exported model is only "
            "loaded with the sidecar `dfscan export` writes (it holds the preprocessing "
            "contract and the file's sha256)"
        )
    try:
        return ArtifactInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"cannot read sidecar {path}: {e}") from e  # (a list: no .get)


def verify_artifact(artifact: Path, kind: str) -> ArtifactInfo:
    """Check ``artifact`` against its sidecar (kind, size, sha256); return the sidecar."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise ArtifactError(f"exported model not found: {artifact}")
    info = read_sidecar(artifact)
    if info.kind != kind:
        raise ArtifactError(f"{artifact}: sidecar describes a {info.kind} file, not {kind}")
    if info.file != artifact.name:
        raise ArtifactError(
            f"{artifact}: its sidecar describes {info.file!r}; an artifact keeps the name "
            "it was exported with (rename the sidecar too, or export again)"
        )
    size = artifact.stat().st_size
    if size != info.size_bytes:
        what = "truncated" if size < info.size_bytes else "has extra bytes"
        raise ArtifactError(
            f"{artifact} is {what}: {size} bytes, its sidecar records {info.size_bytes} "
            "(copy it again or export again)"
        )
    if file_sha256(artifact) != info.sha256:
        raise ArtifactError(
            f"{artifact} does not match the sha256 in its sidecar (the file was modified "
            "after export); export again with `dfscan export`"
        )
    return info


@dataclass(frozen=True)
class OnnxMetadata:
    """What an ONNX file's own ``metadata_props`` say about it."""

    checkpoint: CheckpointMeta
    source_sha256: str
    precision: str


def parse_onnx_metadata(props: dict[str, str], where: Path) -> OnnxMetadata:
    """Parse the ``dfscan`` entry of ONNX metadata_props (as onnxruntime returns them)."""
    raw = props.get(METADATA_KEY)
    if raw is None:
        raise ArtifactError(f"{where} has no {METADATA_KEY!r} metadata: not a dfscan export")
    try:
        data = json.loads(raw)
        return OnnxMetadata(
            checkpoint=CheckpointMeta.from_dict(data["checkpoint"]),
            source_sha256=data["source_sha256"],
            precision=data["precision"],
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{where} has invalid {METADATA_KEY!r} metadata: {e}") from e


@dataclass(frozen=True)
class Artifacts:
    """What a ``--weights`` path offers: a checkpoint and/or exported files.

    In a directory, an exported file counts only with its sidecar beside it: export writes
    the sidecar once the file has passed its parity check, and keeps a file that failed it
    without one. Such files are listed in ``unverified`` instead, so a backend can say why it
    does not use them."""

    source: Path
    checkpoint: Path | None = None
    onnx: Path | None = None  # fp32
    onnx_fp16: Path | None = None
    engine: Path | None = None
    unverified: tuple[Path, ...] = ()  # exported files in a directory without their sidecar

    def unverified_file(self, name: str) -> Path | None:
        """The file called ``name`` among ``unverified``, if it is there."""
        return next((p for p in self.unverified if p.name == name), None)


def unverified_reason(path: Path) -> str:
    """Why an exported file without its sidecar is not used."""
    return (
        f"{path} has no sidecar {sidecar_path(path).name}: it did not pass its check at "
        "export (or was copied without its sidecar), so it is not used; export it again "
        "with `dfscan export`"
    )


def find_artifacts(weights: Path) -> Artifacts:
    """A checkpoint, an ``.onnx``, an ``.engine``, or a directory written by ``dfscan export``.

    In a directory, an exported file without its sidecar is left out (with a warning) and
    listed in ``unverified``; one with its sidecar is checked against it when it loads.
    """
    weights = Path(weights)
    if weights.is_dir():
        unverified = []

        def present(name: str) -> Path | None:
            path = weights / name
            if not path.is_file():
                return None
            if name != CHECKPOINT_FILE and not sidecar_path(path).is_file():
                log.warning("%s", unverified_reason(path))
                unverified.append(path)
                return None
            return path

        found = Artifacts(
            weights,
            present(CHECKPOINT_FILE),
            present(ONNX_FILE),
            present(ONNX_FP16_FILE),
            present(ENGINE_FILE),
            tuple(unverified),
        )
        if found == Artifacts(weights):
            raise CheckpointError(
                f"{weights} holds none of {CHECKPOINT_FILE}, {ONNX_FILE}, {ONNX_FP16_FILE}, "
                f"{ENGINE_FILE}: not a directory written by `dfscan export`"
            )
        if found == Artifacts(weights, unverified=found.unverified):
            raise ArtifactError(
                f"{weights} holds no usable model: "
                + "; ".join(unverified_reason(p) for p in found.unverified)
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
