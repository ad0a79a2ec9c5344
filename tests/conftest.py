"""Shared fixtures: synthetic clips and a tiny checkpoint (builders live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from scanner.faces import crop_square

from helpers import face_frames, make_checkpoint, self_blended, side_by_side, write_clip


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user cache (``--backend auto`` exports checkpoints' ONNX graphs there on the CPU)
    lies in a temporary folder for the whole session, not in the user's home."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        yield root


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


# --- the astronaut's face as the scanner crops it: fixtures for augmentation and blending

ASTRONAUT_CROP = 224
ASTRONAUT_MARGIN = 0.3
ASTRONAUT_FRAMES = 15

# MTCNN's answer on the astronaut, kept to check the detector's run and to stand in for it
# where facenet-pytorch cannot run.
ASTRONAUT_BOX = np.array([181.05, 62.16, 267.75, 172.05])
ASTRONAUT_LANDMARKS = np.array(
    [[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]]
)


@pytest.fixture(scope="session")
def astronaut_detection() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (512, 512, 3) uint8, box (4,), landmarks (5, 2)) from MTCNN, in image pixels."""
    image = pytest.importorskip(
        "skimage.data", reason="scikit-image ships the face image"
    ).astronaut()
    try:
        import torch
        from facenet_pytorch import MTCNN
    except ImportError:
        return image, ASTRONAUT_BOX, ASTRONAUT_LANDMARKS
    with torch.inference_mode():
        boxes, _, points = MTCNN(keep_all=True).detect(image, landmarks=True)
    assert boxes is not None and len(boxes) == 1
    box, landmarks = np.asarray(boxes[0], np.float64), np.asarray(points[0], np.float64)
    np.testing.assert_allclose(box, ASTRONAUT_BOX, atol=6)
    np.testing.assert_allclose(landmarks, ASTRONAUT_LANDMARKS, atol=4)
    return image, box, landmarks


def astronaut_crop(
    image: np.ndarray, box: np.ndarray, landmarks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The scanner's crop and the landmarks mapped into it: ((S, S, 3) uint8, (5, 2) float32)."""
    crop, (x0, y0, scale) = crop_square(image, box, ASTRONAUT_MARGIN, ASTRONAUT_CROP)
    return crop, ((landmarks - (x0, y0)) * scale).astype(np.float32)


@pytest.fixture(scope="session")
def face(astronaut_detection) -> tuple[np.ndarray, np.ndarray]:
    """One 224 x 224 face crop and its five landmarks in crop pixels."""
    return astronaut_crop(*astronaut_detection)


@pytest.fixture(scope="session")
def clip(astronaut_detection) -> tuple[np.ndarray, np.ndarray]:
    """A 15-frame clip: the box drifts by a few pixels and zooms a little, as a tracked face."""
    image, box, landmarks = astronaut_detection
    rng = np.random.default_rng(1234)
    crops, lms = [], []
    for t in range(ASTRONAUT_FRAMES):
        dx, dy = 1.0 * t + rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5)
        zoom = 1.0 + 0.004 * t
        centre = (box[:2] + box[2:]) / 2 + (dx, dy)
        half = (box[2:] - box[:2]) / 2 * zoom
        c, lm = astronaut_crop(image, np.concatenate([centre - half, centre + half]), landmarks)
        crops.append(c)
        lms.append(lm)
    return np.stack(crops), np.stack(lms)


@pytest.fixture(scope="session")
def real_folder(tmp_path_factory, face_image):
    """Eight real 'identities' for training: the portrait tinted and placed differently in
    each."""
    root = tmp_path_factory.mktemp("data")
    (root / "real").mkdir()
    for k in range(8):
        tint = np.array([1.0 - 0.05 * k, 1.0, 0.8 + 0.05 * k])
        face = np.clip(face_image * tint, 0, 255).astype(np.uint8)
        frames = face_frames(face, 20, size=(320 + 16 * k, 240))
        write_clip(root / "real" / f"person{k}.mp4", frames)
    return root


@pytest.fixture(scope="session")
def cache(real_folder, tmp_path_factory):
    """real_folder's face tracks, preprocessed for the test backbone (16 frames a video)."""
    from scanner.contract import Preprocessing
    from training.datasets import load_dataset
    from training.preprocess import preprocess

    cache = tmp_path_factory.mktemp("cache")
    preprocess(
        load_dataset(real_folder),
        cache,
        Preprocessing.for_backbone("test_efficientnet"),
        frames=16,
        workers=1,
        progress=False,
    )
    return cache


# Self-blending seed of astronaut_pair's right half: weak blends (a low blend ratio) are not
# always told apart by a small model; with seed 2 the blend is a clear one.
BLEND_SEED = 2


@pytest.fixture(scope="session")
def astronaut_pair(tmp_path_factory, face_image) -> Path:
    """640x240: the portrait on the left, a self-blended copy of it on the right."""
    real = face_frames(face_image, 40)
    fake = self_blended(real, BLEND_SEED)
    return write_clip(
        tmp_path_factory.mktemp("two") / "astronaut_pair.mp4", side_by_side(real, fake)
    )
