"""Test helpers: synthetic clips from a public-domain face image, tiny checkpoints.

The face is NASA's portrait of astronaut Eileen Collins (public domain), shipped inside
scikit-image as ``skimage.data.astronaut()``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import torch

from scanner.checkpoint import CheckpointMeta, Provenance, save_checkpoint
from scanner.contract import Preprocessing
from training.model import DetectorConfig, build_detector

SHARED_VIDEOS = Path(
    os.environ.get(
        "DFSCAN_SHARED_VIDEOS", Path(__file__).resolve().parents[2] / "shared/data/videos"
    )
)

MARK_BITS = 7  # frame indices up to 127 are drawn into face_frames

TINY_CONFIG = DetectorConfig(
    backbone="test_efficientnet", proj_channels=16, hidden_channels=16, attention_channels=8
)


def write_clip(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    fps: float = 25.0,
) -> Path:
    """Write RGB frames to an mp4 (MPEG-4 Part 2, which every OpenCV build can encode)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def face_frames(
    face: np.ndarray, n: int, size: tuple[int, int] = (320, 240), face_height: int = 200
) -> list[np.ndarray]:
    """n frames of (w, h) = size showing the portrait, drifting a few pixels per frame.

    Each frame also carries its index in binary as a row of black and white squares along
    the top edge (read back by ``frame_mark``), so tests can tell which frames were decoded.
    """
    w, h = size
    scale = face_height / face.shape[0]
    portrait = cv2.resize(face, (round(face.shape[1] * scale), face_height))
    ph, pw = portrait.shape[:2]
    out = []
    for i in range(n):
        canvas = np.full((h, w, 3), 90, np.uint8)
        x = min(max(0, (w - pw) // 2 + (i % 7) - 3), max(0, w - pw))
        y = max(0, (h - ph) // 2)
        canvas[y : y + min(ph, h), x : x + min(pw, w)] = portrait[: min(ph, h), : min(pw, w)]
        for bit in range(MARK_BITS):
            canvas[:16, 16 * bit : 16 * bit + 16] = 255 if (i >> bit) & 1 else 0
        out.append(canvas)
    return out


def frame_mark(image: np.ndarray) -> int:
    """The frame index that ``face_frames`` drew into an (upright) decoded frame."""
    bits = [image[4:12, 16 * b + 4 : 16 * b + 12].mean() > 128 for b in range(MARK_BITS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def rotate_mp4(path: Path, degrees: int) -> Path:
    """Set the display-rotation matrix of an mp4's video track (as phones do)."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"tkhd")
    assert pos > 0, "no tkhd box"
    version = data[pos + 4]
    matrix_at = pos + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    one, minus_one = 0x10000, -0x10000
    a, b, c, d = {
        90: (0, one, minus_one, 0),
        180: (minus_one, 0, 0, minus_one),
        270: (0, minus_one, one, 0),
    }[degrees]
    struct.pack_into(">9i", data, matrix_at, a, b, 0, c, d, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


def make_checkpoint(path: Path, config: DetectorConfig = TINY_CONFIG, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_detector(config)
    meta = CheckpointMeta(
        name="test-" + config.backbone,
        model=config,
        preprocessing=Preprocessing.for_backbone(config.backbone, num_frames=config.num_frames),
        provenance=Provenance(training_data="none (random init)", notes="test fixture"),
    )
    save_checkpoint(path, model, meta)
    return path
