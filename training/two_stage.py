"""Two-stage training: the backbone frame by frame, then the attention ConvLSTM on features.

    python -m training.two_stage --config training/recipes/default_model.yaml [--resume]

End-to-end training runs the backbone 15 times per clip; on a CPU that is most of the cost.
Here the same detector is trained in two cheaper stages:

1. **Frame stage**: the backbone, with a linear classifier on its pooled features, learns real
   against self-blended frames (``training.selfblend``), every cached frame of every training
   video in turn, each batch holding pairs of a frame and its blend (as SBI trains).
2. **Head stage**: the backbone is frozen; its feature maps are computed once for
   ``feature_frames`` frames of every video and for ``feature_variants`` self-blended versions
   of those frames (clip-level blends that drift over time), and the projection, attention
   ConvLSTM and classifier train on random 15-frame clips of those maps, hundreds of epochs
   in the time one end-to-end epoch takes.

Calibration and the test split follow ``training.train``: the threshold keeps the
false-positive rate at ``target_fpr`` on ``val_clips`` clips of each real validation video,
each video in one fixed version processed as training processes real and fake clips alike
(degraded with ``degrade_prob``, JPEG with ``jpeg_prob``), so that the threshold allows for
low-quality video as well as for the validation people's own clips; the checkpoint carries the
preprocessing contract and the threshold, and ``dfscan scan --weights`` reads it. Each stage
saves its state as it goes and ``--resume`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import logging
import math
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from scanner.backends import resolve_device
from scanner.checkpoint import CheckpointMeta, save_checkpoint
from scanner.contract import normalise
from scanner.files import replacing
from scanner.model import Detector, build_detector
from training.augment import (
    DEFAULT_DEGRADATIONS,
    DEGRADATIONS,
    degrade_clip,
    jitter_clip,
    jpeg_clip,
)
from training.cli import EXPECTED_ERRORS, report_error, report_failure
from training.data import SELF_BLEND_GROUP, TrackStore, clip_positions
from training.datasets import VideoItem, load_dataset, person_keys, split_items
from training.metrics import (
    NonFinite,
    calibrate_threshold,
    format_table,
    require_finite,
    roc_auc,
    summarise,
)
from training.preprocess import CacheEntry, read_index
from training.pretrained import imagenet_backbone, load_backbone_weights
from training.selfblend import GENERATED_WHOLE, SBI, Draw, SelfBlendConfig, pseudo_fake
from training.train import (
    Env,
    TrainConfig,
    cached_entries,
    load_config,
    run_config_file,
    run_provenance,
)

log = logging.getLogger("training.two_stage")

PROG = "python -m training.two_stage"
FRAME_STATE = "frame_stage.pt"
FEATURES = "features.pt"
HEAD_STATE = "head_stage.pt"
FINAL = "model.safetensors"


@dataclass(frozen=True)
class StageConfig:
    """The two stages' own settings (keys of the same config file as ``TrainConfig``)."""

    max_per_identity: int = 4  # videos per person at most, so a few people do not dominate
    frame_epochs: float = 2.0  # passes over all cached training frames
    frame_pairs: int = 8  # (real, blended) pairs per batch
    frame_lr: float = 3e-4
    frame_soup: int = 1  # frame stages (seeds seed, seed+1, ...) whose weights are averaged
    frame_sam_rho: float = 0.0  # sharpness-aware minimisation's radius (0: plain AdamW steps)
    trainable_stages: int = 3  # last backbone stages trained (plus conv_head); -1: all
    dense_landmarks: bool = True  # 68-point masks (dlib); False: MTCNN's five points
    rerender_prob: float = 0.0  # share of pseudo-fakes that re-render the face (selfblend)
    reenact_prob: float = 0.0  # share of pseudo-fakes warp-reenacted from one frame (reenact)
    swap_prob: float = 0.0  # share of self-blends taking another person's face (Donors)
    degrade_prob: float = 0.0  # real and fake degraded alike (augment.degrade_clip)
    degrade_kinds: str = ",".join(DEFAULT_DEGRADATIONS)  # what degrade_clip draws from
    degrade_before: float = 0.0  # share of degraded clips degraded before the fake is made
    generated_prob: float = 0.0  # share of pseudo-fakes drawn by an autoencoder (fingerprint)
    generator_steps: int = 1500  # training steps of that autoencoder
    generator_kinds: str = "transposed"  # autoencoders drawing them (fingerprint.parse_kinds)
    generated_lower: float = 0.0  # share of pasted generated faces confined to the lower face
    generated_whole: float = GENERATED_WHOLE  # share of generated faces replacing the whole crop
    generated_match: float = 0.0  # share of those whose real clip is blurred to their sharpness
    jitter_prob: float = 0.0  # real and fake reframed and recoloured alike (augment.jitter_clip)
    real_variants: int = 1  # versions of each real clip in the feature cache (own draws)
    generator_scale: float = 1.0  # generated faces drawn at up to this scale, then reduced
    generator_flicker: float = 0.0  # share of generated clips drawn frame by frame by any generator
    feature_frames: int = 32  # frames per video whose feature maps are cached
    feature_variants: int = 3  # self-blended versions of each video in the feature cache
    head_epochs: int = 60
    head_batch: int = 32
    head_lr: float = 1e-3
    head_patience: int = 15
    val_clips: int = 4  # real clips per validation/test video, and about as many pseudo-fakes

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(DEGRADATIONS))
        if not self.kinds or unknown:
            raise ValueError(f"degrade_kinds: {unknown or 'none'}; valid: {DEGRADATIONS}")
        if (self.swap_prob or self.reenact_prob) and self.degrade_before:
            raise ValueError(
                "swap_prob or reenact_prob with degrade_before: the donor's face or the "
                "reference frame would be pasted undegraded into a degraded frame"
            )
        if self.real_variants < 1 or self.feature_variants < 1:
            raise ValueError("real_variants and feature_variants must be at least 1")
        if self.frame_soup < 1:
            raise ValueError("frame_soup must be at least 1")
        if not 0.0 <= self.frame_sam_rho < 1.0:
            raise ValueError("frame_sam_rho must be at least 0 and below 1")

    @property
    def kinds(self) -> tuple[str, ...]:
        """``degrade_kinds`` as a tuple."""
        return tuple(k.strip() for k in self.degrade_kinds.split(",") if k.strip())


