"""Checkpoint format: one safetensors file whose header carries the JSON metadata.

Weights are plain tensors (safetensors never unpickles, so a checkpoint from a stranger cannot
run code). The header's ``dfscan`` entry holds the architecture, the preprocessing contract,
the decision threshold and provenance, including a sha256 over the tensors that loading
verifies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as safetensors_load
from safetensors.torch import save_file

from scanner.contract import Preprocessing
from scanner.files import file_sha256, replacing
from scanner.model import Detector, DetectorConfig, build_detector

FORMAT = "dfscan-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable, truncated, tampered with or mismatched."""


def check_format(data: dict, name: str, version: int, what: str) -> None:
    """Raise ValueError unless a JSON header says it is ``name`` at ``version``."""
    if data.get("format") != name:
        raise ValueError(f"not a {name} {what} (format={data.get('format')!r})")
    if data.get("format_version") != version:
        raise ValueError(
            f"{what} format version {data.get('format_version')} is not supported "
            f"(this dfscan reads version {version})"
        )


@dataclass(frozen=True)
class Provenance:
    training_data: str = ""
    command: str = ""
    dfscan_version: str = ""
    created: str = ""
    notes: str = ""


@dataclass(frozen=True)
class CheckpointMeta:
    name: str
    model: DetectorConfig
    preprocessing: Preprocessing
    threshold: float = 0.5  # P(fake) at or above which a video is labelled FAKE
    calibration: dict = field(default_factory=dict)  # how the threshold was chosen
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.model.num_frames != self.preprocessing.num_frames:
            raise ValueError(
                f"model.num_frames={self.model.num_frames} but "
                f"preprocessing.num_frames={self.preprocessing.num_frames}"
            )

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "model": self.model.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "threshold": self.threshold,
            "calibration": self.calibration,
            "provenance": vars(self.provenance).copy(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CheckpointMeta:
        check_format(data, FORMAT, FORMAT_VERSION, "checkpoint")
        return cls(
            name=data["name"],
            model=DetectorConfig.from_dict(data["model"]),
            preprocessing=Preprocessing.from_dict(data["preprocessing"]),
            threshold=float(data["threshold"]),
            calibration=dict(data.get("calibration") or {}),
            provenance=Provenance(**data.get("provenance", {})),
        )


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: Detector  # in eval mode, fp32, on the CPU
    meta: CheckpointMeta
    path: Path
    file_sha256: str
    weights_sha256: str

    @property
    def label(self) -> str:
        """Short identifier for reports: name and file digest prefix."""
        return f"{self.meta.name}@{self.file_sha256[:12]}"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Digest of names, dtypes, shapes and bytes of the tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(
    path: Path, model: Detector, meta: CheckpointMeta, *, half: bool = False
) -> str:
    """Write ``model`` with ``meta`` to ``path`` (safetensors). Returns the file's sha256.

    half=True stores floating-point tensors as fp16 (half the size); they load back as fp32.
    """
    if model.config != meta.model:
        raise ValueError("meta.model does not describe the model being saved")
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        if half and t.is_floating_point():
            t = t.half()
        tensors[name] = t.contiguous().clone()
    header = meta.to_dict()
    header["weights_sha256"] = tensors_sha256(tensors)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dfscan": json.dumps(header, sort_keys=True)})
        tmp.chmod(0o644)  # safetensors creates it private; a model file is meant to be shared
    return file_sha256(path)


def read_meta(path: Path) -> CheckpointMeta:
    """Read only the metadata of a checkpoint (cheap: the header, no tensors)."""
    path = Path(path)
    _require_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get("dfscan")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _unreadable(path, e) from e
    return _parse_header(header, path)[0]


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"cannot read checkpoint {path}: {e} (truncated, corrupt or not a safetensors file?)"
    )


def _parse_header(header: str | None, path: Path) -> tuple[CheckpointMeta, dict]:
    """The ``dfscan`` metadata entry -> (its record, its raw JSON object)."""
    if header is None:
        raise CheckpointError(
            f"{path} is a safetensors file without dfscan metadata; "
            "train with `python -m training.train` to get a dfscan checkpoint"
        )
    try:
        raw = json.loads(header)
    except ValueError as e:
        raise _unreadable(path, e) from e
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"checkpoint {path} has invalid metadata: a JSON {type(raw).__name__}, not an object"
        )
    try:
        return CheckpointMeta.from_dict(raw), raw
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has invalid metadata: {e}") from e


def _safetensors_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's bytes: an 8-byte little-endian header
    length, then the JSON header (the format's specification)."""
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes, shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError(f"header of {size} bytes in a file of {len(data)}")
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("the safetensors __metadata__ is not a JSON object")
    return metadata


def _read(path: Path) -> tuple[CheckpointMeta, dict, dict[str, torch.Tensor], str]:
    """Metadata, tensors and the file's sha256, all from one read of the file (a file replaced
    meanwhile cannot lend its digest to the tensors of the one it replaced)."""
    _require_file(path)
    try:
        data = path.read_bytes()
        header = _safetensors_metadata(data).get("dfscan")
        tensors = safetensors_load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _unreadable(path, e) from e
    meta, raw = _parse_header(header, path)
    return meta, raw, tensors, hashlib.sha256(data).hexdigest()


def load_checkpoint(path: Path) -> LoadedCheckpoint:
    """Checkpoint file -> model (eval, fp32, CPU) with its metadata, verified."""
    path = Path(path)
    meta, raw, tensors, file_digest = _read(path)
    digest = tensors_sha256(tensors)
    if raw.get("weights_sha256") != digest:
        raise CheckpointError(
            f"checkpoint {path}: weights do not match the sha256 recorded in its header "
            "(the file was modified after it was written)"
        )
    try:
        model = build_detector(meta.model)
    except RuntimeError as e:  # timm raises RuntimeError for unknown model names
        raise CheckpointError(f"checkpoint {path}: cannot build {meta.model.backbone}: {e}") from e
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint {path} does not match its architecture ({meta.model.backbone}): "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    state = {k: v.to(expected[k].dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedCheckpoint(
        model=model, meta=meta, path=path, file_sha256=file_digest, weights_sha256=digest
    )
