"""How a checkpoint's verdicts hold up when videos are processed as platforms process them.

    python -m training.robustness --weights W --data CSV [--perturb reencode,blur,downscale,jpeg]
        [--json out.json]

Every video of the dataset is rewritten once per perturbation, frame by frame, and the
rewritten files are scanned exactly as `dfscan scan` scans (``training.evaluate``'s path). The
perturbations act on whole frames, as an upload pipeline would, never on the face alone:

- ``reencode``: the frames written again with no change (MPEG-4 Part 2 through OpenCV): the
  control, since every other perturbation goes through the same writer;
- ``blur``: a Gaussian blur, sigma 1/240 of the frame's short side (2 px at 480p);
- ``downscale``: every frame halved and enlarged back (a low-resolution re-upload);
- ``jpeg``: every frame through JPEG at quality 30 (heavy compression).

Per perturbation it reports AUC (overall and per group), how many real videos and fakes are
flagged at the checkpoint's threshold, and, against the control, how far scores move and how
many verdicts change. A detector whose verdict on real footage follows its quality, not its
content, shows it here.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from training.augment import jpeg_frame
from training.cli import add_data_arguments, check_writable, run_command
from training.datasets import VideoItem, load_dataset
from training.make_samples import read_video, video_fps, write_video
from training.metrics import format_table, summarise

log = logging.getLogger("training.robustness")

PROG = "python -m training.robustness"


def _blur(frame: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(frame, (0, 0), min(frame.shape[:2]) / 240)


def _downscale(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# name -> (H, W, 3) uint8 RGB frame -> the same shape; the control first
PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "reencode": lambda frame: frame,
    "blur": _blur,
    "downscale": _downscale,
    "jpeg": lambda frame: jpeg_frame(frame, 30),
}


def perturb_video(source: Path, target: Path, perturbation: str) -> bool:
    """Write ``source``'s frames through ``perturbation`` to ``target`` (same size and frame
    rate); False when ``source`` yields no frame (the scan then reports it as it is)."""
    fn = PERTURBATIONS[perturbation]
    return write_video(target, map(fn, read_video(source)), video_fps(source)) > 0


@dataclasses.dataclass(frozen=True)
class Shift:
    """Scores of one perturbation against the control's, over videos scored in both."""

    perturbation: str
    n: int
    mean_abs_change: float
    real_mean_change: float  # signed: > 0 means real videos look more fake
    verdicts_changed: int
    real_flagged: int
    fakes_flagged: int


def score_shift(
    name: str,
    control: dict[str, float],
    scores: dict[str, float],
    labels: dict[str, int],
    threshold: float,
) -> Shift:
    """Compare ``scores`` (video key -> score) with ``control``'s on the videos both scored."""
    keys = sorted(set(control) & set(scores))
    a = np.array([control[k] for k in keys])
    b = np.array([scores[k] for k in keys])
    y = np.array([labels[k] for k in keys])
    real = y == 0
    return Shift(
        perturbation=name,
        n=len(keys),
        mean_abs_change=float(np.abs(b - a).mean()) if keys else float("nan"),
        real_mean_change=float((b - a)[real].mean()) if real.any() else float("nan"),
        verdicts_changed=int(((a >= threshold) != (b >= threshold)).sum()),
        real_flagged=int((b[real] >= threshold).sum()),
        fakes_flagged=int((b[~real] >= threshold).sum()),
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 evaluated; 1 nothing could be scored; 2 the flags, the data or "
        "the checkpoint cannot work: one line says why (-v adds the traceback).",
    )
    p.add_argument("--weights", required=True, type=Path, help="dfscan checkpoint to score.")
    add_data_arguments(p)
    p.add_argument(
        "--perturb",
        default=",".join(PERTURBATIONS),
        help=f"comma-separated, some of {','.join(PERTURBATIONS)} (default: all; the control "
        "reencode always runs).",
    )
    p.add_argument("--json", type=Path, default=None, help="Also write the report here as JSON.")
    p.add_argument("--work", type=Path, default=None, help="Keep the rewritten videos here.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Decoding and face-detection workers, as `dfscan scan --workers`.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="Show a traceback on error.")
    return p


def _perturbations(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = sorted(set(names) - set(PERTURBATIONS))
    if unknown:
        raise ValueError(f"--perturb: unknown {unknown}; choose from {list(PERTURBATIONS)}")
    return ["reencode"] + [n for n in dict.fromkeys(names) if n != "reencode"]


def _scan(scanner, items: list[VideoItem], folder: Path, perturbation: str) -> dict[str, float]:
    """Rewrite every item into ``folder`` and scan: item index (as a string) -> score.

    A rewrite is named after its source's path and written under a temporary name first,
    so a kept ``--work`` folder is reused only for the same source and never half-written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, it in enumerate(items):
        target = folder / f"{hashlib.sha256(str(it.path).encode()).hexdigest()[:20]}.mp4"
        if not target.exists():
            partial = target.with_name(target.stem + ".part.mp4")
            if not perturb_video(it.path, partial, perturbation):
                partial.unlink(missing_ok=True)
                continue
            partial.replace(target)
        paths[str(target)] = str(i)
    results = []
    scanner.run(list(paths), results.append)
    return {paths[r.path]: float(r.score) for r in results if r.status == "ok"}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, build_parser().parse_args(argv), _run)


def _run(args: argparse.Namespace) -> int:
    from scanner.backends import TorchBackend, resolve_device
    from scanner.checkpoint import load_checkpoint
    from scanner.scan import Scanner, ScanOptions

    names = _perturbations(args.perturb)
    items = load_dataset(args.data, args.layout)
    if args.json:
        check_writable(args.json.parent, "--json")
    backend = TorchBackend(load_checkpoint(args.weights), resolve_device(args.device))
    scanner = Scanner(backend, ScanOptions(workers=args.workers))
    labels = {str(i): it.label for i, it in enumerate(items)}
    groups = {str(i): it.group for i, it in enumerate(items)}
    with tempfile.TemporaryDirectory(prefix="dfscan-robustness-") as tmp:
        work = args.work or Path(tmp)
        scores = {}
        for name in names:
            scores[name] = _scan(scanner, items, work / name, name)
            log.info("%s: %d of %d videos scored", name, len(scores[name]), len(items))
    if not scores["reencode"]:
        log.error("no video could be scored")
        return 1
    report = {"weights": str(args.weights), "data": str(args.data), "threshold": scanner.threshold}
    report["perturbations"] = {}
    for name in names:
        keys = sorted(scores[name], key=int)
        rows = summarise(
            np.array([labels[k] for k in keys]),
            np.array([scores[name][k] for k in keys]),
            [groups[k] for k in keys],
            scanner.threshold,
        )
        shift = score_shift(name, scores["reencode"], scores[name], labels, scanner.threshold)
        print(f"\n{name}: real flagged {shift.real_flagged}, fakes flagged {shift.fakes_flagged}")
        print(format_table(rows))
        report["perturbations"][name] = {
            "groups": [dataclasses.asdict(r) for r in rows],
            "shift": dataclasses.asdict(shift),
            "videos": [{"path": str(items[int(k)].path), "score": scores[name][k]} for k in keys],
        }
    print("\nagainst the control (reencode):")
    print("perturbation  videos  mean |change|  real mean change  verdicts changed")
    for name in names[1:]:
        s = report["perturbations"][name]["shift"]
        print(
            f"{name:12s}  {s['n']:6d}  {s['mean_abs_change']:13.3f}  "
            f"{s['real_mean_change']:+16.3f}  {s['verdicts_changed']:16d}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
