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
local engine's. A Python exception in decoding is already an ``error`` row with the reason
(``scan.Preparer``), as is a model call that fails (``Scanner.score``). A worker process that dies
(a crash in a decoder, the kernel's out-of-memory killer) takes its block with it: Ray
restarts the actor and retries the call ``task_retries`` times; a block that still fails is
dropped by Ray Data (``max_errored_blocks``), and its videos are run again one per block, so
that one bad video does not take its batch with it; a video that fails that way too is an
``error`` row that says so. No video is left without a row.

Videos are read where they are: local paths (one machine, or a filesystem every node
mounts at the same place), or URIs (``s3://bucket/prefix/``, ``gs://...``, ``file:///...``)
read through pyarrow's filesystems. The driver lists a URI's videos (``discover_inputs``)
and passes each video's URI unchanged to the decode actors, which copy it to a local
temporary file for OpenCV and report it under its URI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import shutil
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scanner.backends.base import DeviceFailure
from scanner.contract import Preprocessing
from scanner.discover import discover_videos
from scanner.errors import RayFailure
from scanner.files import is_uri
from scanner.report import VideoResult
from scanner.scan import Prepared, Preparer, PrepareSettings, ScanOptions
from scanner.video import VIDEO_EXTENSIONS, set_decoder_threads

if TYPE_CHECKING:
    from scanner.backends import Backend

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'pip install "dfscan[ray]" (Ray Data: ray[data])'

# Tests only, read on the driver when a scan starts: the scoring actor ends its process (as a
# crash would), or its device fails (``DeviceFailure``), on a video whose path ends with this.
CRASH_ON_ENV = "DFSCAN_RAY_CRASH_ON"
DEVICE_FAILS_ON_ENV = "DFSCAN_RAY_DEVICE_FAILS_ON"

# Blocks the video list is cut into: one video per block up to this many videos, so a block
# that fails takes as few videos with it as the driver's memory for block references allows.
MAX_INPUT_BLOCKS = 20_000


_COPY_CHUNK = 8 * 2**20


class RayUnavailable(RuntimeError):
    """Ray Data is not installed, or no Ray instance can be reached or started."""


def _reason(error: BaseException) -> str:
    """One line for a Ray error: the exception raised in the actor where Ray carries it."""
    cause = getattr(error, "cause", None)
    cause = cause if isinstance(cause, BaseException) else error
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"


def list_uri_videos(uri: str) -> list[str]:
    """The videos under ``uri`` as URIs, read through pyarrow's filesystems: a URI naming a
    file is that file (whatever its extension, as a local file named directly); one naming
    a folder (or prefix) is searched recursively for video extensions, hidden names
    skipped, in name order. A URI that names nothing is kept as a file: its read fails in
    the decode actor, an ``error`` row that says why. Raises ValueError when the URI cannot
    be listed (an unknown scheme, no credentials, ...)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    base, sep, query = uri.partition("?")
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(root)
        if info.type != pafs.FileType.Directory:
            return [uri]
        found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, ValueError, NotImplementedError, pa.ArrowException) as e:
        raise ValueError(f"cannot list {uri}: {e}") from e
    root = root.rstrip("/")
    videos = []
    for f in found:
        rel = f.path[len(root) :].lstrip("/")
        if f.type != pafs.FileType.File or not f.path.startswith(root):
            continue
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if os.path.splitext(rel)[1].lower() in VIDEO_EXTENSIONS:
            videos.append(base.rstrip("/") + "/" + urllib.parse.quote(rel) + sep + query)
    return sorted(videos)


def discover_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path | str]:
    """``discover_videos`` for the Ray engine: local paths as ``discover_videos`` finds
    them (first), then the videos under each URI (``list_uri_videos``), each once."""
    inputs = list(inputs)
    local = [Path(i) for i in inputs if not is_uri(i)]
    uris = [str(i) for i in inputs if is_uri(i)]
    found: list[Path | str] = list(discover_videos(local)) if local else []
    seen: set[str] = set()
    for uri in uris:
        for video in list_uri_videos(uri):
            if video not in seen:
                seen.add(video)
                found.append(video)
    return found


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
        # The scan's own decode + face stage (an error in it is a row), on this actor's CPU:
        # one decoder thread, as in the scan's worker processes (an actor holds one CPU).
        set_decoder_threads(1)
        self._prepare = Preparer(
            PrepareSettings(
                contract, "cpu", sampling, options.seed, options.max_people, options.descriptors
            )
        )

    def _prepare_uri(self, uri: str) -> Prepared:
        """A video at a URI: copied to a local temporary file through pyarrow's filesystem,
        prepared as a local one, the copy deleted; the result is under the URI (``path``
        is then the URI string). A read that fails is an ``error`` row with the reason."""
        import pyarrow.fs as pafs

        start = time.perf_counter()
        suffix = os.path.splitext(uri.partition("?")[0])[1][:16]
        fd, tmp = tempfile.mkstemp(prefix="dfscan-", suffix=suffix)
        try:
            try:
                fs, name = pafs.FileSystem.from_uri(uri)
                with fs.open_input_stream(name) as src, os.fdopen(fd, "wb") as dst:
                    fd = -1
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
            except Exception as e:  # noqa: BLE001 - an unreadable object is a row
                log.warning("%s: cannot read: %s", uri, e)
                message = f"cannot read {uri}: {type(e).__name__}: {e}"
                return Prepared(uri, "error", message, time.perf_counter() - start)  # type: ignore[arg-type]
            p = self._prepare(Path(tmp))
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return dataclasses.replace(
            p,
            path=uri,  # type: ignore[arg-type]
            message=p.message.replace(tmp, uri),
            seconds=time.perf_counter() - start,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        c = self._prepare.settings.contract
        indices, records, crops = [], [], []
        for index, path in zip(batch["index"], batch["path"]):
            path = str(path)
            p = self._prepare_uri(path) if is_uri(path) else self._prepare(Path(path))
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

    def __init__(
        self, model: ModelSpec, options: ScanOptions, faults: tuple[str | None, str | None]
    ) -> None:
        from scanner.api import load_backend
        from scanner.scan import Scanner

        backend = load_backend(model.weights, model.backend, model.device, model.precision)
        self.scanner = Scanner(backend, options)
        self.crash_on, self.device_fails_on = faults

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """-> the batch's indices, pickled ``VideoResult``s and, per video, why the device
        failed ("" when it did not). A device that fails is data, not an exception: Ray
        Data would drop the block as if its worker had died, and the driver must stop."""
        index = np.asarray(batch["index"], np.int64)
        prepared = []
        for record, crops in zip(batch["prepared"], batch["crops"]):
            p: Prepared = pickle.loads(record)
            if self.crash_on and str(p.path).endswith(self.crash_on):
                os._exit(17)  # a crash, as a segfault in a native library would be
            people = tuple(dataclasses.replace(t, crops=c) for t, c in zip(p.people, crops))
            prepared.append(dataclasses.replace(p, people=people))
        try:
            if self.device_fails_on and any(
                str(p.path).endswith(self.device_fails_on) for p in prepared
            ):
                raise DeviceFailure("simulated")
            results = self.scanner.score(prepared)
        except DeviceFailure as e:
            failed = f"{self.scanner.backend.device}: {e}"
            return {
                "index": index,
                "result": np.asarray([b""] * len(index), dtype=object),
                "device_failure": np.asarray([failed] * len(index), dtype=object),
            }
        return {
            "index": index,
            "result": np.asarray([pickle.dumps(r, protocol=5) for r in results], dtype=object),
            "device_failure": np.asarray([""] * len(index), dtype=object),
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
    decoders = options.decode_actors or max(1, cpus - scorers)  # a scorer takes a CPU too
    return decoders, scorers, 1.0 if use_gpus else 0.0


@contextlib.contextmanager
def connected(ray: Any, address: str | None) -> Iterator[None]:
    """A Ray instance to run on: the one this process is already connected to, else
    ``address`` (or RAY_ADDRESS), else a new one on this machine (never a cluster that
    ``ray start`` left running here), shut down afterwards. Raises RayUnavailable when
    Ray cannot be reached or started."""
    if ray.is_initialized():
        yield
        return
    where = address or os.environ.get("RAY_ADDRESS")
    try:
        if where:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            # Ray runs its workers at nice 15; on a machine that does anything else that
            # starves the scan, whose workers here are the whole job.
            ray.init(
                address="local",
                include_dashboard=False,
                logging_level=logging.WARNING,
                _system_config={"worker_niceness": 0},
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        ray.shutdown()  # whatever a start that failed half-way left running
        target = f"the Ray cluster at {where}" if where else "a Ray instance on this machine"
        raise RayUnavailable(f"cannot connect to {target}: {e}") from e
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


def _worker_path(video: Path | str) -> str:
    """A video as the workers read it: a URI as it is, a local path made absolute."""
    return video if isinstance(video, str) and is_uri(video) else os.path.abspath(video)


def _run(
    ray: Any,
    videos: Sequence[Path | str],
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
    items = [{"index": i, "path": _worker_path(videos[i])} for i in indices]
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
        for failed in batch["device_failure"]:
            if failed:
                raise DeviceFailure(f"on a Ray scoring actor, {failed}")
        for index, record in zip(batch["index"], batch["result"]):
            yield int(index), pickle.loads(record)


def scan_ray(
    videos: Sequence[Path | str],
    options: ScanOptions,
    model: ModelSpec,
    loaded: Backend,
    ray_options: RayOptions = RayOptions(),
) -> Iterator[VideoResult]:
    """One ``VideoResult`` per video, in the order they finish on the Ray cluster.

    ``videos``: local paths (readable on every node) and URIs (``is_uri``; read through
    pyarrow's filesystems on the decode actors, their rows under the URI), as
    ``discover_inputs`` lists them.

    ``loaded``: ``model`` loaded on the driver (which checks it before any video is read):
    the decode actors crop by its preprocessing contract; the scoring actors load ``model``
    themselves. Local paths travel to the workers as absolute paths (workers do not share
    the driver's folder), and come back in the rows as given. Raises RayUnavailable without
    Ray Data, RayFailure when the pipeline fails as a whole (no scoring actor can load the
    model). Closing the iterator early stops the pipeline.
    """
    ray = import_ray()
    if not videos:
        return
    model = dataclasses.replace(model, weights=Path(os.path.abspath(model.weights)))
    contract = loaded.contract
    sampling = options.sampling or contract.sampling
    faults = (os.environ.get(CRASH_ON_ENV) or None, os.environ.get(DEVICE_FAILS_ON_ENV) or None)
    attempts = ray_options.task_retries + 1
    with connected(ray, ray_options.address), _data_context(ray):
        pools = _pools(ray, model, ray_options)
        if pools[2] and model.device.startswith("cuda:"):
            # an actor given one GPU sees only it, as cuda:0: cuda:N names none there
            log.warning(
                "Ray scoring actors each run on the one GPU Ray gives them, not %s", model.device
            )
            model = dataclasses.replace(model, device="cuda")
        stage_args = ((contract, sampling, options), (model, options, faults))
        log.info(
            "Ray: %d decode actors at most, %d scoring actors (%s)",
            pools[0],
            pools[1],
            "1 GPU each" if pools[2] else "CPU",
        )
        todo = set(range(len(videos)))
        # Then the videos of blocks that failed, once more each, one per block and call: a
        # video that kills its worker takes no other video with it.
        passes = ((options.batch_size, ray_options.task_retries), (1, 0))
        for again, (batch_size, retries) in enumerate(passes):
            if not todo:
                break
            if again:
                log.warning(
                    "%d videos were in calls whose worker died %d times; running them one by one",
                    len(todo),
                    attempts,
                )
            try:
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
                        result = dataclasses.replace(result, path=str(videos[index]))
                        if result.status != "ok":
                            log.warning("%s: %s (%s)", result.path, result.status, result.message)
                        yield result
            except ray.exceptions.RayError as e:
                raise RayFailure(f"the Ray pipeline failed: {_reason(e)}") from e
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
