"""`dfscan scan --engine ray`: the scan as a Ray Data pipeline, results back on the driver.

The driver lists the videos (as the local engine does); a Ray Data pipeline then runs the
two stages of ``scanner.scan`` on the cluster:

1. decode + faces: ``prepare_video`` in a pool of CPU actors (one MTCNN and one dlib
   embedder per actor), one video per call. A block carries the video's index, its
   ``Prepared`` record without the crops (pickled, a few KB) and the crops as a tensor
   column, (people, T, S, S, 3) uint8.
2. model: ``Scanner.score`` in a pool of scoring actors (``ActorPoolStrategy``), one model
   load per actor, ``num_gpus=1`` each when the cluster has GPUs; ``batch_size`` videos per
   call, their clips batched as locally. A block carries the index and the ``VideoResult``.

Results come back in the order they finish and the caller writes them as they arrive (the
CLI through the same ``ResultWriter`` as locally), so resume, statuses and exit codes are the
local engine's. A Python exception in either stage is already a row (``prepare_video`` and
``Scanner.score`` turn them into ``error`` rows with the reason). A worker process that dies
(a crash in a decoder, the kernel's out-of-memory killer) takes its block with it: Ray
restarts the actor and retries the call ``task_retries`` times; a block that still fails is
dropped by Ray Data (``max_errored_blocks``), and its videos are run again one per block, so
that one bad video does not take its batch with it; a video that fails that way too is an
``error`` row that says so. No video is left without a row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scanner.contract import Preprocessing
from scanner.report import VideoResult
from scanner.scan import Prepared, ScanOptions

if TYPE_CHECKING:
    from scanner.backends import Backend
    from scanner.faces import FaceDetector
    from scanner.identity import FaceEmbedder

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'pip install "dfscan[ray]" (Ray Data: ray[data])'

# Tests only: the scoring actor ends its process (as a crash would) on a video whose path ends
# with this, read on the driver when a scan starts.
CRASH_ON_ENV = "DFSCAN_RAY_CRASH_ON"

# Blocks the video list is cut into: one video per block up to this many videos, so a block
# that fails takes as few videos with it as the driver's memory for block references allows.
MAX_INPUT_BLOCKS = 20_000


class RayUnavailable(RuntimeError):
    """Ray Data is not installed."""


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or RayUnavailable saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - ray without the [data] extra lacks pyarrow
    except ImportError as e:
        raise RayUnavailable(f"--engine ray needs Ray Data ({e}): {RAY_INSTALL_HINT}") from e
    return ray


@dataclass(frozen=True)
class ModelSpec:
    """How each scoring actor loads the model: ``scanner.api.load_backend``'s arguments.
    ``weights`` must be readable at this path on every node (a shared filesystem)."""

    weights: Path
    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a Ray instance started on this machine
    task_retries: int = 2  # calls of a dead actor run again this many times (then one by one)
    scoring_actors: int | None = None  # None: one per GPU, else one per 4 CPUs (at least 1)
    decode_actors: int | None = None  # None: the cluster's CPUs less the scoring actors'


class _Decode:
    """Ray Data stage 1 (an actor): decode and crop the faces of one video per call."""

    def __init__(self, contract: Preprocessing, sampling: str, options: ScanOptions) -> None:
        from scanner.faces import FaceDetector
        from scanner.identity import FaceEmbedder

        self.contract, self.sampling, self.options = contract, sampling, options
        self.detector: FaceDetector = FaceDetector(contract, "cpu")
        self.embedder: FaceEmbedder | None = FaceEmbedder.load() if options.descriptors else None

    def _prepare(self, path: Path) -> Prepared:
        from scanner.scan import prepare_video

        start = time.perf_counter()
        try:
            return prepare_video(
                path,
                self.detector,
                self.sampling,
                self.options.seed,
                self.options.max_people,
                self.embedder,
            )
        except Exception as e:  # noqa: BLE001 - one bad video is a row, as in Scanner
            log.warning("%s: unexpected failure: %s", path, e)
            return Prepared(path, "error", f"{type(e).__name__}: {e}", time.perf_counter() - start)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        c = self.contract
        indices, records, crops = [], [], []
        for index, path in zip(batch["index"], batch["path"]):
            p = self._prepare(Path(str(path)))
            # (people, T, S, S, 3) uint8; (0, T, S, S, 3) for a video without a clip
            empty = np.zeros((0, c.num_frames, c.crop_size, c.crop_size, 3), np.uint8)
            crops.append(np.stack([t.crops for t in p.people]) if p.people else empty)
            light = tuple(dataclasses.replace(t, crops=empty[:0]) for t in p.people)
            records.append(pickle.dumps(dataclasses.replace(p, people=light), protocol=5))
            indices.append(int(index))
        return {
            "index": np.asarray(indices, np.int64),
            "prepared": np.asarray(records, dtype=object),
            "crops": _column(crops),
        }


class _Score:
    """Ray Data stage 2 (an actor): the model on the clips of a batch of prepared videos."""

    def __init__(self, model: ModelSpec, options: ScanOptions, crash_on: str | None) -> None:
        from scanner.api import load_backend
        from scanner.scan import Scanner

        backend = load_backend(model.weights, model.backend, model.device, model.precision)
        self.scanner = Scanner(backend, options)
        self.crash_on = crash_on

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared = []
        for record, crops in zip(batch["prepared"], batch["crops"]):
            p: Prepared = pickle.loads(record)
            if self.crash_on and str(p.path).endswith(self.crash_on):
                os._exit(17)  # a crash, as a segfault in a native library would be
            people = tuple(dataclasses.replace(t, crops=c) for t, c in zip(p.people, crops))
            prepared.append(dataclasses.replace(p, people=people))
        results = self.scanner.score(prepared)
        return {
            "index": np.asarray(batch["index"], np.int64),
            "result": np.asarray([pickle.dumps(r, protocol=5) for r in results], dtype=object),
        }


def _column(arrays: list[np.ndarray]) -> np.ndarray:
    """A batch column of one array per row: (rows, ...) when their shapes agree, else an
    object array of the arrays (Ray Data stores it as a variable-shaped tensor column)."""
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    column = np.empty(len(arrays), dtype=object)
    column[:] = arrays
    return column


def _pools(ray: Any, model: ModelSpec, options: RayOptions) -> tuple[int, int, float]:
    """(decode actors, scoring actors, GPUs per scoring actor) for this cluster."""
    resources = ray.cluster_resources()
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = int(resources.get("GPU", 0))
    use_gpus = gpus > 0 and not model.device.startswith("cpu")
    scorers = options.scoring_actors or (gpus if use_gpus else max(1, cpus // 4))
    cpu_scorers = 0 if use_gpus else scorers
    decoders = options.decode_actors or max(1, cpus - cpu_scorers)
    return decoders, scorers, 1.0 if use_gpus else 0.0


@contextlib.contextmanager
def _connected(ray: Any, address: str | None) -> Iterator[None]:
    """A Ray instance to run on: the one this process is already connected to, else
    ``address`` (or RAY_ADDRESS), else a new one on this machine, shut down afterwards."""
    if ray.is_initialized():
        yield
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # Ray runs its workers at nice 15; on a machine that does anything else that starves
        # the scan, whose workers here are the whole job.
        ray.init(
            include_dashboard=False,
            logging_level=logging.WARNING,
            _system_config={"worker_niceness": 0},
        )
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _data_context(ray: Any) -> Iterator[None]:
    """Ray Data settings for a scan: failed blocks are dropped, not fatal (their videos are
    run again and get a row either way); no Ray progress bars beside dfscan's."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.max_errored_blocks, ctx.enable_progress_bars
    ctx.max_errored_blocks, ctx.enable_progress_bars = -1, False
    try:
        yield
    finally:
        ctx.max_errored_blocks, ctx.enable_progress_bars = saved


