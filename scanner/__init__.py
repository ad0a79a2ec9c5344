"""dfscan: deepfake video scanner (attention ConvLSTM over MTCNN face tracks).

The Python API (``scanner.api``): ``scan_paths`` (paths and ``ScanOptions`` in, one
``VideoResult`` per video out, the rows `dfscan scan` writes) and ``load_backend``.
They are imported on first use, so ``import scanner`` and `dfscan --help` stay light.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("dfscan")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["PersonResult", "ScanOptions", "VideoResult", "load_backend", "scan_paths"]

_HOMES = {
    "scan_paths": "scanner.api",
    "load_backend": "scanner.api",
    "ScanOptions": "scanner.scan",
    "VideoResult": "scanner.report",
    "PersonResult": "scanner.report",
}

if TYPE_CHECKING:
    from scanner.api import load_backend, scan_paths
    from scanner.report import PersonResult, VideoResult
    from scanner.scan import ScanOptions


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'scanner' has no attribute {name!r}")
