"""Face stage: MTCNN on the sampled frames, one face track per video, square crops.

This module is the one face cropper of the project: training's preprocessing calls
``extract_track`` too, so training and scanning crop identically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from scanner.contract import Preprocessing
from scanner.video import Frames, VideoInfo

log = logging.getLogger(__name__)


class NoFaceError(Exception):
    """Too few sampled frames show a face to score the video."""

    status = "no_face"

    def __init__(self, message: str, frames_with_face: int, frames: Frames | None = None) -> None:
        super().__init__(message)
        self.frames_with_face = frames_with_face
        self.info: VideoInfo | None = frames.info if frames is not None else None
        self.frames_sampled = len(frames.indices) if frames is not None else 0


@dataclass(frozen=True)
class FrameFaces:
    """MTCNN output for one frame, in full-frame pixel coordinates."""

    boxes: np.ndarray  # (K, 4) float32 x1, y1, x2, y2
    probs: np.ndarray  # (K,) float32
    landmarks: np.ndarray  # (K, 5, 2) float32: eyes, nose, mouth corners


@dataclass(frozen=True)
class FaceTrack:
    """The dominant face through the sampled frames, cropped for the model."""

    indices: tuple[int, ...]  # frame indices of the crops
    crops: np.ndarray  # (T, S, S, 3) uint8 RGB
    boxes: np.ndarray  # (T, 4) float32 detector box per frame (filled from a neighbour if missed)
    detected: np.ndarray  # (T,) bool: the face was detected in this frame
    landmarks: np.ndarray  # (T, 5, 2) float32 in crop pixels (neighbour's where missed)
    # (T,) bool: the frame lies in the shot the face was tracked in. False frames (another shot
    # after a cut) only hold the crop region of the nearest in-shot frame, not this face.
    in_shot: np.ndarray
    shot_count: int = 1  # shots the sampled frames span
    # Other faces tracked in as many sampled frames as a face needs to be scored, left unscored.
    other_faces: int = 0

    @property
    def frames_with_face(self) -> int:
        return int(self.detected.sum())


_EMPTY = FrameFaces(
    boxes=np.zeros((0, 4), np.float32),
    probs=np.zeros((0,), np.float32),
    landmarks=np.zeros((0, 5, 2), np.float32),
)


class FaceDetector:
    """facenet-pytorch MTCNN run on downscaled copies of the frames, boxes mapped back.

    One instance per thread: it holds a module and is cheap to build (weights ship in the
    facenet-pytorch wheel).
    """

    def __init__(self, contract: Preprocessing, device: torch.device | str = "cpu") -> None:
        from facenet_pytorch import MTCNN

        self.contract = contract
        self.mtcnn = MTCNN(keep_all=True, device=torch.device(device))

    def detect(self, images: np.ndarray) -> list[FrameFaces]:
        """images: (T, H, W, 3) uint8 RGB -> one FrameFaces per frame."""
        h, w = images.shape[1:3]
        scale = min(1.0, self.contract.detect_max_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images])
        else:
            small = np.ascontiguousarray(images)
        try:
            with torch.inference_mode():
                boxes, probs, points = self.mtcnn.detect(small, landmarks=True)
        except (ValueError, RuntimeError) as e:
            # MTCNN's image pyramid is empty for images smaller than its 12-pixel window.
            log.debug("MTCNN failed on %dx%d frames: %s", w, h, e)
            return [_EMPTY] * len(images)
        out = []
        for b, p, pts in zip(boxes, probs, points):
            if b is None or len(b) == 0:
                out.append(_EMPTY)
                continue
            out.append(
                FrameFaces(
                    boxes=(np.asarray(b, np.float32) / scale),
                    probs=np.asarray(p, np.float32),
                    landmarks=(np.asarray(pts, np.float32) / scale),
                )
            )
        return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a (4,) against boxes b (K, 4)."""
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2])
    y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-6)


