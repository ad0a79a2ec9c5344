"""Writing exported artifacts: ``scanner.artifact_writer``, which the scanner's own ONNX export
(``scanner.onnx_writer``) shares; its names, here for the export package and its callers."""

from scanner.artifact_writer import (
    TOLERANCE,
    ExportError,
    RuntimeUnavailable,
    make_info,
    now_iso,
    onnx_metadata,
    tool_versions,
    write_sidecar,
)

__all__ = [
    "TOLERANCE",
    "ExportError",
    "RuntimeUnavailable",
    "make_info",
    "now_iso",
    "onnx_metadata",
    "tool_versions",
    "write_sidecar",
]
