"""File plumbing shared by every writer and reader: a file's sha256, writing in one rename,
and the user's cache folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends.

    The rename is atomic on one file system, so a reader sees the old file or the whole new
    one, never half of it. When the block raises, the temporary file is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cache_root() -> Path:
    """dfscan's folder in the user's cache: $XDG_CACHE_HOME/dfscan (default ~/.cache/dfscan).
    What is kept there (exported graphs, built engines) can be rebuilt, and is on a miss."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dfscan"
