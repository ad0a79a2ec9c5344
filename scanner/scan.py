"""Scan pipeline: decode -> faces (worker threads) -> model (batched) -> one result per video.

Workers decode and detect faces for upcoming videos while the model scores the current
batch, so the model is not left waiting on MTCNN. Every face tracked in enough sampled frames
is a person (up to ``max_people``, largest first) with a clip of its own; the clips of all
people of all prepared videos go through the model together, and a video's score is that of
its most suspicious person. Expected per-video outcomes (no face, too
short, unreadable, not a video) become results with a status and no score; nothing here
invents a score.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from scanner.backends import Backend
from scanner.clip import read_face_clip
from scanner.errors import ClipError
from scanner.faces import FaceDetector, FaceTrack
from scanner.identity import FaceEmbedder
from scanner.report import THUMB_SIZE, PersonResult, VideoResult
from scanner.video import VideoInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanOptions:
    seed: int = 0  # frame sampling seed: the same file and seed give the same frames
    sampling: str | None = None  # None: the checkpoint's sampling method
    threshold: float | None = None  # None: the checkpoint's threshold
    batch_size: int = 8  # clips per model call
    workers: int = 2  # decode + face detection threads
    detector_device: str | None = None  # None: the backend's device
    max_people: int = 4  # faces scored per video, largest first
    # Keep face tracks one person each with dlib's face descriptors where installed
    # (scanner.identity); False: by position and size only.
    descriptors: bool = True
    thumbnails: bool = False  # keep each person's crops, shrunk, for the details and report


@dataclass(frozen=True)
class Prepared:
    """Output of the decode + face stage for one video."""

    path: Path
    status: str
    message: str
    seconds: float
    info: VideoInfo | None = None
    people: tuple[FaceTrack, ...] = ()  # largest first
    frames_sampled: int = 0
    frames_with_face: int = 0


def prepare_video(
    path: Path,
    detector: FaceDetector,
    sampling: str,
    seed: int,
    max_people: int = 1,
    embedder: FaceEmbedder | None = None,
) -> Prepared:
    """Decode the sampled frames of one video and crop its face tracks (``read_face_clip``)."""
    start = time.perf_counter()
    c = detector.contract
    info = None
    sampled = 0
    try:
        clip = read_face_clip(
            path, detector, c.num_frames, sampling, seed, max_people=max_people, embedder=embedder
        )
        info, sampled, track = clip.frames.info, len(clip.frames.indices), clip.track
        notes = [info.note] if info.note else []
        if clip.refocused:
            first, last = track.indices[0], track.indices[-1]
            notes.append(
                f"shot cut: clip sampled again inside the face's shot (frames {first}..{last})"
            )
        if track.other_faces:
            n = track.other_faces
            notes.append(
                f"{n} more face{'s' if n > 1 else ''} seen in at least "
                f"{c.min_face_frames(sampled)} of the {sampled} sampled frames, left unscored "
                f"(at most {max_people} {'people are' if max_people > 1 else 'person is'} "
                "scored per video)"
            )
        note = "; ".join(notes)
    except ClipError as e:
        return Prepared(
            path=path,
            status=e.status,
            message=str(e),
            seconds=time.perf_counter() - start,
            info=info or e.info,
            frames_sampled=e.frames_sampled or sampled,
            frames_with_face=e.frames_with_face,
        )
    except OSError as e:
        return Prepared(
            path,
            "error",
            f"{type(e).__name__}: {e.strerror or e}",
            time.perf_counter() - start,
            info,
            frames_sampled=sampled,
        )
    return Prepared(
        path=path,
        status="ok",
        message=note,
        seconds=time.perf_counter() - start,
        info=info,
        people=clip.people,
        frames_sampled=sampled,
        frames_with_face=track.frames_with_face,
    )


class Scanner:
    """Scans videos with one backend; call ``run`` with paths and a result callback."""

    def __init__(self, backend: Backend, options: ScanOptions = ScanOptions()) -> None:
        self.backend = backend
        self.options = options
        self.contract = backend.contract
        self.sampling = options.sampling or self.contract.sampling
        self.threshold = (
            backend.threshold if options.threshold is None else float(options.threshold)
        )
        self.detector_device = options.detector_device or getattr(
            backend, "torch_device", torch.device("cpu")
        )
        self._local = threading.local()

    def _detector(self) -> FaceDetector:
        det = getattr(self._local, "detector", None)
        if det is None:
            det = self._local.detector = FaceDetector(self.contract, self.detector_device)
        return det

    def _embedder(self) -> FaceEmbedder | None:
        if not self.options.descriptors:
            return None
        if not hasattr(self._local, "embedder"):
            self._local.embedder = FaceEmbedder.load()
        return self._local.embedder

    def _prepare(self, path: Path) -> Prepared:
        start = time.perf_counter()
        try:
            return prepare_video(
                path,
                self._detector(),
                self.sampling,
                self.options.seed,
                self.options.max_people,
                self._embedder(),
            )
        except Exception as e:  # noqa: BLE001 - one bad video must not end the batch
            log.warning("%s: unexpected failure: %s", path, e, exc_info=log.isEnabledFor(10))
            return Prepared(path, "error", f"{type(e).__name__}: {e}", time.perf_counter() - start)

    def _result(self, p: Prepared, **kw: object) -> VideoResult:
        info = p.info
        first = p.people[0] if p.people else None
        return VideoResult(
            path=str(p.path),
            status=kw.pop("status", p.status),
            message=kw.pop("message", p.message),
            threshold=self.threshold,
            model=self.backend.model_label,
            backend=self.backend.name,
            device=self.backend.device,
            seconds=kw.pop("seconds", p.seconds),
            frames_sampled=p.frames_sampled,
            frames_with_face=kw.pop("frames_with_face", p.frames_with_face),
            width=info.width if info else None,
            height=info.height if info else None,
            fps=round(info.fps, 3) if info else None,
            duration_s=round(info.duration_s, 3) if info else None,
            faces_left_unscored=first.other_faces if first else 0,
            identity=first.identity if first else None,
            **kw,
        )

    def _label(self, score: float) -> str:
        return "FAKE" if score >= self.threshold else "REAL"

    def _person(
        self, number: int, track: FaceTrack, prob: float, alpha: np.ndarray
    ) -> PersonResult:
        thumbs = None
        if self.options.thumbnails:
            size = (THUMB_SIZE, THUMB_SIZE)
            thumbs = np.stack(
                [cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in track.crops]
            )
        score = float(prob)
        return PersonResult(
            person=number,
            score=score,
            label=self._label(score),
            indices=tuple(int(i) for i in track.indices),
            boxes=tuple(tuple(float(v) for v in b) for b in track.boxes),
            detected=tuple(bool(d) for d in track.detected),
            attention=tuple(float(a) for a in alpha),
            thumbnails=thumbs,
        )

    def _forward(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model on (N, T, S, S, 3) clips, at most batch_size clips per call."""
        step = self.options.batch_size
        parts = [self.backend(clips[i : i + step]) for i in range(0, len(clips), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _score(self, batch: list[Prepared]) -> list[VideoResult]:
        """Run the model on the clips of every person of the prepared videos together; a
        failing batch is retried video by video."""
        start = time.perf_counter()
        try:
            probs, attention = self._forward(np.stack([t.crops for p in batch for t in p.people]))
        except (RuntimeError, ValueError) as e:
            if len(batch) > 1:
                log.warning("batch of %d videos failed (%s); scoring one by one", len(batch), e)
                return [r for p in batch for r in self._score([p])]
            log.warning("%s: model failed: %s", batch[0].path, e)
            return [self._result(batch[0], status="error", message=f"model: {e}")]
        clips = sum(len(p.people) for p in batch)
        share = (time.perf_counter() - start) / clips
        out = []
        at = 0
        for p in batch:
            people = [
                self._person(k + 1, track, probs[at + k], attention[at + k])
                for k, track in enumerate(p.people)
            ]
            at += len(people)
            # The most suspicious person; the first (largest) of equal scores.
            worst = max(people, key=lambda x: x.score)
            out.append(
                self._result(
                    p,
                    score=worst.score,
                    label=worst.label,
                    people=tuple(people),
                    person=worst.person,
                    frames_with_face=worst.frames_with_face,
                    seconds=p.seconds + share * len(people),
                )
            )
        return out

    def score(self, prepared: Sequence[Prepared]) -> list[VideoResult]:
        """One result per prepared video, in order: the clips of every ``ok`` one through the
        model together (as ``results`` batches them), the others as rows of their status.
        Engines that prepare videos elsewhere (scanner.ray_engine) score them with this."""
        clips = [p for p in prepared if p.status == "ok"]
        scored = iter(self._score(clips) if clips else [])
        return [next(scored) if p.status == "ok" else self._result(p) for p in prepared]

    def run(
        self,
        paths: Sequence[Path],
        on_result: Callable[[VideoResult], None],
    ) -> Counter[str]:
        """Scan ``paths``; ``on_result`` gets each result as soon as it exists.

        Returns the number of videos per status.
        """
        counts: Counter[str] = Counter()
        for r in self.results(paths):
            counts[r.status] += 1
            on_result(r)
        return counts

    def results(self, paths: Iterable[Path]) -> Iterator[VideoResult]:
        """One result per path, in the order of ``paths``, each as soon as it exists.

        Workers decode and detect ahead while the model scores; closing the iterator early
        cancels the videos not yet started.
        """
        window = max(1, self.options.workers) * 2 + self.options.batch_size
        todo = iter(paths)
        pending: deque[Future[Prepared]] = deque()

        def logged(r: VideoResult) -> VideoResult:
            if r.status != "ok":
                log.warning("%s: %s (%s)", r.path, r.status, r.message)
            return r

        workers = max(1, self.options.workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="dfscan-prep") as pool:

            def refill() -> None:
                while len(pending) < window:
                    path = next(todo, None)
                    if path is None:
                        return
                    pending.append(pool.submit(self._prepare, Path(path)))

            try:
                refill()
                while pending:
                    ready = [pending.popleft().result()]
                    # Batch whatever else is already prepared, without waiting for more, up
                    # to batch_size clips (one per person).
                    while (
                        pending
                        and pending[0].done()
                        and sum(len(r.people) for r in ready if r.status == "ok")
                        + len(pending[0].result().people)
                        <= self.options.batch_size
                    ):
                        ready.append(pending.popleft().result())
                    refill()
                    clips = [p for p in ready if p.status == "ok"]
                    scored = iter(self._score(clips) if clips else [])
                    for p in ready:
                        yield logged(next(scored) if p.status == "ok" else self._result(p))
            finally:
                for f in pending:
                    f.cancel()
