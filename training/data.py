"""Training clips from the preprocess cache: sampling, self-blended fakes, augmentation."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from scanner.video import SUBSEQUENCES, sample_indices
from training.augment import AugmentConfig, augment_clip, jpeg_clip
from training.landmarks import Landmarks68, LandmarksUnavailable
from training.preprocess import CacheEntry, load_track, read_settings
from training.selfblend import SBI, SelfBlendConfig, self_blend

log = logging.getLogger(__name__)

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


class TrackStore:
    """Cached tracks and their 68-point landmarks (fitted on first use), kept in memory.

    The crop margin that places the face box inside a crop is read from the cache's own
    settings. ``dense=False``, or no dlib, leaves the 68-point landmarks out (None).
    """

    def __init__(self, cache: Path, dense: bool = True, capacity: int = 256) -> None:
        self.cache = Path(cache)
        self.margin = float(read_settings(self.cache)["contract"]["margin"])
        self.dense = dense
        self.capacity = capacity
        self._tracks: OrderedDict[str, dict] = OrderedDict()
        self._fitter: Landmarks68 | None = None

    def fitter(self) -> Landmarks68 | None:
        if self.dense and self._fitter is None:
            try:
                self._fitter = Landmarks68(self.margin)
            except LandmarksUnavailable as e:
                log.warning("%s; masks from the five MTCNN points", e)
                self.dense = False
        return self._fitter

    def track(self, entry: CacheEntry) -> dict:
        t = self._tracks.get(entry.file)
        if t is None:
            t = load_track(self.cache, entry)
            if "dense" not in t:  # an unpacked cache_pack brings them; else fitted on use
                t["dense"] = np.full((len(t["crops"]), 68, 2), np.nan, np.float32)
            self._tracks[entry.file] = t
            if len(self._tracks) > self.capacity:
                self._tracks.popitem(last=False)
        return t

    def frames(self, entry: CacheEntry, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        """crops, five-point and 68-point landmarks (NaN without dlib) of frames ``idx``."""
        t = self.track(entry)
        dense = t["dense"][idx]
        if self.dense and np.isnan(dense[:, 0, 0]).any() and (fitter := self.fitter()):
            for j in idx:
                if np.isnan(t["dense"][j, 0, 0]):
                    t["dense"][j] = fitter(t["crops"][j])
            dense = t["dense"][idx]
        if not self.dense or np.isnan(dense[:, 0, 0]).all():
            dense = None
        return t["crops"][idx], t["landmarks"][idx], dense


def clip_positions(
    cached: int, num_frames: int, sampling: str, rng: np.random.Generator
) -> np.ndarray:
    """Positions in a cached track of one clip's ``num_frames`` frames, increasing.

    random or uniform: ``sample_indices`` over the cached crops. subsequence: the cache holds
    SUBSEQUENCES runs of consecutive frames (``preprocess.cache_sampling``; the runs are
    ``np.array_split`` of its positions, as ``sample_indices`` lays them out, and a track of
    consecutive frames only splits alike), and the clip's runs (``np.array_split`` of
    ``num_frames``, 5 + 5 + 5 for 15) each start at random inside the cached run of the same
    rank, so every clip is made of consecutive frames as a scan samples them.
    """
    if sampling != "subsequence":
        return sample_indices(cached, num_frames, sampling, rng)
    parts = np.array_split(np.arange(cached), SUBSEQUENCES)
    runs = np.array_split(np.arange(num_frames), SUBSEQUENCES)
    if any(len(part) < len(run) for part, run in zip(parts, runs)):
        raise ValueError(f"{cached} cached frames cannot hold runs of {num_frames}")
    starts = [int(rng.integers(len(part) - len(run) + 1)) for part, run in zip(parts, runs)]
    return np.concatenate([part[s : s + len(run)] for part, run, s in zip(parts, runs, starts)])


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
        blend: SelfBlendConfig = SBI,
    ) -> None:
        short = [s.entry.path for s in samples if s.entry.frames < num_frames]
        if short:
            raise ValueError(f"{len(short)} cached tracks have fewer than {num_frames} frames")
        self.cache = Path(cache)
        self.store = TrackStore(self.cache, blend.dense_landmarks)
        self.blend = blend
        self.samples = list(samples)
        # training's real clips beside self-blended ones get the blend's whole-clip changes
        # as often (validation's stay as they are: the threshold is set on them)
        self.pairs_reals = vary and any(s.pseudo_fake for s in self.samples)
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

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        rng = np.random.default_rng([self.seed, self.epoch if self.vary else 0, i])
        track = self.store.track(s.entry)
        idx = clip_positions(len(track["crops"]), self.num_frames, self.sampling, rng)
        crops, landmarks, dense = self.store.frames(s.entry, np.asarray(idx))
        if s.pseudo_fake:
            _, crops, _ = self_blend(crops, landmarks, rng, self.blend, dense)
        elif self.pairs_reals:
            # a real clip as SBI pairs it with its blend: half of the time its target side,
            # recoloured, blurred or sharpened whole; else such a change reads as a fake
            crops, _, _ = self_blend(crops, landmarks, rng, self.blend, dense)
        if self.augment is not None:
            crops = augment_clip(crops, landmarks, self.augment, rng)
        if self.jpeg_prob and rng.random() < self.jpeg_prob:
            crops = jpeg_clip(crops, rng, self.jpeg_quality)
        return torch.from_numpy(np.ascontiguousarray(crops)), s.label
