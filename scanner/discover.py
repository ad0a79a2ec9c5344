"""Input stage: turn the files and directories a user named into a list of videos."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from scanner.video import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)


def _walk(root: Path) -> Iterable[Path]:
    """Video files under ``root``, following links but never a directory twice."""
    seen: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        log.warning("skipping unreadable directory %s: %s", err.filename, err.strerror)

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError as e:
            log.warning("skipping %s: %s", dirpath, e.strerror)
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop or a second link to a directory already walked
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):  # hidden files, e.g. macOS "._clip.mp4" resource forks
                continue
            if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                yield Path(dirpath) / name


def discover_videos(inputs: Iterable[Path]) -> list[Path]:
    """Files given directly are taken whatever their extension; directories are searched
    recursively for video extensions. Each file appears once, however often it was named
    (directly, through two directories or through a link), in the order first met.
    """
    found: list[Path] = []
    seen: set[str] = set()
    for inp in inputs:
        inp = Path(inp)
        candidates = _walk(inp) if inp.is_dir() else [inp]
        for path in candidates:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found
