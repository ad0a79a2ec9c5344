"""Evaluate a checkpoint on a labelled dataset through the scanner's own path.

    python -m training.evaluate --weights W --data ROOT [--split test] [--json out.json]
    python -m training.evaluate --rescore REPORT.json --data MANIFEST [--json out.json]

Every video is decoded, face-tracked and scored exactly as `dfscan scan` does; accuracy (at
the checkpoint's threshold) and ROC AUC are reported overall and per group (manipulation
method and quality for FaceForensics++, folder for Celeb-DF, ...). Videos the scanner cannot
score (no face, unreadable) are counted and listed, never given a score.

``--rescore`` summarises an earlier report's scores again over the videos a corrected manifest
lists (a clip taken out of an evaluation set, a group renamed) without scanning anything: the
report must hold every video the manifest lists.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scanner.contract import SAMPLING_METHODS
from training.cli import add_data_arguments, add_output_arguments, check_writable, run_command
from training.datasets import PAPER_RATIOS, load_dataset, split_items
from training.metrics import format_table, summarise

log = logging.getLogger("training.evaluate")


PROG = "python -m training.evaluate"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 evaluated; 1 nothing to score (no videos in the split, or none "
        "with a face); 2 the flags, the data or the checkpoint cannot work: one line says why "
        "(-v adds the traceback).",
    )
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--weights", type=Path, help="dfscan checkpoint (.safetensors) to score.")
    model.add_argument(
        "--rescore",
        type=Path,
        help="An earlier --json report: its scores summarised again over the videos --data "
        "lists, with their groups and labels there (no scan; the threshold is the report's).",
    )
    add_data_arguments(p)
    p.add_argument(
        "--quality",
        default=None,
        help="FaceForensics++ only: one compression level, c0, c23 or c40 (default: all).",
    )
    p.add_argument(
        "--split",
        default="all",
        choices=["all", "train", "val", "test"],
        help="Which identity split to evaluate, rebuilt as training made it from --ratios and "
        "--seed (default: all videos).",
    )
    p.add_argument(
        "--ratios",
        nargs=3,
        type=float,
        default=list(PAPER_RATIOS),
        metavar=("TRAIN", "VAL", "TEST"),
        help="Training's --split, to rebuild its splits (default: 0.8 0.1 0.1).",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="Training's --seed, to rebuild its splits (default: 0)."
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="Decision threshold for the accuracy (default: the checkpoint's calibrated one).",
    )
    p.add_argument("--json", type=Path, default=None, help="Also write the report here as JSON.")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when there is one), cpu, cuda or cuda:N."
    )
    p.add_argument(
        "--sampling",
        choices=SAMPLING_METHODS,
        default=None,
        help="Frame sampling of the scan, as dfscan scan --sampling (default: the checkpoint's).",
    )
    p.add_argument(
        "--frame-seed",
        type=int,
        default=0,
        help="Seed of the scan's frame sampling, as dfscan scan --seed (default: 0).",
    )
    p.add_argument("--batch-size", type=int, default=8, help="Clips per forward pass (default: 8).")
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Decoding and face-detection workers, as `dfscan scan --workers` (default: 2).",
    )
    add_output_arguments(p, progress=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, build_parser().parse_args(argv), _evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from scanner.backends import TorchBackend, resolve_device
    from scanner.checkpoint import load_checkpoint
    from scanner.scan import Scanner, ScanOptions

    items = load_dataset(args.data, args.layout, quality=args.quality)
    if args.json:
        check_writable(args.json.parent, "--json")  # before the scan, not after it
    if args.split != "all":
        items = split_items(items, ratios=tuple(args.ratios), seed=args.seed)[args.split]
    if not items:
        log.error("no videos in split %s", args.split)
        return 1
    if args.rescore:
        return _rescore(args, items)
    backend = TorchBackend(load_checkpoint(args.weights), resolve_device(args.device))
    scanner = Scanner(
        backend,
        ScanOptions(
            threshold=args.threshold,
            batch_size=args.batch_size,
            workers=args.workers,
            sampling=args.sampling,
            seed=args.frame_seed,
        ),
    )
    by_path = {str(it.path): it for it in items}
    results = []
    scanner.run([it.path for it in items], results.append)
    videos = [
        {
            "path": r.path,
            "group": by_path[r.path].group,
            "label": by_path[r.path].label,
            "score": r.score,
        }
        for r in results
        if r.status == "ok"
    ]
    unscored = [
        {"path": r.path, "status": r.status, "message": r.message}
        for r in results
        if r.status != "ok"
    ]
    report = {
        "weights": str(args.weights),
        "model": backend.model_label,
        "data": str(args.data),
        "split": args.split,
        "threshold": scanner.threshold,
        "sampling": scanner.sampling,
        "frame_seed": args.frame_seed,
    }
    return _summarise(report, videos, unscored, args.json)


def _summarise(report: dict, videos: list[dict], unscored: list[dict], out: Path | None) -> int:
    """Print the table of ``videos`` (path, group, label, score) and write the report."""
    if not videos:
        log.error("no video could be scored: %s", Counter(u["status"] for u in unscored))
        return 1
    labels = np.array([int(v["label"]) for v in videos])
    rows = summarise(
        labels,
        np.array([v["score"] for v in videos]),
        [v["group"] for v in videos],
        report["threshold"],
    )
    print(format_table(rows))
    if unscored:
        print(
            f"{len(unscored)} videos not scored: "
            + ", ".join(
                f"{k} {v}" for k, v in sorted(Counter(u["status"] for u in unscored).items())
            )
        )
    report = report | {
        "groups": [dataclasses.asdict(r) for r in rows],
        "unscored": unscored,
        "videos": [v | {"label": int(v["label"])} for v in videos],
    }
    if out:
        out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def _report_paths(reported: Sequence[str], paths: Sequence[Path]) -> dict[str, str]:
    """The reported path of each of ``paths``: the same file, or for a report made from
    another working directory (relative paths), the one path it ends with, e.g.
    ``dev/fake/x.mp4`` for ``../shared/data/dev/fake/x.mp4``; one to one, or not at all."""
    real = {os.path.realpath(r): r for r in reported}
    relative = [r for r in reported if not os.path.isabs(r)]
    out = {}
    for path in paths:
        full = os.path.realpath(path)
        if full in real:
            out[str(path)] = real[full]
            continue
        tails = [r for r in relative if full.endswith(os.sep + os.path.normpath(r))]
        if len(tails) == 1:
            out[str(path)] = tails[0]
    # A reported path that ends two of ``paths`` (real/a.mp4 for X/real/a.mp4 and
    # Y/real/a.mp4) tells neither: both count as missing.
    used = collections.Counter(out.values())
    return {path: r for path, r in out.items() if used[r] == 1}


def _rescore(args: argparse.Namespace, items: list) -> int:
    """An earlier report's scores over ``items`` (the corrected manifest's videos), matched
    by ``_report_paths``; ValueError when the report lacks some of them (they need a scan)."""
    earlier = json.loads(args.rescore.read_text(encoding="utf-8"))
    scores = {v["path"]: v["score"] for v in earlier["videos"]}
    failed = {u["path"]: u for u in earlier.get("unscored", [])}
    match = _report_paths([*scores, *failed], [it.path for it in items])
    missing = [str(it.path) for it in items if str(it.path) not in match]
    if missing:
        raise ValueError(
            f"{args.rescore} has no score for {len(missing)} of the {len(items)} videos "
            f"--data lists (e.g. {missing[0]}): scan them with --weights"
        )
    videos = [
        {
            "path": str(it.path),
            "group": it.group,
            "label": it.label,
            "score": scores[match[str(it.path)]],
        }
        for it in items
        if match.get(str(it.path)) in scores
    ]
    unscored = [failed[match[str(it.path)]] for it in items if match.get(str(it.path)) in failed]
    dropped = len(earlier["videos"]) + len(earlier.get("unscored", [])) - len(items)
    log.info(
        "%s: %d videos of --data rescored, %d of the report's left out",
        args.rescore,
        len(items),
        dropped,
    )
    report = {k: v for k, v in earlier.items() if k not in ("groups", "unscored", "videos")}
    threshold = earlier["threshold"] if args.threshold is None else args.threshold
    report |= {"data": str(args.data), "rescored_from": str(args.rescore), "threshold": threshold}
    return _summarise(report, videos, unscored, args.json)


if __name__ == "__main__":
    sys.exit(main())