def _link_cost(prev: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Cost of continuing a track whose last box is ``prev`` with each of ``boxes`` (K,).

    Sampled frames can be seconds apart, so a face may have moved: a box continues the track
    when it overlaps it (cost 1 - IoU < 0.8), or failing that when its centre lies within one
    face width of the previous centre at a similar size (cost 1 + distance / width). inf: no.
    """
    iou = _iou(prev, boxes)
    size = max(prev[2] - prev[0], prev[3] - prev[1])
    dist = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - (prev[:2] + prev[2:]) / 2, axis=1)
    sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    near = (dist < size) & (sizes > 0.5 * size) & (sizes < 2.0 * size)
    return np.where(iou >= 0.2, 1.0 - iou, np.where(near, 1.0 + dist / size, np.inf))


def shot_ids(images: np.ndarray, max_distance: float) -> np.ndarray:
    """(T,) shot number of each sampled frame: a new shot wherever consecutive frames' colour
    histograms (HSV 16x4x4 on a 96x54 thumbnail) are further apart than ``max_distance``
    (Bhattacharyya distance). On the shared clips, consecutive random samples of one shot
    measured at most 0.29, the three cuts sampled in hamilton_stage 0.41 to 0.61."""
    hists = []
    for image in images:
        small = cv2.resize(image, (96, 54), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256])
        hists.append(cv2.normalize(h, h).flatten())
    cuts = [
        cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA) > max_distance
        for a, b in zip(hists, hists[1:])
    ]
    return np.concatenate([[0], np.cumsum(cuts)]).astype(np.int64)


@dataclass(frozen=True)
class _Selected:
    boxes: np.ndarray  # (T, 4)
    landmarks: np.ndarray  # (T, 5, 2)
    detected: np.ndarray  # (T,) bool
    in_shot: np.ndarray  # (T,) bool
    other_faces: int = 0  # other tracks found in at least min_frames frames


def select_track(
    faces: list[FrameFaces], min_prob: float, shots: np.ndarray | None = None, min_frames: int = 1
) -> _Selected | None:
    """Follow the dominant face through the frames.

    Confident boxes are linked frame by frame into tracks (greedy lowest-cost assignment
    against each track's last box, so a face may be missed in some frames), never across a
    change of ``shots`` (T,) (default: one shot): after a cut, a box in the same place is
    usually someone else. The dominant face is the track with the largest sum of box sides
    (present often and large) among those found in at least ``min_frames`` frames, if any
    track is. Frames where it was not found take the box of the nearest frame where it was.
    The other tracks found in at least ``min_frames`` frames are counted (``other_faces``):
    faces that could have been scored but were not. Returns None without a confident face.
    """
    n = len(faces)
    shots = np.zeros(n, np.int64) if shots is None else np.asarray(shots)
    tracks: list[dict[int, int]] = []  # frame -> box index within that frame
    last: list[np.ndarray] = []
    last_shot: list[int] = []
    for t, f in enumerate(faces):
        cand = np.flatnonzero(f.probs >= min_prob)
        if len(cand) == 0:
            continue
        boxes = f.boxes[cand]
        cost = np.full((len(last), len(cand)), np.inf)
        for i, (prev, shot) in enumerate(zip(last, last_shot)):
            if shot == shots[t]:
                cost[i] = _link_cost(prev, boxes)
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for flat in np.argsort(cost, axis=None):
            i, j = divmod(int(flat), len(cand))
            if not np.isfinite(cost[i, j]):
                break
            if i in used_tracks or j in used_boxes:
                continue
            tracks[i][t] = int(cand[j])
            last[i] = boxes[j]
            used_tracks.add(i)
            used_boxes.add(j)
        for j in range(len(cand)):
            if j not in used_boxes:
                tracks.append({t: int(cand[j])})
                last.append(boxes[j])
                last_shot.append(int(shots[t]))
    if not tracks:
        return None

    def presence(track: dict[int, int]) -> float:
        b = np.stack([faces[t].boxes[k] for t, k in track.items()])
        return float(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).sum())

    best = max(tracks, key=lambda track: (len(track) >= min_frames, presence(track)))
    others = sum(len(track) >= min_frames for track in tracks if track is not best)
    found = np.array(sorted(best))
    detected = np.zeros(n, bool)
    detected[found] = True
    in_shot = shots == shots[found[0]]
    boxes = np.zeros((n, 4), np.float32)
    landmarks = np.zeros((n, 5, 2), np.float32)
    for t in range(n):
        # The nearest detection is always in the track's own shot (tracks never cross a cut).
        src = t if detected[t] else int(found[np.abs(found - t).argmin()])
        boxes[t] = faces[src].boxes[best[src]]
        landmarks[t] = faces[src].landmarks[best[src]]
    return _Selected(boxes, landmarks, detected, in_shot, others)


def square_region(box: np.ndarray, margin: float) -> tuple[int, int, int]:
    """The square a face crop covers, in frame pixels: (x0, y0, side).

    side = max(box width, box height) * (1 + margin), centred on the box.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return round(cx - side / 2), round(cy - side / 2), max(1, round(side))


def crop_square(
    image: np.ndarray, box: np.ndarray, margin: float, size: int
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Crop a square around ``box`` dilated by ``margin`` and resize it to size x size.

    The square's side is max(box width, box height) * (1 + margin), centred on the box, so the
    face keeps its aspect ratio. Parts of the square outside the frame are black. Returns the
    crop (size, size, 3) and the (x0, y0, scale) that maps frame pixels p to crop pixels
    (p - (x0, y0)) * scale.
    """
    h, w = image.shape[:2]
    x0, y0, s = square_region(box, margin)
    canvas = np.zeros((s, s, 3), np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + s, w), min(y0 + s, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    crop = cv2.resize(canvas, (size, size), interpolation=interp)
    return crop, (float(x0), float(y0), size / s)


def track_faces(
    frames: Frames, faces: list[FrameFaces], contract: Preprocessing, require: bool = True
) -> FaceTrack:
    """Follow and crop the dominant face, given MTCNN's output per frame.

    Raises NoFaceError without any confident face, and (``require``) when the face was
    found in fewer sampled frames than the contract asks (``require_face``).
    """
    c = contract
    shots = shot_ids(frames.images, c.shot_cut) if c.shot_cut < 1.0 else np.zeros(len(faces), int)
    track = select_track(faces, c.min_face_prob, shots, c.min_face_frames(len(faces)))
    if track is None:
        raise NoFaceError("no face found in any sampled frame", 0, frames)
    boxes, landmarks = track.boxes, track.landmarks
    crops = np.empty((len(boxes), c.crop_size, c.crop_size, 3), np.uint8)
    crop_landmarks = np.empty_like(landmarks)
    for t, (image, box) in enumerate(zip(frames.images, boxes)):
        crops[t], (x0, y0, scale) = crop_square(image, box, c.margin, c.crop_size)
        crop_landmarks[t] = (landmarks[t] - (x0, y0)) * scale
    face_track = FaceTrack(
        indices=frames.indices,
        crops=crops,
        boxes=boxes,
        detected=track.detected,
        landmarks=crop_landmarks,
        in_shot=track.in_shot,
        shot_count=int(shots[-1]) + 1,
        other_faces=track.other_faces,
    )
    if require:
        require_face(frames, face_track, c)
    return face_track


def require_face(frames: Frames, track: FaceTrack, contract: Preprocessing) -> None:
    """NoFaceError unless the face was found in the contract's share of the sampled frames."""
    found, sampled = track.frames_with_face, len(track.detected)
    needed = contract.min_face_frames(sampled)
    if found < needed:
        cuts = (
            f" (the sampled frames span {track.shot_count} shots)" if track.shot_count > 1 else ""
        )
        raise NoFaceError(
            f"face found in {found} of {sampled} sampled frames, {needed} needed{cuts}",
            found,
            frames,
        )


def extract_track(frames: Frames, detector: FaceDetector) -> FaceTrack:
    """Detect, track and crop the dominant face of sampled frames. Raises NoFaceError."""
    return track_faces(frames, detector.detect(frames.images), detector.contract)
