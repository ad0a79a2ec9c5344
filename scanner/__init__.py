"""dfscan: deepfake video scanner (attention ConvLSTM over MTCNN face tracks)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dfscan")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
