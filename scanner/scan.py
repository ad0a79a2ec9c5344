"""Scan pipeline: decode -> faces (worker threads) -> model (batched) -> one result per video.

Workers decode and detect faces for upcoming videos while the model scores the current
batch, so the model is not left waiting on MTCNN. Expected per-video outcomes (no face, too
short, unreadable, not a video) become results with a status and no score; nothing here
invents a score.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scanner.backends import Backend
from scanner.clip import read_face_clip
from scanner.faces import FaceDetector, FaceTrack, NoFaceError
from scanner.report import VideoResult
from scanner.video import VideoError, VideoInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanOptions:
    seed: int = 0  # frame sampling seed: the same file and seed give the same frames
    sampling: str | None = None  # None: the checkpoint's sampling method
    threshold: float | None = None  # None: the checkpoint's threshold
    batch_size: int = 8  # clips per model call
    workers: int = 2  # decode + face detection threads
    detector_device: str | None = None  # None: the backend's device


@dataclass(frozen=True)
class Prepared:
    """Output of the decode + face stage for one video."""

    path: Path
    status: str
    message: str
    seconds: float
    info: VideoInfo | None = None
    track: FaceTrack | None = None
    frames_sampled: int = 0
    frames_with_face: int = 0


def prepare_video(path: Path, detector: FaceDetector, sampling: str, seed: int) -> Prepared:
    """Decode the sampled frames of one video and crop its face track."""
    start = time.perf_counter()
    c = detector.contract
    info = None
    sampled = 0
    try:
        clip = read_face_clip(path, detector, c.num_frames, sampling, seed)
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
                f"{n} other face{'s' if n > 1 else ''} seen in at least "
                f"{c.min_face_frames(sampled)} of the {sampled} sampled frames, left unscored "
                "(only the most prominent face is scored)"
            )
        note = "; ".join(notes)
    except (VideoError, NoFaceError) as e:
        info = info or getattr(e, "info", None)
        return Prepared(
            path=path,
            status=e.status,
            message=str(e),
            seconds=time.perf_counter() - start,
            info=info,
            frames_sampled=getattr(e, "frames_sampled", sampled),
            frames_with_face=getattr(e, "frames_with_face", 0),
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
        track=track,
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

    def _prepare(self, path: Path) -> Prepared:
        start = time.perf_counter()
        try:
            return prepare_video(path, self._detector(), self.sampling, self.options.seed)
        except Exception as e:  # noqa: BLE001 - one bad video must not end the batch
            log.warning("%s: unexpected failure: %s", path, e, exc_info=log.isEnabledFor(10))
            return Prepared(path, "error", f"{type(e).__name__}: {e}", time.perf_counter() - start)

    def _result(self, p: Prepared, **kw: object) -> VideoResult:
        info = p.info
        track = p.track
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
            frames_with_face=p.frames_with_face,
            width=info.width if info else None,
            height=info.height if info else None,
            fps=round(info.fps, 3) if info else None,
            duration_s=round(info.duration_s, 3) if info else None,
            indices=track.indices if track else (),
            boxes=tuple(tuple(float(v) for v in b) for b in track.boxes) if track else (),
            detected=tuple(bool(d) for d in track.detected) if track else (),
            **kw,
        )

    def _score(self, batch: list[Prepared]) -> list[VideoResult]:
        """Run the model on prepared clips; a failing batch is retried clip by clip."""
        start = time.perf_counter()
        try:
            probs, attention = self.backend(np.stack([p.track.crops for p in batch]))
        except (RuntimeError, ValueError) as e:
            if len(batch) > 1:
                log.warning("batch of %d failed (%s); scoring one by one", len(batch), e)
                return [r for p in batch for r in self._score([p])]
            log.warning("%s: model failed: %s", batch[0].path, e)
            return [self._result(batch[0], status="error", message=f"model: {e}")]
        share = (time.perf_counter() - start) / len(batch)
        out = []
        for p, prob, alpha in zip(batch, probs, attention):
            score = float(prob)
            out.append(
                self._result(
                    p,
                    score=score,
                    label="FAKE" if score >= self.threshold else "REAL",
                    attention=tuple(float(a) for a in alpha),
                    seconds=p.seconds + share,
                )
            )
        return out

    def run(
        self,
        paths: Sequence[Path],
        on_result: Callable[[VideoResult], None],
    ) -> Counter[str]:
        """Scan ``paths``; ``on_result`` gets each result as soon as it exists.

        Returns the number of videos per status.
        """
        counts: Counter[str] = Counter()
        window = max(1, self.options.workers) * 2 + self.options.batch_size
        todo = iter(paths)
        pending: deque[Future[Prepared]] = deque()

        def emit(r: VideoResult) -> None:
            counts[r.status] += 1
            if r.status != "ok":
                log.warning("%s: %s (%s)", r.path, r.status, r.message)
            on_result(r)

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
                    # Batch whatever else is already prepared, without waiting for more.
                    while (
                        pending
                        and pending[0].done()
                        and sum(r.status == "ok" for r in ready) < self.options.batch_size
                    ):
                        ready.append(pending.popleft().result())
                    refill()
                    clips = [p for p in ready if p.status == "ok"]
                    scored = iter(self._score(clips) if clips else [])
                    for p in ready:
                        emit(next(scored) if p.status == "ok" else self._result(p))
            finally:
                for f in pending:
                    f.cancel()
        return counts