STAGE_HELP: dict[str, str] = {
    "max_per_identity": "at most this many videos of one person (identity), drawn by seed, so "
    "that a few people do not dominate; 0 keeps all",
    "frame_epochs": "frame stage length, in passes over every cached training frame",
    "frame_pairs": "frame stage batch, in (real frame, pseudo-fake of it) pairs",
    "frame_lr": "frame stage peak learning rate (AdamW, one-cycle schedule)",
    "frame_soup": "frame stages to train, each from the same start with its own seed (seed, "
    "seed + 1, ...), their weights then averaged (a uniform model soup, Wortsman et al. 2022) "
    "before the head stage; 1 trains one",
    "frame_sam_rho": "sharpness-aware minimisation (Foret et al. 2021, as the self-blending "
    "paper trains): each frame step takes its gradient at the weights moved this far (L2) "
    "uphill, which seeks flat minima and costs a second forward and backward pass; 0 steps "
    "plainly",
    "trainable_stages": "how many of the backbone's last stages (plus its head convolution) "
    "the frame stage trains; -1 trains the whole backbone",
    "dense_landmarks": "self-blending masks from dlib's 68 landmarks (false: from MTCNN's "
    "five points)",
    "rerender_prob": "share of pseudo-fakes that re-render the face (a low-resolution lower "
    "face, or a restored face) instead of self-blending it",
    "reenact_prob": "share of pseudo-fakes re-animated from one of the clip's own frames, "
    "warped to each frame's landmarks and pasted back (training.reenact: the one-shot "
    "talking-head look), drawn before the re-rendered ones",
    "swap_prob": "share of the self-blends whose source face is another person's (a face "
    "swap: of eight videos of other people drawn from the same split, the nearest in "
    "landmarks, aligned and colour-matched, as Face X-ray's blended images) instead of the "
    "clip's own; validation pairs include them too; not with degrade_before",
    "degrade_prob": "probability that a real clip and its pseudo-fake are degraded alike "
    "(rescaled, GIF palette, noise or blur: training.augment.degrade_clip), so that the quality "
    "of a video is no sign of manipulation",
    "degrade_before": "share of the degraded clips degraded before their pseudo-fake is made "
    "from them (the manipulation's traces then lie on top of the degradation, as in a fake "
    "made from a poor source) instead of after, alike with it (traces blurred away with the "
    "rest); 0 keeps every degradation after",
    "degrade_kinds": "comma-separated degradations degrade_prob draws from, some of "
    f"{','.join(DEGRADATIONS)} (training.augment.degrade_clip)",
    "generated_prob": "share of pseudo-fakes whose face (or whole crop) is redrawn by a small "
    "autoencoder trained on the real crops (training.fingerprint: what a generator's decoder "
    "leaves in an image), drawn before the re-enacted and re-rendered ones",
    "generator_steps": "training steps of each autoencoder (run once per run, kept in the run "
    "folder)",
    "generator_kinds": "comma-separated autoencoders, each clip drawn by one: upsampling by "
    "transposed convolution, nearest or bilinear interpolation, or pixel shuffle; restore-KIND "
    "draws the face from a 3x smaller copy, as a face-restoration step does; latent-KIND "
    "through an 8x smaller latent with a perceptual loss, as a latent-diffusion VAE does",
    "generated_lower": "share of the generated faces pasted into a real frame that cover only "
    "the lower face (jaw to nose), as lip-sync generators paste their mouth",
    "jitter_prob": "probability that a real clip and its pseudo-fake are reframed (scale, "
    "shift, rotation) and recoloured alike (training.augment.jitter_clip), so that the model "
    "cannot learn the training videos themselves as the real class",
    "real_variants": "versions of each real clip whose feature maps the head stage reads, each "
    "with its own degradation, compression and reframing draws (as the pseudo-fake variants), "
    "so that the head does not learn one fixed version of each training video as the real class",
    "generated_whole": "share of the generated pseudo-fakes that replace the whole crop (a "
    "fully generated video) instead of being pasted into the real frame",
    "generated_match": "share of those whole-crop redraws whose real clip is blurred to the "
    "redraw's sharpness (selfblend.match_sharpness) and trained as real beside it, so that a "
    "smooth picture alone does not read as generated",
    "generator_scale": "generated faces are drawn at a scale drawn from 1 to this (the crop "
    "enlarged, drawn, reduced back), as a generator drawing a larger face than the scan's crop; "
    "1 draws at the crop's size",
    "generator_flicker": "share of generated clips whose frames are each drawn by a generator "
    "of their own (the texture flickers, as when a generator draws every frame on its own)",
    "feature_frames": "frames per video whose backbone feature maps the head stage reads "
    "(with subsequence sampling, every cached frame, so that its runs stay whole)",
    "feature_variants": "pseudo-fake versions of each video in the feature cache",
    "head_epochs": "head stage length, in epochs over the training videos",
    "head_batch": "head stage batch, in clips (half real, half pseudo-fake)",
    "head_lr": "head stage learning rate (AdamW, cosine schedule)",
    "head_patience": "stop the head stage after this many epochs without a better "
    "validation AUC (the best epoch is kept)",
    "val_clips": "real clips drawn per validation and test video, and about as many "
    "pseudo-fake ones spread over its variants",
}


# training.train's keys of its end-to-end schedule and pseudo-fakes, which this recipe does
# not read (its own stage keys take their place): set otherwise than their default, a warning.
END_TO_END_KEYS = (
    "self_blend",
    "blur",
    "wavelet",
    "warp",
    "removal",
    "manipulated_ratio",
    "folds",
    "eval_clips",
    "epochs",
    "batch_size",
    "lr",
    "backbone_lr",
    "patience",
    "amp",
)


