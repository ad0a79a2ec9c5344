"""One video -> the face clips the model sees: sampled frames, the face tracks, crops.

The scan, training's preprocessing, export's parity face and the bench all call
``read_face_clip``, so every path crops alike.

The dominant face decides where the clip is sampled; with ``max_people`` > 1 the further
faces tracked in the same sampled frames (each in enough of them, the contract's rule) come
with it, each a clip of its own over the same frames.

Frames are sampled over the whole video. When the sample straddles a shot cut, the dominant
face lives in one shot only and the crops of the other shots' frames would show whatever is
at its place there (another person, the audience). Then the clip is sampled again inside the
face's shot, between the first and the last sampled frame known to lie in it (or, if that is
too short, up to the neighbouring shots' sampled frames), and tracked again: one more decode
and detection pass, only for videos where a cut was seen. A face whose shot is too short for
a clip of one shot makes the video ``too_short``: a clip that mixed shots would be scored on
frames that do not show the face.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scanner.faces import FaceDetector, FaceTrack, NoFaceError, require_face, track_people
from scanner.identity import FaceEmbedder
from scanner.video import Frames, TooShortError, read_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceClip:
    frames: Frames
    people: tuple[FaceTrack, ...]  # largest first; people[0] is the dominant face
    refocused: bool  # sampled again inside the face's shot after a cut

    @property
    def track(self) -> FaceTrack:
        """The dominant face."""
        return self.people[0]


@dataclass
class StageClock:
    """Seconds spent decoding, detecting, computing identity descriptors and tracking/cropping
    (descriptors not included), summed over calls (failed ones too)."""

    decode: float = 0.0
    detect: float = 0.0
    crop: float = 0.0
    identity: float = 0.0  # the embedder's descriptors, where tracks needed them
    frames: int = 0  # sampled frames decoded and run through face detection
    descriptors: int = 0  # identity descriptors computed (a count that timing noise leaves alone)


class _TimedEmbedder:
    """An embedder whose calls add their seconds to ``clock.identity`` and the descriptors it
    computed to ``clock.descriptors``."""

    def __init__(self, embedder: FaceEmbedder, clock: StageClock) -> None:
        self.embedder, self.clock = embedder, clock

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray | None]:
        start = time.perf_counter()
        try:
            found = self.embedder(image, boxes)
        finally:
            self.clock.identity += time.perf_counter() - start
        self.clock.descriptors += sum(d is not None for d in found)
        return found


def _one_pass(
    path: Path,
    detector: FaceDetector,
    num_frames: int,
    sampling: str,
    seed: int,
    span: tuple[int, int] | None,
    require: bool,
    clock: StageClock,
    max_people: int,
    embedder: FaceEmbedder | None,
) -> tuple[Frames, list[FaceTrack]]:
    """Decode, detect and track once (over frames span[0]..span[1] if given), timed."""
    t0 = time.perf_counter()
    frames = read_frames(path, num_frames, sampling, seed, span)
    t1 = time.perf_counter()
    faces = detector.detect(frames.images)
    t2 = time.perf_counter()
    clock.decode += t1 - t0
    clock.detect += t2 - t1
    clock.frames += len(frames.indices)
    identity = clock.identity
    timed = _TimedEmbedder(embedder, clock) if embedder is not None else None
    try:
        return frames, track_people(frames, faces, detector.contract, max_people, require, timed)
    finally:
        clock.crop += time.perf_counter() - t2 - (clock.identity - identity)


def read_face_clip(
    path: Path,
    detector: FaceDetector,
    num_frames: int,
    sampling: str,
    seed: int,
    clock: StageClock | None = None,
    max_people: int = 1,
    embedder: FaceEmbedder | None = None,
) -> FaceClip:
    """Sample ``num_frames`` frames of ``path`` and crop the dominant face, inside one shot,
    and up to ``max_people`` - 1 further faces of the same frames (``track_people``; with an
    ``embedder``, tracks are kept one person each by identity descriptors too).

    Raises VideoError subclasses for unreadable videos, NoFaceError when too few sampled
    frames show the face, and TooShortError when the face's shot is too short to sample
    ``num_frames`` frames from it. The face rule is judged on the whole-video sample when it
    lies in one shot, else on the sample taken again inside the face's shot: a long video of
    many short shots, where no face can be in a third of frames sampled across all of them, is
    judged by the shot of its most prominent face.
    """
    contract = detector.contract
    clock = clock or StageClock()

    def run(span: tuple[int, int] | None, require: bool) -> tuple[Frames, list[FaceTrack]]:
        return _one_pass(
            path, detector, num_frames, sampling, seed, span, require, clock, max_people, embedder
        )

    frames, people = run(span=None, require=False)
    track = people[0]
    if track.in_shot.all():
        require_face(frames, track, contract)
        return FaceClip(frames, tuple(people), refocused=False)
    spans = shot_spans(frames, track.in_shot)
    no_face: NoFaceError | None = None
    for span in (s for s in spans if s[1] - s[0] + 1 >= num_frames):
        try:
            again = run(span, require=True)
        except NoFaceError as e:
            log.info("%s: no face on sampling frames %d..%d again (%s)", path, *span, e)
            no_face = no_face or e
            continue
        if again[1][0].in_shot.all():
            log.info("%s: shot cut; clip sampled again in frames %d..%d", path, *span)
            return FaceClip(again[0], tuple(again[1]), refocused=True)
        log.info("%s: frames %d..%d hold a cut too", path, *span)
    require_face(frames, track, contract)
    if no_face is not None:  # the shot is long enough; the face rule is judged inside it
        raise no_face
    lo, hi = spans[-1]
    found = (frames.info, len(frames.indices), track.frames_with_face)  # what the row reports
    if hi - lo + 1 >= num_frames:
        raise TooShortError(
            f"the tracked face's shot is too short: frames {lo}..{hi} around it hold "
            f"further cuts, and {num_frames} frames of one shot are needed",
            *found,
        )
    raise TooShortError(
        f"the tracked face's shot is too short: at most frames {lo}..{hi} "
        f"({hi - lo + 1}), {num_frames} frames of one shot needed",
        *found,
    )


def shot_spans(frames: Frames, in_shot: np.ndarray) -> list[tuple[int, int]]:
    """Frame ranges to sample the face's shot from again: between its first and last sampled
    frame (surely inside the shot), then up to the sampled frames of the shots around it
    (the cuts lie somewhere in between)."""
    indices = np.asarray(frames.indices)
    inside = np.flatnonzero(in_shot)
    first, last = int(inside[0]), int(inside[-1])
    sure = int(indices[first]), int(indices[last])
    lo = int(indices[first - 1]) + 1 if first > 0 else 0
    hi = int(indices[last + 1]) - 1 if last + 1 < len(indices) else frames.info.frame_count - 1
    return [sure] if (lo, hi) == sure else [sure, (lo, hi)]
