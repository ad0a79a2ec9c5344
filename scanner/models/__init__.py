"""What ships inside the package: the default model, its card, and two sample clips."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_WEIGHTS = "default.safetensors"


def _here() -> Path:
    return Path(str(resources.files(__name__)))


def default_weights() -> Path | None:
    """Path of the shipped default checkpoint, or None in a build without it."""
    path = _here() / DEFAULT_WEIGHTS
    return path if path.is_file() else None


def samples_dir() -> Path:
    """Folder of the bundled sample clips (a real clip and a self-blended fake of it)."""
    return _here() / "samples"


def sample_clip() -> Path | None:
    """The bundled real sample clip (a face), or None in a build without samples."""
    found = sorted(samples_dir().glob("real_*.mp4"))
    return found[0] if found else None
