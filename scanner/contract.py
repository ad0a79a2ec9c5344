"""The preprocessing contract: how frames become the tensor a model was trained on.

Written into every checkpoint (and later every exported artifact) and read back from it, so
the scanner never re-declares crop size, margin, mean/std or frame count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from numbers import Integral
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a tensor is made, so `dfscan --help` stays light
    import numpy as np
    import torch

# Table 4's frame sampling methods (see scanner.video.sample_indices); random was the paper's best.
SAMPLING_METHODS = ("random", "uniform", "keyframe", "subsequence", "sequential")


@dataclass(frozen=True)
class Preprocessing:
    mean: tuple[float, float, float]  # per-channel RGB mean in [0, 1], from the backbone
    std: tuple[float, float, float]
    crop_size: int = 224  # face crops are resized to crop_size x crop_size (paper §3.1)
    margin: float = 0.3  # the detected box is dilated by 30 % of its size (paper §3.1)
    num_frames: int = 15  # frames per clip (paper §3.1.1)
    sampling: str = "random"  # one of SAMPLING_METHODS; random was the paper's best (Table 4)
    detect_max_side: int = 640  # frames are downscaled to this longer side for MTCNN
    min_face_prob: float = 0.8  # MTCNN confidence a box needs to count as a face
    min_face_fraction: float = 1 / 3  # fewer sampled frames with the face than this -> no_face
    # Consecutive sampled frames whose colour histograms differ by more than this (Bhattacharyya
    # distance, 0..1) lie in different shots; a face track never crosses a shot cut. 1 disables.
    shot_cut: float = 0.35

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std > 0")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ValueError(f"mean and std must be finite, got {self.mean} and {self.std}")
        # whole numbers within what a scan can hold (a header's 260.5 or 10**7 is refused here,
        # not at the first video's allocation)
        bounds = (("crop_size", 16, 1024), ("num_frames", 1, 256), ("detect_max_side", 64, 16384))
        for name, low, high in bounds:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, Integral)
                or not low <= value <= high
            ):
                raise ValueError(f"{name} must be a whole number in {low}..{high}, got {value!r}")
        if not 0.0 <= self.margin <= 2.0:
            raise ValueError(f"margin must be in [0, 2], got {self.margin}")
        if self.sampling not in SAMPLING_METHODS:
            raise ValueError(f"sampling must be one of {SAMPLING_METHODS}, got {self.sampling!r}")
        if not 0.0 < self.min_face_prob <= 1.0 or not 0.0 < self.min_face_fraction <= 1.0:
            raise ValueError("min_face_prob and min_face_fraction must be in (0, 1]")
        if not 0.0 < self.shot_cut <= 1.0:
            raise ValueError(f"shot_cut must be in (0, 1], got {self.shot_cut}")

    def min_face_frames(self, sampled: int | None = None) -> int:
        """Of ``sampled`` frames (default num_frames), how many must show the tracked face."""
        n = self.num_frames if sampled is None else sampled
        return max(1, math.ceil(self.min_face_fraction * n - 1e-9))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Preprocessing keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def for_backbone(cls, backbone: str, **overrides) -> Preprocessing:
        """The contract for a timm backbone: its own normalisation, dfscan's defaults otherwise."""
        import timm

        cfg = timm.get_pretrained_cfg(backbone)
        if cfg is None:
            raise ValueError(f"timm knows no backbone {backbone!r}; pass mean and std explicitly")
        return cls(mean=tuple(cfg.mean), std=tuple(cfg.std), **overrides)


def normalise(crops: torch.Tensor, contract: Preprocessing) -> torch.Tensor:
    """(B, T, S, S, 3) uint8 -> (B, T, 3, S, S) float32 normalised by the contract's mean/std."""
    import torch

    x = crops.permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean = torch.tensor(contract.mean, device=x.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(contract.std, device=x.device).view(1, 1, 3, 1, 1)
    return (x - mean) / std


def normalise_table(contract: Preprocessing) -> np.ndarray:
    """(3, 256) float32: what ``normalise`` makes of each 8-bit value in each channel."""
    import torch

    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256, 1).expand(-1, -1, -1, -1, 3)
    return normalise(values.contiguous(), contract)[0, 0, :, 0, :].numpy()


def normalise_lookup(crops: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``normalise`` of (B, T, S, S, 3) uint8 crops as a lookup in its ``normalise_table``:
    the same float32 values bit for bit, in one pass over the crops a channel instead of
    torch's four (on the CPU, a batch of 8 clips: 0.06 CPU-s instead of 0.16)."""
    import numpy as np

    b, t, s, _, _ = crops.shape
    out = np.empty((b, t, 3, s, s), np.float32)
    for channel in range(3):
        np.take(table[channel], crops[..., channel], out=out[:, :, channel])
    return out
