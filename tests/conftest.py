"""Shared fixtures: synthetic clips and a tiny checkpoint (builders live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import face_frames, make_checkpoint, write_clip


@pytest.fixture(scope="session")
def face_image() -> np.ndarray:
    """(512, 512, 3) uint8 RGB portrait; the face lies around x 180..270, y 60..175."""
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the face image")
    return skimage_data.astronaut()


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory: pytest.TempPathFactory, face_image: np.ndarray) -> Path:
    """A 40-frame 320x240 clip with one face."""
    return write_clip(tmp_path_factory.mktemp("clips") / "face.mp4", face_frames(face_image, 40))


@pytest.fixture(scope="session")
def noface_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (320, 240))
    frames = [np.roll(base, i * 3, axis=1) for i in range(30)]
    return write_clip(tmp_path_factory.mktemp("clips") / "noface.mp4", frames)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")
