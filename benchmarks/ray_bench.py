"""Local engine against Ray engine: end-to-end videos/s of `dfscan scan` on one folder.

    python -m benchmarks.ray_bench --videos DIR --out benchmarks/results/NAME [--runs 2]

Both engines scan the same folder with the same model, options and backend through the
public path (``scanner.scan_paths`` with ``engine="local"`` and ``engine="ray"``); each run
is timed from the call to the last result. The Ray instance is started once before the
runs (its start is timed apart: a cluster that is already up does not pay it) with all the
machine's CPUs; each Ray run starts its own actors (decode and scoring), which is part of
every scan and timed in it. The load average is recorded before and after each run: on a
shared machine the figures are only as good as it is quiet. Writes NAME.json and prints a
table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections import Counter
from pathlib import Path

from scanner.api import scan_paths
from scanner.discover import discover_videos
from scanner.machine import hardware
from scanner.ray_engine import connected
from scanner.scan import ScanOptions


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed(engine: str, videos: Path, weights: str | None, options: ScanOptions) -> dict:
    before = _load()
    start = time.perf_counter()
    counts: Counter[str] = Counter()
    scores = {}
    for r in scan_paths([videos], options, weights=weights, device="cpu", engine=engine):
        counts[r.status] += 1
        scores[r.path] = r.score
    seconds = time.perf_counter() - start
    n = sum(counts.values())
    return {
        "engine": engine,
        "videos": n,
        "seconds": round(seconds, 2),
        "videos_per_s": round(n / seconds, 3),
        "statuses": dict(counts),
        "load_before": before,
        "load_after": _load(),
        "scores": scores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=Path, required=True, help="folder of videos")
    parser.add_argument("--out", type=Path, required=True, help="NAME: writes NAME.json")
    parser.add_argument("--weights", help="checkpoint; default: the shipped model")
    parser.add_argument("--runs", type=int, default=2, help="runs per engine (median kept)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import ray

    options = ScanOptions(batch_size=args.batch_size)
    start = time.perf_counter()
    with connected(ray, None):  # a new local instance, as `dfscan scan --engine ray` starts
        ray_start = time.perf_counter() - start
        cpus = int(ray.cluster_resources().get("CPU", 0))
        runs = []
        for _ in range(args.runs):  # alternated, so that a change of load hits both
            for engine in ("local", "ray"):
                runs.append(_timed(engine, args.videos, args.weights, options))
                print(
                    f"{engine:5s} {runs[-1]['videos']} videos in {runs[-1]['seconds']:.1f} s "
                    f"({runs[-1]['videos_per_s']:.3f} videos/s), load {runs[-1]['load_before']}"
                    f" -> {runs[-1]['load_after']}",
                    flush=True,
                )
    summary = {}
    for engine in ("local", "ray"):
        mine = [r for r in runs if r["engine"] == engine]
        summary[engine] = statistics.median(r["videos_per_s"] for r in mine)
    local_scores = next(r for r in runs if r["engine"] == "local")["scores"]
    ray_scores = next(r for r in runs if r["engine"] == "ray")["scores"]
    diffs = [
        abs(local_scores[p] - ray_scores[p])
        for p in local_scores
        if local_scores[p] is not None and ray_scores.get(p) is not None
    ]
    report = {
        "hardware": hardware(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "ray_cpus": cpus,
        "ray_start_s": round(ray_start, 2),
        "videos": len(discover_videos([args.videos])),
        "options": {"batch_size": args.batch_size, "device": "cpu"},
        "median_videos_per_s": summary,
        "max_score_difference": max(diffs) if diffs else None,
        "runs": [{k: v for k, v in r.items() if k != "scores"} for r in runs],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"median videos/s: local {summary['local']:.3f}, ray {summary['ray']:.3f} "
        f"(Ray instance start {ray_start:.1f} s, not included); largest score difference "
        f"{report['max_score_difference']}; {hardware()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