def _run(
    ray: Any,
    videos: Sequence[Path],
    indices: Sequence[int],
    stage_args: tuple[tuple, tuple],
    pools: tuple[int, int, float],
    batch_size: int,
    retries: int,
) -> Iterator[tuple[int, VideoResult]]:
    """One pass of the pipeline over ``indices`` of ``videos``: (index, result) as each
    finishes. Videos of a block that failed ``retries`` + 1 times yield nothing. With
    ``batch_size`` 1, each actor runs one call at a time, so a video that kills its actor
    takes no queued call of another video with it."""
    decoders, scorers, gpus = pools
    in_flight = 1 if batch_size == 1 else None
    items = [{"index": i, "path": str(videos[i])} for i in indices]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_INPUT_BLOCKS))
    # Bounded retries of a dead actor's calls (Ray Data's default retries them forever). Ray
    # 2.60 still takes them as remote args, deprecated (hence the pin in pyproject.toml).
    restart = {"max_restarts": -1, "max_task_retries": retries}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        ds = ds.map_batches(
            _Decode,
            fn_constructor_args=stage_args[0],
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(
                min_size=1, max_size=decoders, max_tasks_in_flight_per_actor=in_flight
            ),
            num_cpus=1,
            **restart,
        )
        ds = ds.map_batches(
            _Score,
            fn_constructor_args=stage_args[1],
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(
                min_size=1, max_size=scorers, max_tasks_in_flight_per_actor=in_flight
            ),
            num_cpus=1,
            num_gpus=gpus,
            **restart,
        )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for index, record in zip(batch["index"], batch["result"]):
            yield int(index), pickle.loads(record)