def read_configs(
    path: Path | None, overrides: dict, resume: bool = False
) -> tuple[TrainConfig, StageConfig]:
    """Split one config file (and --flag overrides) into the two dataclasses. Resuming
    without a config file reads the run's own (``config.json`` in its --out folder)."""
    stage_keys = {f.name for f in fields(StageConfig)}
    known = {f.name for f in fields(TrainConfig)} | stage_keys
    path = run_config_file(path, resume, overrides.get("out"))
    values = load_config(path, known) if path is not None else {}
    values.update(overrides)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
    stage = {k: v for k, v in values.items() if k in stage_keys}
    train_values = {k: v for k, v in values.items() if k not in stage_keys}
    if "split" in train_values:
        train_values["split"] = tuple(train_values["split"])
    cfg = TrainConfig(**train_values)
    st = StageConfig(**stage)
    if st.feature_frames < cfg.num_frames:
        log.warning(
            "feature_frames (%d) < num_frames (%d): the head's clips repeat frames",
            st.feature_frames,
            cfg.num_frames,
        )
    unused = [k for k in END_TO_END_KEYS if k in values and values[k] != getattr(TrainConfig, k)]
    if unused:
        log.warning("two-stage training does not use %s (training.train's)", ", ".join(unused))
    return cfg, st


# --------------------------------------------------------------------------- data


def cap_per_identity(items: list[VideoItem], cap: int, seed: int) -> list[VideoItem]:
    """At most ``cap`` videos per identity (``source``), drawn by seed from each person's
    videos in path order, so that the draw does not hang on the order given; order kept."""
    if cap <= 0:
        return items
    rng = np.random.default_rng(seed)
    person = person_keys(it.source for it in items)  # "Alice" and "alice " are one person
    by_source: dict[str, list[VideoItem]] = {}
    for it in sorted(items, key=lambda it: str(it.path)):
        by_source.setdefault(person[it.source], []).append(it)
    keep = set()
    for source in sorted(by_source):
        group = by_source[source]
        for i in sorted(rng.permutation(len(group))[:cap]):
            keep.add(group[i].path)
    return [it for it in items if it.path in keep]


def degrade_plan(rng: np.random.Generator, prob: float, before: float) -> tuple[bool, bool] | None:
    """Whether a clip is degraded before its pseudo-fake is made and whether after (real and
    fake alike), drawn up front; None when ``before`` is 0: the caller then draws the after
    degradation as it always did, so that old runs draw the same."""
    if not before:
        return None
    degraded = bool(prob) and rng.random() < prob
    first = degraded and rng.random() < before
    return first, degraded and not first


def alike(
    clip: np.ndarray,
    rng: np.random.Generator,
    st: StageConfig,
    jpeg_prob: float,
    degrade: bool | None = None,
) -> np.ndarray:
    """What a real clip and its pseudo-fake go through alike, in this order: reframed
    (``jitter_prob``), degraded (drawn at ``degrade_prob`` unless ``degrade`` says, as a
    ``degrade_plan`` does), JPEG-compressed (``jpeg_prob``)."""
    if st.jitter_prob and rng.random() < st.jitter_prob:
        clip = jitter_clip(np.ascontiguousarray(clip), rng)
    if degrade if degrade is not None else st.degrade_prob and rng.random() < st.degrade_prob:
        clip = degrade_clip(np.ascontiguousarray(clip), rng, st.kinds)
    if jpeg_prob and rng.random() < jpeg_prob:
        clip = jpeg_clip(np.ascontiguousarray(clip), rng, (40, 100))
    return clip


class Donors:
    """Another person's frames to blend into a clip (``StageConfig.swap_prob``): of
    ``candidates`` videos of other identities drawn from ``entries`` (those with as many
    cached frames as the clip's video when there are any), the one whose five landmarks lie
    nearest the clip's (Face X-ray's nearest-landmark search, over a few)."""

    def __init__(self, store: TrackStore, entries: Sequence[CacheEntry], candidates: int = 8):
        self.store = store
        self.entries = list(entries)
        self.candidates = candidates

    def pick(
        self,
        target: CacheEntry,
        positions: np.ndarray,
        five: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[CacheEntry, np.ndarray] | None:
        """The donor video and its frames for a clip of ``target``'s cached frames
        ``positions`` with landmarks ``five``: the same positions scaled to the donor's track
        (a single frame: any of its frames), or None when no other person has a usable one."""
        others = [e for e in self.entries if e.source != target.source and e.frames]
        others = [e for e in others if e.frames == target.frames] or others
        if not others:
            return None
        best = None
        for k in rng.choice(len(others), min(self.candidates, len(others)), replace=False):
            e = others[int(k)]
            if len(positions) == 1:
                idx = rng.integers(e.frames, size=1)
            else:
                scale = (e.frames - 1) / max(1, target.frames - 1)
                idx = np.clip(np.rint(np.asarray(positions) * scale), 0, e.frames - 1).astype(int)
            gap = np.linalg.norm(self.store.track(e)["landmarks"][idx] - five, axis=-1)
            d = float(np.nanmean(gap)) if np.isfinite(gap).any() else math.inf
            if math.isfinite(d) and (best is None or d < best[0]):
                best = (d, e, idx)
        return None if best is None else best[1:]

    def __call__(
        self,
        target: CacheEntry,
        positions: np.ndarray,
        five: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, ...] | None:
        """The picked donor's crops, five-point and 68-point landmarks, or None."""
        picked = self.pick(target, positions, five, rng)
        return None if picked is None else self.store.frames(*picked)


class FramePairs(Dataset):
    """Item i -> (2, S, S, 3) uint8: a cached frame (as the blend's target) and its blend."""

    def __init__(
        self,
        store: TrackStore,
        entries: Sequence[CacheEntry],
        blend: SelfBlendConfig,
        jpeg_prob: float,
        seed: int,
        stage: StageConfig | None = None,
        generator: Draw | None = None,
    ) -> None:
        """``stage``: the pseudo-fake and augmentation settings (rerender_prob to
        jitter_prob; the defaults when None); ``generator`` draws the generated ones."""
        self.store = store
        self.stage = stage or StageConfig()
        self.generator = generator
        self.index = [(e, j) for e in entries for j in range(e.frames)]
        self.donors = Donors(store, entries) if self.stage.swap_prob else None
        self.blend = blend
        self.jpeg_prob = jpeg_prob
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        entry, j = self.index[i]
        st = self.stage
        rng = np.random.default_rng([self.seed, self.epoch, i])
        crops, five, dense = self.store.frames(entry, np.array([j]))
        plan = degrade_plan(rng, st.degrade_prob, st.degrade_before)
        if plan and plan[0]:
            crops = degrade_clip(crops, rng, st.kinds)
        reference = None
        if st.reenact_prob:  # another frame of the track to re-animate this one from
            r = (j + 1 + int(rng.integers(max(1, entry.frames - 1)))) % entry.frames
            rc, rf, rd = self.store.frames(entry, np.array([r]))
            reference = (rc[0], rf[0], None if rd is None else rd[0])
        real, fake, _ = pseudo_fake(
            crops,
            five,
            rng,
            self.blend,
            dense,
            st.rerender_prob,
            reenact_prob=st.reenact_prob,
            reference=reference,
            generated_prob=st.generated_prob,
            generator=self.generator,
            generated_lower=st.generated_lower,
            generated_whole=st.generated_whole,
            generated_match=st.generated_match,
            swap_prob=st.swap_prob,
            donor=functools.partial(self.donors, entry, np.array([j]), five)
            if self.donors
            else None,
        )
        pair = np.concatenate([real, fake])
        if rng.random() < 0.5:
            pair = pair[:, :, ::-1]
        pair = alike(pair, rng, st, self.jpeg_prob, plan[1] if plan else None)
        return torch.from_numpy(np.ascontiguousarray(pair))


# --------------------------------------------------------------------------- frame stage


class FrameClassifier(nn.Module):
    """Backbone + global average pooling + linear: P(fake) of one face crop."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.num_features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone.forward_features(x).mean(dim=(2, 3)))


def trainable_parameters(backbone: nn.Module, stages: int) -> list[nn.Parameter]:
    """Freeze all but the last ``stages`` blocks (and the head conv) of a timm EfficientNet."""
    if stages < 0 or not hasattr(backbone, "blocks"):
        return list(backbone.parameters())
    for p in backbone.parameters():
        p.requires_grad_(False)
    blocks = list(backbone.blocks)
    train = blocks[len(blocks) - stages :] if stages else []
    train += [getattr(backbone, n) for n in ("conv_head", "bn2") if hasattr(backbone, n)]
    params = [p for m in train for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


@torch.no_grad()
def climb(params: Sequence[nn.Parameter], rho: float) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """Sharpness-aware minimisation's first step (Foret et al. 2021): move the weights by
    ``rho`` (L2 over all of them) along their gradient, to about the worst point that near;
    returns the moves, which ``descend`` takes back once the gradient there is computed."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return []
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in grads]))
    scale = rho / (norm + 1e-12)
    moves = []
    for p in grads:
        move = p.grad * scale
        p.add_(move)
        moves.append((p, move))
    return moves


