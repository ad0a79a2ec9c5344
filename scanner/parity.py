"""Output parity of an exported graph against the PyTorch model it came from.

The reference is the checkpoint's own ``Detector.forward`` in fp32 on the CPU, on seeded
random clips and, when the caller has one, a real face clip. An artifact passes when the max
abs difference of its probabilities and of its attention weights both stay within the
tolerance for its precision (``scanner.artifact_writer.TOLERANCE``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from scanner.artifact_writer import ExportError
from scanner.contract import Preprocessing, normalise
from scanner.model import Detector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityCase:
    """Input clips and the PyTorch fp32 outputs for them."""

    name: str  # "random" or "face"
    clips: np.ndarray  # (B, T, 3, S, S) float32, normalised as the contract says
    probabilities: np.ndarray  # (B, 2) float32 softmax [pristine, deepfake]
    attention: np.ndarray  # (B, T) float32


@dataclass(frozen=True)
class CaseDiff:
    name: str
    batch: int
    probabilities: float  # max abs difference
    attention: float


@dataclass(frozen=True)
class Parity:
    """Observed differences of one artifact on every case, and the tolerance they met."""

    runtime: str  # what ran the artifact, e.g. "onnxruntime 1.32.0 CPUExecutionProvider"
    tolerance: float
    cases: tuple[CaseDiff, ...]

    @property
    def max_probabilities(self) -> float:
        return max(c.probabilities for c in self.cases)

    @property
    def max_attention(self) -> float:
        return max(c.attention for c in self.cases)

    @property
    def passed(self) -> bool:
        return max(self.max_probabilities, self.max_attention) <= self.tolerance

    def to_dict(self) -> dict:
        return {
            "reference": "PyTorch fp32 on the CPU (Detector.forward)",
            "runtime": self.runtime,
            "tolerance": self.tolerance,
            "max_abs_probabilities": self.max_probabilities,
            "max_abs_attention": self.max_attention,
            "cases": [vars(c).copy() for c in self.cases],
        }

    def summary(self) -> str:
        return (
            f"max abs difference: probabilities {self.max_probabilities:.2e}, attention "
            f"{self.max_attention:.2e} (tolerance {self.tolerance:g}; {self.runtime})"
        )


@torch.inference_mode()
def reference_outputs(model: Detector, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, 3, S, S) float32 -> (probabilities (B, 2), attention (B, T)) of an fp32 CPU model."""
    logits, alpha = model(torch.from_numpy(clips))
    return torch.softmax(logits, dim=-1).numpy(), alpha.numpy()


def parity_cases(
    model: Detector,
    contract: Preprocessing,
    face_crops: np.ndarray | None,
    batch: int,
    seed: int = 0,
) -> tuple[ParityCase, ...]:
    """Random clips (``batch`` of them, seeded) and the face clip (T, S, S, 3) uint8 if given."""
    t, s = contract.num_frames, contract.crop_size
    rng = np.random.default_rng(seed)
    inputs = {"random": rng.integers(0, 256, (batch, t, s, s, 3), dtype=np.uint8)}
    if face_crops is not None:
        if face_crops.shape != (t, s, s, 3) or face_crops.dtype != np.uint8:
            raise ValueError(
                f"face clip must be ({t}, {s}, {s}, 3) uint8, got {face_crops.shape} "
                f"{face_crops.dtype}"
            )
        inputs["face"] = face_crops[None]
    cases = []
    for name, crops in inputs.items():
        clips = normalise(torch.from_numpy(np.ascontiguousarray(crops)), contract).numpy()
        probs, attention = reference_outputs(model, clips)
        cases.append(ParityCase(name, clips, probs, attention))
    return tuple(cases)


def compare(
    cases: tuple[ParityCase, ...],
    outputs: list[tuple[np.ndarray, np.ndarray]],
    runtime: str,
    tolerance: float,
    what: str,
) -> Parity:
    """Parity of ``outputs`` (one (probabilities, attention) per case); ExportError past it."""
    diffs = []
    for case, (probs, attention) in zip(cases, outputs):
        diffs.append(
            CaseDiff(
                name=case.name,
                batch=len(case.clips),
                probabilities=_max_abs_diff(probs, case.probabilities, what),
                attention=_max_abs_diff(attention, case.attention, what),
            )
        )
    parity = Parity(runtime=runtime, tolerance=tolerance, cases=tuple(diffs))
    log.info("parity of %s: %s", what, parity.summary())
    if not parity.passed:
        raise ExportError(f"{what} does not match PyTorch: {parity.summary()}")
    return parity


def _max_abs_diff(got: np.ndarray, want: np.ndarray, what: str) -> float:
    """Max abs difference; inf where ``got`` holds NaN or inf, so a broken graph cannot pass."""
    if got.shape != want.shape:
        raise ExportError(f"{what} returned shape {got.shape}, PyTorch {want.shape}")
    d = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    return d if np.isfinite(d) else float("inf")
