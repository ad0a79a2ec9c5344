"""Model backends: a batch of face clips in, P(fake) and per-frame attention out.

Every backend exposes the preprocessing contract and threshold of the artifact it runs, so
the scanner reads them from the backend and never re-declares them. One module per runtime:

- ``scanner.backends.torch``: ``TorchBackend``, a dfscan checkpoint in PyTorch; on CUDA fp16,
  channels_last and one CUDA graph per (power-of-two) batch size.
- ``scanner.backends.onnx``: ``OnnxBackend``, an exported ``.onnx`` in onnxruntime (TensorRT /
  CUDA providers on a GPU).
- ``scanner.backends.tensorrt``: ``TensorRTBackend``, an exported ``.engine`` in TensorRT, and
  the engine runner the exporter's parity check uses too.

``make_backend`` (``scanner.backends.select``) picks one for a checkpoint, an artifact or an
export directory. onnxruntime and TensorRT are imported inside the backend that needs them.
"""

from scanner.backends.base import Backend, BackendUnavailable, DeviceFailure, resolve_device
from scanner.backends.onnx import OnnxBackend
from scanner.backends.select import (
    AUTO_ORDER_CPU,
    AUTO_ORDER_CUDA,
    BACKENDS,
    PRECISIONS,
    make_backend,
)
from scanner.backends.tensorrt import TensorRTBackend
from scanner.backends.torch import TorchBackend

__all__ = [
    "AUTO_ORDER_CPU",
    "AUTO_ORDER_CUDA",
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "BackendUnavailable",
    "DeviceFailure",
    "OnnxBackend",
    "TensorRTBackend",
    "TorchBackend",
    "make_backend",
    "resolve_device",
]
