"""Training clips from the preprocess cache: sampling, self-blended fakes, augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from scanner.video import sample_indices
from training.augment import AugmentConfig, augment_clip, jpeg_clip, self_blend_clip
from training.preprocess import CacheEntry, load_track

SELF_BLEND_GROUP = "self-blend"


@dataclass(frozen=True)
class Sample:
    entry: CacheEntry
    label: int  # 0 real, 1 fake
    pseudo_fake: bool = False  # made from a real track by self-blending

    @property
    def group(self) -> str:
        return SELF_BLEND_GROUP if self.pseudo_fake else self.entry.group


def make_samples(entries: Sequence[CacheEntry], self_blend: bool) -> list[Sample]:
    """One sample per cached track, plus a self-blended fake of each real one if asked."""
    samples = [Sample(e, e.label) for e in entries]
    if self_blend:
        samples += [Sample(e, 1, pseudo_fake=True) for e in entries if e.label == 0]
    return samples


class ClipDataset(Dataset):
    """Item i -> (clip (T, S, S, 3) uint8 tensor, label). Normalisation happens on the device.

    Every random choice (frames, blend, augmentation) comes from a generator seeded by
    (seed, epoch, i), so a run is reproducible and resumable; validation sets ``vary=False``
    to see the same clips every epoch.
    """

    def __init__(
        self,
        cache: Path,
        samples: Sequence[Sample],
        num_frames: int,
        sampling: str,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        vary: bool = True,
        jpeg_prob: float = 0.0,
        jpeg_quality: tuple[int, int] = (40, 95),
    ) -> None:
        short = [s.entry.path for s in samples if s.entry.frames < num_frames]
        if short:
            raise ValueError(f"{len(short)} cached tracks have fewer than {num_frames} frames")
        self.cache = Path(cache)
        self.samples = list(samples)
        self.num_frames = num_frames
        self.sampling = sampling
        self.augment = augment
        self.seed = seed
        self.vary = vary
        self.jpeg_prob = jpeg_prob
        self.jpeg_quality = jpeg_quality
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        rng = np.random.default_rng([self.seed, self.epoch if self.vary else 0, i])
        track = load_track(self.cache, s.entry)
        idx = sample_indices(len(track["crops"]), self.num_frames, self.sampling, rng)
        crops, landmarks = track["crops"][idx], track["landmarks"][idx]
        if s.pseudo_fake:
            crops, _ = self_blend_clip(crops, landmarks, rng)
        if self.augment is not None:
            crops = augment_clip(crops, landmarks, self.augment, rng)
        if self.jpeg_prob and rng.random() < self.jpeg_prob:
            crops = jpeg_clip(crops, rng, self.jpeg_quality)
        return torch.from_numpy(np.ascontiguousarray(crops)), s.label
