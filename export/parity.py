"""Output parity of an exported graph against PyTorch: ``scanner.parity``, which the scanner's
own ONNX export (``scanner.onnx_writer``) shares; its names, here for the export package."""

from scanner.parity import (
    CaseDiff,
    Parity,
    ParityCase,
    compare,
    parity_cases,
    reference_outputs,
)

__all__ = ["CaseDiff", "Parity", "ParityCase", "compare", "parity_cases", "reference_outputs"]
