"""Scanning from Python: paths and options in, one ``VideoResult`` per video out.

    from scanner import ScanOptions, scan_paths

    for result in scan_paths(["videos/"], ScanOptions(max_people=2)):
        print(result.path, result.status, result.score, result.label)

``scan_paths`` is what `dfscan scan` runs, so its results are the CSV's rows (the CSV adds
nothing but formatting). Expected per-video outcomes (no face, too short, not a video,
unreadable) are results with a status and no score; a model or backend that cannot load
raises before any video is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from scanner.backends import Backend, make_backend
from scanner.checkpoint import CheckpointError
from scanner.discover import discover_videos
from scanner.files import is_uri
from scanner.report import VideoResult
from scanner.scan import Scanner, ScanOptions

if TYPE_CHECKING:
    import torch


def load_backend(
    weights: str | Path | None = None,
    backend: str = "auto",
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> Backend:
    """What runs the model: ``weights`` (a checkpoint, an exported ``.onnx`` or ``.engine``,
    or an export directory; default the shipped model) on ``backend`` ("auto", "torch",
    "onnx", "tensorrt"), ``device`` ("auto", "cpu", "cuda[:N]") and ``precision`` ("auto",
    "fp32", "fp16").

    Raises CheckpointError for a missing or damaged file, BackendUnavailable when the backend
    asked for cannot run here, ValueError for a bad device or precision.
    """
    if weights is None:
        from scanner.models import default_weights

        weights = default_weights()
        if weights is None:
            raise CheckpointError(
                "this installation has no default model: pass the weights of a dfscan "
                "checkpoint or export"
            )
    return make_backend(Path(weights), backend, device, precision)


def scan_paths(
    paths: Iterable[str | Path],
    options: ScanOptions | None = None,
    *,
    weights: str | Path | None = None,
    backend: str | Backend = "auto",
    device: str | torch.device = "auto",
    precision: str = "auto",
    engine: str = "local",
    ray_address: str | None = None,
) -> Iterator[VideoResult]:
    """Scan video files and directories (searched recursively); one result per video.

    ``paths``: files (taken whatever their extension) and directories (video extensions),
    each video once, in the order met. ``options``: sampling, seed, threshold, batch size,
    workers, people per video (default ``ScanOptions()``). The model is ``weights`` on
    ``backend``, ``device`` and ``precision`` as ``load_backend`` takes them, or ``backend``
    is a Backend already loaded (to scan several sets with one model).

    Loads the model and lists the videos now (errors raise here: a bad model, a path that
    does not exist, FileNotFoundError); the returned iterator
    yields each ``VideoResult`` as it is ready, in the order of the videos. ``list()`` it
    for all of them.

    ``engine="ray"`` runs the scan on a Ray cluster instead (``scanner.ray_engine``; needs
    ``dfscan[ray]``): ``ray_address``, else RAY_ADDRESS, else a Ray instance started here
    (or the one this process is connected to). It also takes URIs (``s3://bucket/prefix/``,
    ``file:///...``), read through pyarrow's filesystems; the local engine does not. Its
    scoring actors load the model themselves, so ``backend`` must then be a name, not a
    loaded Backend; results come in the order they finish.
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if isinstance(paths, (str, os.PathLike)):  # one path, not the characters of one
        paths = [paths]
    paths = list(paths)
    missing = [p for p in paths if not is_uri(p) and not os.path.lexists(p)]
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(map(str, missing))}")
    if engine == "ray" and not isinstance(backend, str):
        raise TypeError(
            "engine='ray' loads the model in each scoring actor: pass weights and "
            "the backend's name, not a loaded Backend"
        )
    runner = (
        load_backend(weights, backend, device, precision) if isinstance(backend, str) else backend
    )
    if engine == "ray":
        from scanner.ray_engine import (
            ModelSpec,
            RayOptions,
            discover_inputs,
            import_ray,
            scan_ray,
        )

        import_ray()  # RayUnavailable now, not on the first result
        videos = discover_inputs(paths)
        if weights is None:
            from scanner.models import default_weights

            weights = default_weights()
        model = ModelSpec(Path(weights), backend, str(device), precision)
        return scan_ray(videos, options or ScanOptions(), model, runner, RayOptions(ray_address))
    uri = next((p for p in paths if is_uri(p)), None)
    if uri is not None:
        raise ValueError(f"{uri}: URIs are read by engine='ray' only")
    videos = discover_videos(Path(p) for p in paths)
    return Scanner(runner, options or ScanOptions()).results(videos)
