"""fp16 ONNX: ``model.fp16.onnx`` is the fp32 graph with fp16 weights and activations and fp32
inputs and outputs (``onnxruntime.transformers.float16`` with ``keep_io_types``), so callers
feed and read the same tensors whatever the precision.

The fp32 graph and its parity check are ``scanner.onnx_writer`` (the scanner exports it for
the CPU itself).
"""

from __future__ import annotations

import time
from pathlib import Path

import onnx

from scanner.artifact_writer import onnx_metadata
from scanner.checkpoint import LoadedCheckpoint
from scanner.onnx_writer import log_written, save_onnx


def convert_fp16(checkpoint: LoadedCheckpoint, fp32_path: Path, path: Path) -> Path:
    """fp32 ONNX -> fp16 weights and compute, fp32 inputs and outputs (keep_io_types)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    start = time.perf_counter()
    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    # The converter appends its input/output Casts at the end of the node list; ONNX (and
    # TensorRT's parser) want nodes in topological order.
    OnnxModel.graph_topological_sort(model.graph, is_deterministic=True)
    save_onnx(model, path, onnx_metadata(checkpoint, "fp16"))
    log_written("convert_fp16", path, start)
    return path
