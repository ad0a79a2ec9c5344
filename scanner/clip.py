"""One video -> the face clip the model sees: sampled frames, the dominant face track, crops.

The scan, training's preprocessing, export's parity face and the bench all call
``read_face_clip``, so every path crops alike.

Frames are sampled over the whole video. When the sample straddles a shot cut, the dominant
face lives in one shot only and the crops of the other shots' frames would show whatever is
at its place there (another person, the audience). Then the clip is sampled again inside the
face's shot, between the first and the last sampled frame known to lie in it, and tracked
again: one more decode and detection pass, only for videos where a cut was seen.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scanner.faces import FaceDetector, FaceTrack, NoFaceError, require_face, track_faces
from scanner.video import Frames, read_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceClip:
    frames: Frames
    track: FaceTrack
    refocused: bool  # sampled again inside the face's shot after a cut


@dataclass
class StageClock:
    """Seconds spent decoding, detecting and tracking/cropping, summed over calls (failed
    ones too)."""

    decode: float = 0.0
    detect: float = 0.0
    crop: float = 0.0


class _Passes:
    """Decode, detect and track passes over one video, timed per stage."""

    def __init__(
        self,
        path: Path,
        detector: FaceDetector,
        num_frames: int,
        sampling: str,
        seed: int,
        clock: StageClock,
    ):
        self.args = (path, num_frames, sampling, seed)
        self.detector = detector
        self.clock = clock

    def run(self, span: tuple[int, int] | None, require: bool) -> tuple[Frames, FaceTrack]:
        path, num_frames, sampling, seed = self.args
        detector = self.detector
        t0 = time.perf_counter()
        frames = read_frames(path, num_frames, sampling, seed, span)
        t1 = time.perf_counter()
        faces = detector.detect(frames.images)
        t2 = time.perf_counter()
        self.clock.decode += t1 - t0
        self.clock.detect += t2 - t1
        try:
            return frames, track_faces(frames, faces, detector.contract, require)
        finally:
            self.clock.crop += time.perf_counter() - t2


def read_face_clip(
    path: Path,
    detector: FaceDetector,
    num_frames: int,
    sampling: str,
    seed: int,
    clock: StageClock | None = None,
) -> FaceClip:
    """Sample ``num_frames`` frames of ``path`` and crop the dominant face, inside one shot.

    Raises VideoError subclasses for unreadable videos and NoFaceError when too few sampled
    frames show the face: judged on the whole-video sample when it lies in one shot, else on
    the sample taken again inside the face's shot. So a long video of many short shots, where
    no face can be in a third of frames sampled across all of them, is judged by the shot of
    its most prominent face.
    """
    contract = detector.contract
    passes = _Passes(path, detector, num_frames, sampling, seed, clock or StageClock())
    frames, track = passes.run(span=None, require=False)
    if track.in_shot.all():
        require_face(frames, track, contract)
        return FaceClip(frames, track, refocused=False)
    inside = np.asarray(frames.indices)[track.in_shot]
    span = int(inside[0]), int(inside[-1])
    if span[1] - span[0] + 1 < num_frames:
        require_face(frames, track, contract)
        log.info(
            "%s: the face's shot spans frames %d..%d, too few to sample %d again; keeping the "
            "first sample (%d of its frames lie in other shots)",
            path,
            *span,
            num_frames,
            int((~track.in_shot).sum()),
        )
        return FaceClip(frames, track, refocused=False)
    try:
        again = passes.run(span, require=True)
    except NoFaceError as e:
        log.info("%s: no face on sampling frames %d..%d again (%s)", path, *span, e)
    else:
        if again[1].in_shot.sum() >= track.in_shot.sum():
            log.info("%s: shot cut; clip sampled again in frames %d..%d", path, *span)
            return FaceClip(*again, refocused=True)
    require_face(frames, track, contract)
    return FaceClip(frames, track, refocused=False)