@torch.no_grad()
def descend(moves: Sequence[tuple[nn.Parameter, torch.Tensor]]) -> None:
    """Take back the moves of ``climb``; the gradients (computed at the moved weights) stay."""
    for p, move in moves:
        p.sub_(move)


def _frozen_eval(backbone: nn.Module) -> None:
    """Batch norms of frozen layers keep their ImageNet statistics."""
    for m in backbone.modules():
        if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def frame_stage(
    cfg: TrainConfig,
    st: StageConfig,
    model: Detector,
    store: TrackStore,
    train: list[CacheEntry],
    val: list[CacheEntry],
    out: Path,
    env: Env,
    resume: bool,
    generator: Draw | None = None,
    val_seed: int | None = None,
) -> dict:
    """Fine-tune ``model.backbone`` on frame pairs; returns the stage's log. ``generator``
    draws the generated pseudo-fakes (``StageConfig.generated_prob``); the validation pairs
    are drawn with ``val_seed`` (default ``cfg.seed + 1``)."""
    contract = cfg.contract
    clf = FrameClassifier(model.backbone).to(env.device)
    params = trainable_parameters(clf.backbone, st.trainable_stages) + list(clf.fc.parameters())
    opt = torch.optim.AdamW(params, lr=st.frame_lr, weight_decay=cfg.weight_decay)
    blend = dataclasses.replace(SBI, dense_landmarks=st.dense_landmarks)
    data = FramePairs(store, train, blend, cfg.jpeg_prob, cfg.seed, st, generator)
    steps_per_epoch = math.ceil(len(data) / st.frame_pairs)
    total = max(1, round(st.frame_epochs * steps_per_epoch))
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=st.frame_lr, total_steps=total, pct_start=0.1
    )
    step, history = 0, []
    state_path = out / FRAME_STATE
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        clf.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, history = state["step"], json.loads(state["history"])
        log.info("frame stage: resuming at step %d of %d", step, total)
    if step >= total:
        return {"steps": step, "history": history}
    log.info(
        "frame stage: %d frames of %d videos, %d steps of %d pairs%s",
        len(data),
        len(train),
        total,
        st.frame_pairs,
        f", sharpness-aware (rho {st.frame_sam_rho:g})" if st.frame_sam_rho else "",
    )
    seed = cfg.seed + 1 if val_seed is None else val_seed
    val_pairs, val_idx = _validation_pairs(store, val, st, seed, generator)

    def save() -> None:
        state = {
            "model": clf.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "history": json.dumps(history),
        }
        with replacing(state_path) as tmp:
            torch.save(state, tmp)

    while step < total:
        epoch = step // steps_per_epoch
        data.epoch = epoch
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        skip = (step % steps_per_epoch) * st.frame_pairs
        loader = DataLoader(
            torch.utils.data.Subset(data, order[skip:].tolist()),
            batch_size=st.frame_pairs,
            num_workers=cfg.workers,
            persistent_workers=False,
        )
        clf.train()
        _frozen_eval(clf.backbone)
        t0, seen, running = time.perf_counter(), 0, 0.0
        for pairs in loader:
            x = normalise(pairs.to(env.device), contract).flatten(0, 1)  # real, fake, real, ...
            y = torch.tensor([0, 1] * len(pairs), device=env.device)
            loss = F.cross_entropy(clf(x), y)
            value = require_finite(loss.item(), f"frame stage, step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if st.frame_sam_rho:
                moves = climb(params, st.frame_sam_rho)
                opt.zero_grad(set_to_none=True)
                uphill = F.cross_entropy(clf(x), y)
                require_finite(uphill.item(), f"frame stage, step {step + 1} (sharpness-aware)")
                uphill.backward()
                descend(moves)
            opt.step()
            sched.step()
            step += 1
            seen += len(x)
            running = 0.9 * running + 0.1 * value if running else value
            if step % 50 == 0 or step == total:
                rate = seen / (time.perf_counter() - t0)
                log.info("frame step %d/%d: loss %.4f, %.1f img/s", step, total, running, rate)
            if step % 200 == 0 or step == total or step % steps_per_epoch == 0:
                auc = _frame_auc(clf, val_pairs, val_idx, contract, env)
                clf.train()
                _frozen_eval(clf.backbone)  # frozen layers keep their ImageNet statistics
                history.append({"step": step, "loss": running, "val_frame_auc": auc})
                log.info("frame step %d: validation frame AUC %.4f", step, auc)
                save()
            if step >= total or step % steps_per_epoch == 0:
                break
    return {"steps": step, "history": history}


SOUP_STATE = "frame_soup.pt"


def _validation_pairs(
    store: TrackStore, val: list[CacheEntry], st: StageConfig, seed: int, generator: Draw | None
) -> tuple[FramePairs, np.ndarray]:
    """The frame stage's validation pairs (undegraded, unjittered, no JPEG) and the at most
    192 of them, spread evenly, on which its frame AUC is measured."""
    blend = dataclasses.replace(SBI, dense_landmarks=st.dense_landmarks)
    clean = dataclasses.replace(st, degrade_prob=0.0, degrade_before=0.0, jitter_prob=0.0)
    pairs = FramePairs(store, val, blend, 0.0, seed, clean, generator)
    return pairs, np.linspace(0, len(pairs) - 1, min(len(pairs), 192)).astype(int)


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes (floating-point
    tensors; integer ones, such as batch-norm step counts, are taken from the first)."""
    keys = list(states[0])
    if any(list(s) != keys for s in states[1:]):
        raise ValueError("state dicts to average hold different keys")
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
        if states[0][k].is_floating_point()
        else states[0][k].clone()
        for k in keys
    }


def frame_soup(
    cfg: TrainConfig,
    st: StageConfig,
    model: Detector,
    store: TrackStore,
    train: list[CacheEntry],
    val: list[CacheEntry],
    out: Path,
    env: Env,
    resume: bool,
    generator: Draw | None = None,
) -> dict:
    """``st.frame_soup`` frame stages, each from ``model``'s starting backbone with its own
    seed (``cfg.seed + k``; each in ``out/frame-K``, resumable), their frame classifiers'
    weights averaged into ``model.backbone`` (a uniform soup: the members share their start
    and differ in the frame classifier's initialisation, the pseudo-fakes drawn and their
    order). Returns the stage's log: each member's and the soup's validation frame AUC, all
    on the same validation pairs (``cfg.seed + 1``)."""
    clf = FrameClassifier(model.backbone).to(env.device)
    soup_path = out / SOUP_STATE
    if resume and soup_path.exists():
        state = torch.load(soup_path, map_location="cpu", weights_only=True)
        clf.load_state_dict(state["model"])
        log.info("frame soup: read back from %s", soup_path)
        return json.loads(state["log"])
    start = copy.deepcopy(model.backbone.state_dict())
    members, logs = [], []
    for k in range(st.frame_soup):
        member_out = out / f"frame-{k}"
        member_out.mkdir(exist_ok=True)
        model.backbone.load_state_dict(start)
        torch.manual_seed(cfg.seed + k)
        log.info("frame soup: member %d of %d (seed %d)", k + 1, st.frame_soup, cfg.seed + k)
        member_cfg = dataclasses.replace(cfg, seed=cfg.seed + k)
        logs.append(
            frame_stage(
                member_cfg,
                st,
                model,
                store,
                train,
                val,
                member_out,
                env,
                resume,
                generator,
                val_seed=cfg.seed + 1,
            )
        )
        state = torch.load(member_out / FRAME_STATE, map_location="cpu", weights_only=True)
        members.append(state["model"])
    clf.load_state_dict(average_states(members))
    clf.to(env.device)
    val_pairs, val_idx = _validation_pairs(store, val, st, cfg.seed + 1, generator)
    auc = _frame_auc(clf, val_pairs, val_idx, cfg.contract, env)
    member_aucs = [m["history"][-1]["val_frame_auc"] if m["history"] else None for m in logs]
    log.info("frame soup: validation frame AUC %.4f (members: %s)", auc, member_aucs)
    result = {"members": logs, "soup_val_frame_auc": auc}
    with replacing(soup_path) as tmp:
        torch.save({"model": clf.state_dict(), "log": json.dumps(result)}, tmp)
    return result


def _frame_auc(
    clf: FrameClassifier, data: FramePairs, idx: np.ndarray, contract, env: Env
) -> float:
    if not len(idx):
        return math.nan
    clf.eval()
    scores = []
    with torch.inference_mode():
        for chunk in np.array_split(idx, max(1, len(idx) // 16)):
            x = torch.stack([data[int(i)] for i in chunk])
            p = torch.softmax(clf(normalise(x.to(env.device), contract).flatten(0, 1)), 1)[:, 1]
            scores.append(p.cpu().numpy())
    s = np.concatenate(scores)
    y = np.tile([0, 1], len(s) // 2)
    return roc_auc(y, s)


# --------------------------------------------------------------------------- features


@dataclass
class VideoFeatures:
    entry: CacheEntry
    real: torch.Tensor  # (K, F, h, w) fp16 backbone feature maps
    fakes: list[torch.Tensor]  # feature_variants of the same shape
    # real_variants - 1 more, then the real clips the pseudo-fakes changed (their target side)
    more_real: list[torch.Tensor] = field(default_factory=list)

    def __setstate__(self, state: dict) -> None:  # feature caches written before more_real
        self.__dict__.update({"more_real": []} | state)


@torch.inference_mode()
def _features(model: Detector, crops: np.ndarray, contract, env: Env) -> torch.Tensor:
    out = []
    for chunk in np.array_split(np.arange(len(crops)), max(1, len(crops) // 16)):
        x = torch.from_numpy(np.ascontiguousarray(crops[chunk]))[None].to(env.device)
        x = normalise(x, contract)[0]
        out.append(model.backbone.forward_features(x).to(torch.float16).cpu())
    return torch.cat(out)


def feature_cache(
    cfg: TrainConfig,
    st: StageConfig,
    model: Detector,
    store: TrackStore,
    splits: dict[str, list[CacheEntry]],
    out: Path,
    env: Env,
    generator: Draw | None = None,
    resume: bool = False,
) -> dict[str, list[VideoFeatures]]:
    """Backbone feature maps of real and pseudo-fake frames of every video, saved in ``out``
    and read back from there when ``resume`` (a new run computes them again: they belong to
    its own frame stage); ``generator`` as in ``frame_stage``."""
    path = out / FEATURES
    if resume and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        log.info("feature cache: read %s", path)
        return saved
    model.eval()
    blend = dataclasses.replace(SBI, dense_landmarks=st.dense_landmarks)
    result: dict[str, list[VideoFeatures]] = {}
    t0, n = time.perf_counter(), 0
    for p, (part, entries) in enumerate(splits.items()):
        result[part] = []
        donors = Donors(store, entries) if st.swap_prob else None
        for k, e in enumerate(entries):
            if cfg.sampling == "subsequence":  # every cached frame: the runs stay whole
                idx = np.arange(e.frames)
            else:
                idx = np.linspace(0, e.frames - 1, min(e.frames, st.feature_frames)).round()
                idx = np.unique(idx.astype(int))
            crops, five, dense = store.frames(e, idx)
            reals = []  # validation and test keep one fixed version
            for r in range(st.real_variants if part == "train" else 1):
                rng = np.random.default_rng([cfg.seed, 8, k, p, *([r] if r else [])])
                real = alike(crops, rng, st, cfg.jpeg_prob)  # as often as the fakes below
                reals.append(_features(model, real, cfg.contract, env))
            fakes = []
            for v in range(st.feature_variants):
                rng = np.random.default_rng([cfg.seed, 7, k, v, p])
                plan = degrade_plan(rng, st.degrade_prob, st.degrade_before)
                source = degrade_clip(crops, rng, st.kinds) if plan and plan[0] else crops
                paired, fake, _ = pseudo_fake(
                    source,
                    five,
                    rng,
                    blend,
                    dense,
                    st.rerender_prob,
                    reenact_prob=st.reenact_prob,
                    generated_prob=st.generated_prob,
                    generator=generator,
                    generated_lower=st.generated_lower,
                    generated_whole=st.generated_whole,
                    generated_match=st.generated_match,
                    swap_prob=st.swap_prob,
                    donor=functools.partial(donors, e, idx, five) if donors else None,
                )
                # the real clip as the fake's maker left it, where it changed it (the target
                # side of a self-blend recoloured, blurred or sharpened whole, as SBI pairs
                # them; a whole-crop redraw's real clip blurred to it, generated_match) is one
                # more real version of a training video, gone through what the fake goes
                # through alike: else a clip-wide change reads as a fake to the head
                altered = not np.array_equal(paired, source)
                twin = copy.deepcopy(rng) if part == "train" and altered else None
                fake = alike(fake, rng, st, cfg.jpeg_prob, plan[1] if plan else None)
                fakes.append(_features(model, fake, cfg.contract, env))
                if twin is not None:
                    paired = alike(paired, twin, st, cfg.jpeg_prob, plan[1] if plan else None)
                    reals.append(_features(model, paired, cfg.contract, env))
            result[part].append(VideoFeatures(e, reals[0], fakes, reals[1:]))
            n += len(idx) * (len(reals) + st.feature_variants)
        log.info(
            "feature cache: %s, %d videos (%.1f frames/s)",
            part,
            len(entries),
            n / (time.perf_counter() - t0),
        )
    with replacing(path) as tmp:
        torch.save(result, tmp)
    return result


# --------------------------------------------------------------------------- head stage


def _positions(cached: int, num_frames: int, rng: np.random.Generator, sampling: str) -> np.ndarray:
    """A clip's positions among a video's cached feature maps: runs of consecutive frames for
    subsequence sampling (data.clip_positions; the feature cache holds every cached frame),
    else a random subset (with repeats where fewer are cached), as runs always drew."""
    if sampling == "subsequence":
        return clip_positions(cached, num_frames, sampling, rng)
    return np.sort(rng.choice(cached, num_frames, replace=cached < num_frames))


def _clip_batch(
    videos: list[VideoFeatures],
    num_frames: int,
    rng: np.random.Generator,
    fake: bool,
    sampling: str = "random",
) -> torch.Tensor:
    clips = []
    for vf in videos:
        if fake:
            src = vf.fakes[int(rng.integers(len(vf.fakes)))]
        else:  # one draw only where there are several versions: older runs draw as they did
            reals = [vf.real, *vf.more_real]
            src = reals[int(rng.integers(len(reals)))] if len(reals) > 1 else vf.real
        clips.append(src[_positions(len(src), num_frames, rng, sampling)])
    return torch.stack(clips).float()


def _eval_set(
    videos: list[VideoFeatures], num_frames: int, clips: int, seed: int, sampling: str = "random"
) -> tuple[torch.Tensor, np.ndarray, list[str], list[str]]:
    """Fixed validation clips: per video, ``clips`` real ones and about as many pseudo-fakes,
    spread over its variants (``clips // variants`` each, at least one)."""
    rng = np.random.default_rng(seed)
    xs, ys, groups, paths = [], [], [], []
    for vf in videos:
        for c in range(clips):
            for label, src in [(0, vf.real)] + [(1, f) for f in vf.fakes]:
                if label and c >= max(1, clips // len(vf.fakes)):
                    continue
                xs.append(src[_positions(len(src), num_frames, rng, sampling)])
                ys.append(label)
                groups.append(vf.entry.group if label == 0 else SELF_BLEND_GROUP)
                paths.append(vf.entry.path)
    return torch.stack(xs), np.array(ys), groups, paths


@torch.inference_mode()
def _head_scores(model: Detector, x: torch.Tensor, env: Env) -> np.ndarray:
    model.eval()
    out = []
    for chunk in x.split(64):
        logits, _ = model.head(
            model.proj(chunk.float().flatten(0, 1).to(env.device)).unflatten(0, (len(chunk), -1))
        )
        out.append(torch.softmax(logits, 1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def head_stage(
    cfg: TrainConfig,
    st: StageConfig,
    model: Detector,
    feats: dict[str, list[VideoFeatures]],
    out: Path,
    env: Env,
    resume: bool,
) -> dict:
    """Train proj + attention ConvLSTM + fc on cached feature maps; keep the best by val AUC."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt = torch.optim.AdamW(head_params, lr=st.head_lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=st.head_epochs)
    t = cfg.num_frames
    val_x, val_y, _, _ = _eval_set(feats["val"], t, st.val_clips, cfg.seed, cfg.sampling)
    state_path = out / HEAD_STATE
    start, best, best_state, bad, history = 0, -math.inf, None, 0, []
    if resume and state_path.exists():
        s = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["optimizer"])
        sched.load_state_dict(s["scheduler"])
        start, best, best_state, bad = s["epoch"] + 1, s["best"], s["best_state"], s["bad"]
        history = s["history"]
        log.info("head stage: resuming after epoch %d", s["epoch"])
    if bad >= st.head_patience:  # a resumed run that had stopped early
        log.info("head stage: already stopped early")
        start = st.head_epochs
    train = feats["train"]
    for epoch in range(start, st.head_epochs):
        rng = np.random.default_rng([cfg.seed, 11, epoch])
        order = rng.permutation(len(train))
        model.train()
        model.backbone.eval()
        total, count = 0.0, 0
        half = max(1, st.head_batch // 2)
        for b in range(0, len(order), half):
            vids = [train[i] for i in order[b : b + half]]
            x = torch.cat(
                [
                    _clip_batch(vids, t, rng, False, cfg.sampling),
                    _clip_batch(vids, t, rng, True, cfg.sampling),
                ]
            )
            y = torch.tensor([0] * len(vids) + [1] * len(vids), device=env.device)
            x = x.to(env.device)
            v = model.proj(x.flatten(0, 1)).unflatten(0, (len(x), t))
            logits, _ = model.head(v)
            loss = F.cross_entropy(logits, y)
            value = require_finite(loss.item(), f"head stage, epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += value * len(y)
            count += len(y)
        sched.step()
        auc = roc_auc(val_y, _head_scores(model, val_x, env))
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_auc": auc})
        log.info("head epoch %d: loss %.4f, val AUC %.4f", epoch, total / max(count, 1), auc)
        if auc > best:
            best, bad = auc, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "best": best,
            "best_state": best_state,
            "bad": bad,
            "history": history,
        }
        with replacing(state_path) as tmp:
            torch.save(state, tmp)
        if bad >= st.head_patience:
            log.info("head stage: early stop, no better validation AUC for %d epochs", bad)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"best_val_auc": best, "history": history}


# --------------------------------------------------------------------------- run


def dataset_items(cfg: TrainConfig) -> list[VideoItem]:
    """The dataset's videos; without ``data``, the videos of the cache's index (an unpacked
    ``training.cache_pack`` on a machine that has the crops but not the videos)."""
    if cfg.data:
        return load_dataset(Path(cfg.data), cfg.layout, quality=cfg.quality or None)
    ignored = [
        f"{k} {getattr(cfg, k)!r}"
        for k in ("layout", "quality")
        if getattr(cfg, k) not in ("", "auto")
    ]
    if ignored:
        log.warning(
            "no data given: the cache's index is the dataset, so %s is not used", ", ".join(ignored)
        )
    entries = read_index(cfg.cache_dir)  # failed videos too, so that splits match the data's
    if not any(e.status == "ok" for e in entries):
        raise ValueError(f"no data given and no face tracks in the cache {cfg.cache_dir}")
    log.info("%d videos from the cache index of %s", len(entries), cfg.cache_dir)
    return [VideoItem(Path(e.path), e.label, e.group, e.source, e.split) for e in entries]


def fingerprint_generator(
    cfg: TrainConfig, st: StageConfig, store: TrackStore, train: list[CacheEntry], out: Path
) -> Draw | None:
    """The generators of generated pseudo-fakes (None without ``generated_prob``): one
    autoencoder per ``generator_kinds`` (``training.fingerprint``), each trained on every
    fourth cached frame of the training videos on the first call and read back from the run
    folder after."""
    if not st.generated_prob:
        return None
    from training.fingerprint import (
        FeatureDistance,
        Generators,
        file_name,
        kind_name,
        load_autoencoder,
        parse_kinds,
        save_autoencoder,
        train_autoencoder,
    )

    images: list[np.ndarray] = []
    autoencoders = []
    records = {}
    perceptual = None
    log_path = out / "fingerprint.json"
    done = json.loads(log_path.read_text(encoding="utf-8")) if log_path.exists() else {}
    done = {"transposed": done} if "steps" in done else done  # a one-generator run's log
    videos = sorted(e.path for e in train)
    for spec in parse_kinds(st.generator_kinds):
        kind = kind_name(*spec)
        path = out / file_name(kind)
        if path.exists():
            log.info("generated pseudo-fakes: autoencoder %s read from %s", kind, path)
            autoencoders.append(load_autoencoder(path))
            # One trained for another run (copied in, or this folder run with another split):
            # videos it learnt from outside this run's training split have been seen.
            seen = set(done.get(kind, {}).get("videos", videos)) - set(videos)
            if seen:
                log.warning(
                    "autoencoder %s was trained on frames of %d videos outside this run's "
                    "training split (validation or test videos its pseudo-fakes have seen); "
                    "delete %s to train it again",
                    kind,
                    len(seen),
                    path,
                )
            continue
        if not images:
            images = [c for e in train for c in store.frames(e, np.arange(0, e.frames, 4))[0]]
        if spec.latent and perceptual is None:
            perceptual = FeatureDistance(imagenet_backbone("tf_efficientnet_lite0"))
        ae, record = train_autoencoder(
            images, st.generator_steps, seed=cfg.seed, perceptual=perceptual, **spec._asdict()
        )
        records[kind] = record | {"videos": videos}
        save_autoencoder(ae, path)
        autoencoders.append(ae)
    if records:
        log_path.write_text(json.dumps(done | records, indent=2), encoding="utf-8")
    return Generators(autoencoders, st.generator_scale, st.generator_flicker)


def run(cfg: TrainConfig, st: StageConfig, resume: bool, command: str) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    env = Env(resolve_device(cfg.device))
    torch.manual_seed(cfg.seed)
    (out / "config.json").write_text(
        json.dumps(cfg.to_dict() | dataclasses.asdict(st), indent=2), encoding="utf-8"
    )
    items = dataset_items(cfg)
    items = cap_per_identity(items, st.max_per_identity, cfg.seed)
    splits = split_items(items, ratios=cfg.split, seed=cfg.seed)
    if any(it.label == 1 for part in splits.values() for it in part):
        raise ValueError("two-stage training learns from real videos and their pseudo-fakes only")
    usable = cached_entries(cfg, [it for part in splits.values() for it in part], env)
    parts = {
        name: [usable[str(it.path)] for it in part if str(it.path) in usable]
        for name, part in splits.items()
    }
    log.info(
        "videos with a face track: %s",
        ", ".join(f"{len(v)} {k} ({len({e.source for e in v})} people)" for k, v in parts.items()),
    )
    if not parts["train"] or not parts["val"]:
        raise ValueError("need training and validation videos with a face track")

    model = build_detector(cfg.detector)
    origin = load_backbone_weights(model.backbone, cfg.backbone, cfg.backbone_weights)
    model.to(env.device)
    store = TrackStore(cfg.cache_dir, st.dense_landmarks)

    generator = fingerprint_generator(cfg, st, store, parts["train"], out)
    t0 = time.perf_counter()
    stage = frame_soup if st.frame_soup > 1 else frame_stage
    frame_log = stage(
        cfg, st, model, store, parts["train"], parts["val"], out, env, resume, generator
    )
    t1 = time.perf_counter()
    feats = feature_cache(cfg, st, model, store, parts, out, env, generator, resume)
    t2 = time.perf_counter()
    head_log = head_stage(cfg, st, model, feats, out, env, resume)
    t3 = time.perf_counter()

    val_x, val_y, _, _ = _eval_set(
        feats["val"], cfg.num_frames, st.val_clips, cfg.seed, cfg.sampling
    )
    val_s = _head_scores(model, val_x, env)
    calibration = calibrate_threshold(val_y, val_s, cfg.target_fpr)
    log.info(
        "threshold %.4f: false-positive rate %.3f on %d real validation clips, TPR %.3f",
        calibration.threshold,
        calibration.achieved_fpr,
        calibration.n_real,
        calibration.tpr,
    )
    test: dict = {}
    if feats.get("test"):
        x, y, groups, paths = _eval_set(
            feats["test"], cfg.num_frames, st.val_clips, cfg.seed + 1, cfg.sampling
        )
        s = _head_scores(model, x, env)
        # several clips of each test video: the intervals resample whole videos
        units = [f"{label}:{path}" for label, path in zip(y, paths)]
        rows = summarise(y, s, groups, calibration.threshold, units)
        print(format_table(rows), file=sys.stderr)
        log.info("test: clips of %d videos; AUC intervals resample whole videos", len(set(paths)))
        test = {"groups": [dataclasses.asdict(r) for r in rows], "threshold": calibration.threshold}
    timing = {
        "frame_stage_s": round(t1 - t0, 1),
        "feature_cache_s": round(t2 - t1, 1),
        "head_stage_s": round(t3 - t2, 1),
    }
    summary = {
        "frame_stage": frame_log,
        "head_stage": head_log,
        "timing": timing,
        "calibration": calibration.to_dict(),
        "test": test,
        "splits": {k: [e.path for e in v] for k, v in parts.items()},
    }
    (out / "two_stage.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    cap = f"at most {st.max_per_identity} per person" if st.max_per_identity else "all of them"
    provenance = run_provenance(
        cfg,
        f"{len(parts['train'])} train / {len(parts['val'])} val / {len(parts['test'])} test "
        f"real videos, {cap}, self-blended fakes",
        origin,
        command,
    )
    meta = CheckpointMeta(
        name=cfg.name,
        model=cfg.detector,
        preprocessing=cfg.contract,
        threshold=calibration.threshold,
        calibration=calibration.to_dict() | {"split": "val", "val_auc": roc_auc(val_y, val_s)},
        provenance=provenance,
    )
    final = out / FINAL
    save_checkpoint(final, model.cpu(), meta, half=cfg.half_checkpoint)
    log.info("model: %s (%s)", final, timing)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    stage_keys = "\n".join(
        f"  {f.name} ({f.default}): {STAGE_HELP[f.name]}" for f in fields(StageConfig)
    )
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=textwrap.fill(
            "Config keys: every key of python -m training.train's --config (but those of its "
            f"end-to-end schedule and pseudo-fakes, {', '.join(END_TO_END_KEYS)}, which are not "
            "used here), and",
            width=88,
            break_on_hyphens=False,
        )
        + "\n"
        + stage_keys,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks with errors")
    p.add_argument("--config", type=Path, help="YAML or JSON of TrainConfig and StageConfig keys")
    p.add_argument("--out", help="run folder (overrides the config's)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (with its own config.json unless --config is given)",
    )
    p.add_argument(
        "--set",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="override one config key (value parsed as YAML), e.g. --set backbone "
        "tf_efficientnet_lite2",
    )
    args = p.parse_args(argv)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in args.set}
    if args.out:
        overrides["out"] = args.out
    try:
        cfg, st = read_configs(args.config, overrides, args.resume)
    except (*EXPECTED_ERRORS, TypeError, yaml.YAMLError) as e:
        return report_error(PROG, e, args.verbose)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("training").setLevel(logging.INFO)
    command = "python -m training.two_stage " + " ".join(
        sys.argv[1:] if argv is None else list(argv)
    )
    try:
        run(cfg, st, args.resume, command)
    except EXPECTED_ERRORS as e:
        return report_error(PROG, e, args.verbose)
    except NonFinite as e:
        return report_failure(PROG, e, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
