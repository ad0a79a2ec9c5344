"""File plumbing shared by every writer and reader: a file's sha256, writing in one rename,
the user's cache folder, and telling a URI from a local path."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
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
    one, never half of it, and the file's bytes reach the disk before it (a crash cannot leave
    an empty file at ``path``). The temporary name is the writer's own, so two writers of one
    path never write into one file; the last to finish wins. When the block raises, the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    stem = os.fsdecode(os.fsencode(path.name)[:200])  # a name's limit is 255 bytes, not characters
    tmp = path.with_name(f"{stem}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def replacing_folder(folder: Path, whole: Callable[[], bool]) -> Iterator[Path]:
    """A scratch folder beside ``folder`` to fill; it becomes ``folder`` when the block ends.

    The rename is atomic, so a reader never sees part of the folder, and processes filling it
    at once end with one copy: where another got there first and ``whole()`` says its copy is
    complete, that copy is kept; an incomplete one (an earlier failure) is replaced. When the
    block raises, the scratch folder is removed and ``folder`` left as it was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        yield scratch
        if folder.exists() and not whole():
            shutil.rmtree(folder)
        try:
            scratch.rename(folder)
        except OSError:
            if not whole():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def cache_root() -> Path:
    """dfscan's folder in the user's cache: $XDG_CACHE_HOME/dfscan (default ~/.cache/dfscan).
    What is kept there (exported graphs, built engines) can be rebuilt, and is on a miss."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dfscan"


# "scheme://...": two characters at least, so that a Windows drive ("C:/...") is a path.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(name: str | os.PathLike) -> bool:
    """Whether ``name`` is a URI (``scheme://...``) rather than a local path."""
    return isinstance(name, str) and bool(_URI.match(name))
