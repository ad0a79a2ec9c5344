"""Scan pipeline: decode -> faces (workers) -> model (batched) -> one result per video.

Workers decode and detect faces for upcoming videos while the model scores the current
batch, so the model is not left waiting on MTCNN. The workers are processes: dlib's face
descriptor and much of MTCNN's bookkeeping (its image pyramid and box crops are built on the
CPU also where its networks run on a GPU) hold Python's GIL, so worker threads left the
second core mostly idle on the CPU, and twelve of them on a GPU machine prepared no more
videos than one. Where faces are detected on the CPU and the platform forks (Linux), they
are forked from this one; with the detector on a GPU they are started afresh ("spawn"), as
CUDA does not survive a fork, and each runs MTCNN on the GPU itself. On the CPU without fork
they are threads.

Every face tracked in enough sampled frames is a person (up to ``max_people``, largest
first) with a clip of its own; the clips of all people of all prepared videos go through the
model together, and a video's score is that of its most suspicious person. Expected
per-video outcomes (no face, too short, unreadable, not a video) become results with a
status and no score; nothing here invents a score.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import cached_property
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import cv2
import numpy as np
import torch

from scanner.backends import Backend
from scanner.clip import read_face_clip
from scanner.contract import Preprocessing
from scanner.errors import ClipError
from scanner.faces import FaceDetector, FaceTrack
from scanner.identity import FaceEmbedder
from scanner.report import THUMB_SIZE, PersonResult, VideoResult
from scanner.video import VideoInfo, frame_area, set_decoder_threads

log = logging.getLogger(__name__)


def _cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 2


def default_workers() -> int:
    """Scan workers when none are asked for: the cores this process may use less two (the
    model and the scan's own thread run beside the workers), at least two."""
    return max(2, _cores() - 2)


def decoder_threads(workers: int) -> int:
    """Threads of each video decoder in a scan of ``workers`` worker processes: the cores
    shared out between them, at least one (``scanner.video.set_decoder_threads``)."""
    return max(1, _cores() // max(1, workers))


@dataclass(frozen=True)
class ScanOptions:
    seed: int = 0  # frame sampling seed: the same file and seed give the same frames
    sampling: str | None = None  # None: the checkpoint's sampling method
    threshold: float | None = None  # None: the checkpoint's threshold
    batch_size: int = 8  # clips per model call
    # decode + face detection workers: processes, or threads on the CPU without fork
    # (``Scanner.start_method``); default: the cores less two, at least two
    workers: int = field(default_factory=default_workers)
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
    try:
        clip = read_face_clip(
            path, detector, c.num_frames, sampling, seed, max_people=max_people, embedder=embedder
        )
    except ClipError as e:
        return Prepared(
            path=path,
            status=e.status,
            message=str(e),
            seconds=time.perf_counter() - start,
            info=e.info,
            frames_sampled=e.frames_sampled,
            frames_with_face=e.frames_with_face,
        )
    except OSError as e:
        message = f"{type(e).__name__}: {e.strerror or e}"
        return Prepared(path, "error", message, time.perf_counter() - start)
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
    return Prepared(
        path=path,
        status="ok",
        message="; ".join(notes),
        seconds=time.perf_counter() - start,
        info=info,
        people=clip.people,
        frames_sampled=sampled,
        frames_with_face=track.frames_with_face,
    )


def start_order(path: Path) -> float:
    """Sort key of the videos waiting for a worker: larger frames first (face detection,
    most of a video's cost, grows with the pixels of each frame), unknown sizes first of all
    (as if largest: a large video started last leaves the other workers idle at the end)."""
    area = frame_area(path)
    return -math.inf if area is None else -float(area)


# torch's operator threads in a worker process: the workers run side by side, one per core.
WORKER_TORCH_THREADS = 1


@dataclass(frozen=True)
class PrepareSettings:
    """What the decode + face stage needs, and nothing that does not pickle: a worker
    process builds its own detector and embedder from it."""

    contract: Preprocessing
    detector_device: str
    sampling: str
    seed: int
    max_people: int
    descriptors: bool


class Preparer:
    """The decode + face stage with its detector and embedder, built on first use: one per
    worker thread or worker process."""

    def __init__(self, settings: PrepareSettings) -> None:
        self.settings = settings

    @cached_property
    def detector(self) -> FaceDetector:
        return FaceDetector(self.settings.contract, self.settings.detector_device)

    @cached_property
    def embedder(self) -> FaceEmbedder | None:
        """dlib's face descriptor, or None where it is not asked for or not installed."""
        return FaceEmbedder.load() if self.settings.descriptors else None

    def __call__(self, path: Path) -> Prepared:
        s = self.settings
        start = time.perf_counter()
        try:
            return prepare_video(
                path, self.detector, s.sampling, s.seed, s.max_people, self.embedder
            )
        except Exception as e:  # noqa: BLE001 - one bad video must not end the batch
            log.warning("%s: unexpected failure: %s", path, e, exc_info=log.isEnabledFor(10))
            return Prepared(path, "error", f"{type(e).__name__}: {e}", time.perf_counter() - start)


_worker: Preparer | None = None  # the stage of this process, where it is a worker


@contextlib.contextmanager
def _fork_safe() -> Iterator[None]:
    """Around a fork: the parent's garbage collected first, and everything it holds frozen
    out of the cycle collector, so that a forked worker's collector frees no object of the
    parent. A scan's garbage (an earlier scan's model backend, say) may hold onnxruntime
    sessions whose destructors wait on the parent's thread pool, which a fork does not copy:
    freed in a worker, they hung it for good (a third scan in one test process did). Frozen
    objects also stay unwritten by the worker's collector, so their memory stays shared. A
    freeze made by the program around the scan is left as it is."""
    gc.collect()
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


def _worker_start(settings: PrepareSettings, started: EventType, decoders: int) -> None:
    """In a new worker process: one thread for torch's operators (OpenMP's pool does not
    survive a fork), ``decoders`` threads for each video decoder (``decoder_threads``: the
    workers decode side by side), and this process's own stage (forked: not the parent's
    onnxruntime sessions); ``started`` tells the scan that a worker got this far."""
    global _worker
    from scanner.faces import OnnxNets

    torch.set_num_threads(WORKER_TORCH_THREADS)
    set_decoder_threads(decoders)
    OnnxNets._shared = None  # single-threaded sessions: dropped here without waiting on a pool
    _worker = Preparer(settings)
    started.set()


def _worker_prepare(path: Path) -> Prepared:
    assert _worker is not None, "not a scan worker process"
    return _worker(path)


class Scanner:
    """Scans videos with one backend; call ``run`` with paths and a result callback."""

    AHEAD = 64  # results held back, at most, behind the first video not yet finished

    def __init__(self, backend: Backend, options: ScanOptions = ScanOptions()) -> None:
        self.backend = backend
        self.options = options
        self.contract = backend.contract
        self.sampling = options.sampling or self.contract.sampling
        self.threshold = (
            backend.threshold if options.threshold is None else float(options.threshold)
        )
        detector_device = options.detector_device or getattr(
            backend, "torch_device", torch.device("cpu")
        )
        self.prepare_settings = PrepareSettings(
            contract=self.contract,
            detector_device=str(detector_device),
            sampling=self.sampling,
            seed=options.seed,
            max_people=options.max_people,
            descriptors=options.descriptors,
        )
        self._local = threading.local()
        self._threads_only = False  # set when worker processes could not start
        self._started: EventType | None = None  # set by each worker process that starts

    def _prepare(self, path: Path) -> Prepared:
        """The decode + face stage in this process, with this thread's detector."""
        preparer = getattr(self._local, "preparer", None)
        if preparer is None:
            preparer = self._local.preparer = Preparer(self.prepare_settings)
        return preparer(path)

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
            fps=round(info.fps, 3) if info and info.fps > 0 else None,
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
            mine = slice(at, at + len(p.people))
            at += len(p.people)
            finite = np.isfinite(probs[mine]).all() and np.isfinite(attention[mine]).all()
            if not finite:  # an overflow (fp16), never a verdict
                log.warning("%s: the model gave a non-finite score", p.path)
                message = "model: non-finite score (NaN or infinity)"
                out.append(self._result(p, status="error", message=message))
                continue
            try:
                out.append(self._scored(p, probs[mine], attention[mine], share))
            except Exception as e:  # noqa: BLE001 - one bad video must not end the batch
                log.warning("%s: unexpected failure after scoring: %s", p.path, e)
                out.append(self._result(p, status="error", message=f"{type(e).__name__}: {e}"))
        return out

    def _scored(
        self, p: Prepared, probs: np.ndarray, attention: np.ndarray, share: float
    ) -> VideoResult:
        """The row of a video whose people the model scored ``probs`` (with ``attention``)."""
        people = [
            self._person(k + 1, track, prob, alpha)
            for k, (track, prob, alpha) in enumerate(zip(p.people, probs, attention))
        ]
        # The most suspicious person; the first (largest) of equal scores.
        worst = max(people, key=lambda x: x.score)
        return self._result(
            p,
            score=worst.score,
            label=worst.label,
            people=tuple(people),
            person=worst.person,
            frames_with_face=worst.frames_with_face,
            seconds=p.seconds + share * len(people),
        )

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

    @property
    def start_method(self) -> str | None:
        """How the worker processes start: "fork" where faces are detected on the CPU and
        the platform forks, "spawn" where they are detected on a GPU (CUDA does not survive a
        fork; each worker sets up its own), None (threads) on the CPU without fork, or after
        spawned workers failed to start."""
        if self._threads_only:
            return None
        if torch.device(self.prepare_settings.detector_device).type != "cpu":
            return "spawn"
        return "fork" if "fork" in multiprocessing.get_all_start_methods() else None

    @property
    def uses_processes(self) -> bool:
        """Whether the workers are processes (``start_method``); otherwise threads."""
        return self.start_method is not None

    def _pool(self, workers: int) -> Executor:
        method = self.start_method
        kind = f"processes ({method})" if method else "threads"
        log.debug("%d worker %s decode the videos and detect their faces", workers, kind)
        if method is None:
            return ThreadPoolExecutor(workers, thread_name_prefix="dfscan-prep")
        context = multiprocessing.get_context(method)
        if self._started is None:  # one for every pool of this scanner: have workers started?
            self._started = context.Event()
        pool = ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_worker_start,
            initargs=(self.prepare_settings, self._started, decoder_threads(workers)),
        )
        if method == "fork":
            try:
                with _fork_safe():  # a pool of forked workers forks them all on its first call
                    pool.submit(int)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return pool

    def _fall_back_to_threads(self) -> bool:
        """After the process pool broke: whether its spawned workers died before any of them
        started (most often a script without ``if __name__ == "__main__":``, which a spawned
        worker imports again), in which case the scan goes on with worker threads."""
        if self.start_method != "spawn" or self._started is None or self._started.is_set():
            return False
        log.warning(
            "the scan's worker processes could not start (a script that scans with faces "
            'detected on a GPU must guard its entry point with if __name__ == "__main__":, '
            "as each worker imports it again); going on with worker threads"
        )
        self._threads_only = True
        return True

    def _submit(self, pool: Executor, path: Path) -> Future[Prepared]:
        """The video's call; a pool that broke since the last wait (a worker died) gives a
        call failed with BrokenProcessPool, which the scan then handles as any other."""
        if not isinstance(pool, ProcessPoolExecutor):
            return pool.submit(self._prepare, path)
        try:
            return pool.submit(_worker_prepare, path)
        except BrokenProcessPool as e:
            failed: Future[Prepared] = Future()
            failed.set_exception(e)
            return failed

    def _prepare_alone(self, path: Path) -> Prepared:
        """One video in a worker process of its own, after a worker died on a batch of
        pending videos: its result, or an error row if its worker dies again."""
        start = time.perf_counter()
        with self._pool(1) as pool:
            try:
                return self._submit(pool, path).result()
            except BrokenProcessPool:
                log.warning("%s: the worker process preparing it died", path)
                message = "the worker process decoding this video died (crashed or killed)"
                return Prepared(path, "error", message, time.perf_counter() - start)

    def results(self, paths: Iterable[Path]) -> Iterator[VideoResult]:
        """One result per path, in the order of ``paths``, each as soon as it and those
        before it exist.

        Workers decode and detect ahead while the model scores: videos are scored as they
        are prepared, in any order (at most batch_size clips a call, one per person), so one
        slow video does not leave the workers idle behind it; results wait in order, at most
        ``AHEAD`` videos past the first unfinished one (their crops are dropped once scored).
        Videos are handed to the workers the next result first, then the largest frames
        first of those read ahead (``refill``, ``start_order``), so that a 1080p video met
        last does not run alone while the other workers idle. Closing the iterator early
        cancels the videos not yet started. A worker process that dies (a decoder crash,
        the OOM killer) breaks its pool, failing every call not yet done: the first of them
        handed over is run again alone in a new process, the others in a new pool (which
        breaks again if the culprit is among them, and so on), so only a video whose worker
        dies again when alone is an ``error`` row. Spawned workers that all die before
        starting (``_fall_back_to_threads``) give way to worker threads.
        """
        todo = iter(paths)
        workers = max(1, self.options.workers)
        window = workers * 2 + self.options.batch_size  # videos submitted, not yet prepared
        queued: dict[int, Path] = {}  # read from paths, not yet yielded
        unstarted: dict[int, float] = {}  # queued, not yet handed to the workers: start_order
        running: dict[Future[Prepared], int] = {}
        handed: dict[int, int] = {}  # running index -> its place in the order handed over
        tickets = itertools.count()
        prepared: list[tuple[int, Prepared]] = []  # ok videos waiting for the model
        finished: dict[int, VideoResult] = {}
        head = 0  # the next index to yield
        pool = self._pool(workers)

        def hand(index: int) -> None:
            handed[index] = next(tickets)
            running[self._submit(pool, queued[index])] = index

        def refill() -> None:
            """Hand videos to the workers, at most ``window`` not yet prepared: the head first
            (the next result to yield), then the largest frames first (``start_order``) of
            up to ``window`` more read ahead (and at most AHEAD past the head). The workers
            start them in the order they are handed over."""
            while True:
                while len(unstarted) < window and len(queued) < self.AHEAD:
                    path = next(todo, None)
                    if path is None:
                        break
                    index = head + len(queued)
                    queued[index] = Path(path)
                    unstarted[index] = start_order(Path(path))
                if not unstarted or len(running) >= window:
                    return
                first = head if head in unstarted else min(unstarted, key=unstarted.__getitem__)
                del unstarted[first]
                hand(first)

        def restart() -> None:
            """After a worker process died: the first of its videos handed over alone (the
            workers had started it), the rest again in their order (all in threads if no
            worker process could start)."""
            nonlocal pool
            lost = sorted(running.values(), key=handed.__getitem__)
            running.clear()
            handed.clear()
            pool.shutdown(wait=True, cancel_futures=True)
            if self._fall_back_to_threads():
                lost_alone = []
            else:
                log.warning("a scan worker process died; running its %d videos again", len(lost))
                lost_alone, lost = lost[:1], lost[1:]
            pool = self._pool(workers)
            for index in lost:
                hand(index)
            for index in lost_alone:  # while the new pool works on the others
                add(index, self._prepare_alone(queued[index]))

        def add(index: int, p: Prepared) -> None:
            if p.status == "ok":
                prepared.append((index, p))
            else:
                finished[index] = self._result(p)

        def score(everything: bool) -> None:
            """The prepared videos through the model, batch_size clips a call; ``everything``
            False leaves a last part of less than batch_size clips for later."""
            while prepared:
                batch: list[tuple[int, Prepared]] = []
                clips = 0
                for item in prepared:
                    if batch and clips + len(item[1].people) > self.options.batch_size:
                        break
                    batch.append(item)
                    clips += len(item[1].people)
                if (
                    not everything
                    and clips < self.options.batch_size
                    and len(batch) == len(prepared)
                ):
                    return
                del prepared[: len(batch)]
                for (index, _), r in zip(batch, self._score([p for _, p in batch])):
                    finished[index] = r

        try:
            refill()
            while queued:
                if running and head not in finished:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    broken = False
                    for future in done:
                        index = running.pop(future)
                        try:
                            add(index, future.result())
                            del handed[index]
                        except BrokenProcessPool:
                            running[future] = index
                            broken = True
                    if broken:
                        restart()
                # Score when a batch is full, when the first unfinished video waits for the
                # model, or when nothing is left to wait for.
                waiting = any(index == head for index, _ in prepared)
                score(everything=waiting or not running)
                refill()
                while head in finished:
                    queued.pop(head)
                    r = finished.pop(head)
                    head += 1
                    if r.status != "ok":
                        log.warning("%s: %s (%s)", r.path, r.status, r.message)
                    yield r
                refill()
        finally:
            for future in running:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