def scan_ray(
    videos: Sequence[Path],
    options: ScanOptions,
    model: ModelSpec,
    loaded: Backend,
    ray_options: RayOptions = RayOptions(),
) -> Iterator[VideoResult]:
    """One ``VideoResult`` per video, in the order they finish on the Ray cluster.

    ``loaded``: ``model`` loaded on the driver (which checks it before any video is read):
    the decode actors crop by its preprocessing contract; the scoring actors load ``model``
    themselves. Raises RayUnavailable without Ray Data. Closing the iterator early stops
    the pipeline.
    """
    ray = import_ray()
    if not videos:
        return
    contract = loaded.contract
    sampling = options.sampling or contract.sampling
    crash_on = os.environ.get(CRASH_ON_ENV) or None
    stage_args = ((contract, sampling, options), (model, options, crash_on))
    attempts = ray_options.task_retries + 1
    with _connected(ray, ray_options.address), _data_context(ray):
        pools = _pools(ray, model, ray_options)
        log.info(
            "Ray: %d decode actors at most, %d scoring actors (%s)",
            pools[0],
            pools[1],
            "1 GPU each" if pools[2] else "CPU",
        )
        todo = set(range(len(videos)))
        # Then the videos of blocks that failed, once more each, one per block and call: a
        # video that kills its worker takes no other video with it.
        for batch_size, retries in ((options.batch_size, ray_options.task_retries), (1, 0)):
            if not todo:
                break
            if batch_size == 1:
                log.warning(
                    "%d videos were in calls whose worker died %d times; running them one by one",
                    len(todo),
                    attempts,
                )
            for index, result in _run(
                ray,
                videos,
                sorted(todo),
                stage_args,
                pools,
                batch_size,
                retries,
            ):
                if index in todo:  # a retried block may deliver a video twice
                    todo.discard(index)
                    if result.status != "ok":
                        log.warning("%s: %s (%s)", result.path, result.status, result.message)
                    yield result
        for index in sorted(todo):
            message = (
                f"a Ray worker died each time this video ran ({attempts} times in a batch, "
                "then alone): a crash or out of memory? see the Ray logs"
            )
            log.warning("%s: error (%s)", videos[index], message)
            yield VideoResult(
                path=str(videos[index]),
                status="error",
                message=message,
                threshold=loaded.threshold if options.threshold is None else options.threshold,
                model=loaded.model_label,
                backend=loaded.name,
                device=loaded.device,
                seconds=0.0,
            )
