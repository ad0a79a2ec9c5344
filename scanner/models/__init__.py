"""The default model that ships inside the package (weights, model card, sample clip)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_WEIGHTS = "default.safetensors"
SAMPLE_CLIP = "sample.mp4"


def _resource(name: str) -> Path | None:
    ref = resources.files(__name__) / name
    return Path(str(ref)) if ref.is_file() else None


def default_weights() -> Path | None:
    """Path of the shipped default checkpoint, or None in a build without it."""
    return _resource(DEFAULT_WEIGHTS)


def sample_clip() -> Path | None:
    """A short bundled clip (a real face) for the README's first scan and for export checks."""
    return _resource(SAMPLE_CLIP)
