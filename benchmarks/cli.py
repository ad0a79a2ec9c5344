"""`dfscan bench`: model size, latency and end-to-end speed from the command line.

Registered by ``scanner.cli`` by name and imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from benchmarks.bench import format_report, write_report
from benchmarks.run import BenchConfig, default_batches, parse_batches, run_bench
from scanner.backends import resolve_device
from scanner.checkpoint import CheckpointError


@click.command("bench")
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Checkpoint to measure beside the paper configuration. Default: the shipped model.",
)
@click.option(
    "--paper/--no-paper",
    default=True,
    show_default=True,
    help="Also measure the EfficientNet-B5 paper configuration (random weights).",
)
@click.option(
    "--videos",
    type=click.Path(exists=True, path_type=Path),
    help="Folder for the end-to-end measurement. Default: the bundled samples.",
)
@click.option(
    "--batches", help="Batch sizes in clips, e.g. 1,8,32. Default: 1,4 on CPU, 1,8,32,128 on CUDA."
)
@click.option(
    "--runs",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Timed runs per batch size (after warm-up).",
)
@click.option("--warmup", type=click.IntRange(0), default=2, show_default=True)
@click.option(
    "--backends",
    default="torch,onnx,onnx-fp16,tensorrt",
    show_default=True,
    help="Comma-separated: torch, onnx, onnx-fp16, tensorrt.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--workers",
    type=click.IntRange(1),
    help="Scan workers (decode and face detection) of the end-to-end pipeline run. Default: "
    "the scan's (the cores less two, at least 2).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write OUT.json, OUT.csv (latency rows) and OUT.png (plot).",
)
def bench(
    weights: Path | None,
    paper: bool,
    videos: Path | None,
    batches: str | None,
    runs: int,
    warmup: int,
    backends: str,
    device: str,
    workers: int | None,
    out: Path | None,
) -> None:
    """Model size, forward latency and end-to-end speed, beside the paper's Table 7.

    Exit code 0: the report (a measurement that failed is a row with its error); 1: the
    checkpoint to measure cannot be read; 2: usage error.
    """
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from e
    try:
        sizes = parse_batches(batches) if batches else tuple(default_batches(dev))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--batches") from e
    kinds = tuple(b.strip() for b in backends.split(",") if b.strip())
    unknown = sorted(set(kinds) - {"torch", "onnx", "onnx-fp16", "tensorrt"})
    if unknown:
        raise click.BadParameter(f"unknown backends {unknown}", param_hint="--backends")
    config = BenchConfig(
        weights=weights,
        paper=paper,
        videos=videos,
        batches=sizes,
        runs=runs,
        warmup=warmup,
        device=device,
        backends=kinds,
        workers=workers,
    )
    try:
        report = run_bench(config)
    except CheckpointError as e:  # --weights (or the shipped model) is no usable checkpoint
        raise click.ClickException(str(e)) from e
    click.echo(format_report(report))
    if out is not None:
        for path in write_report(report, out):
            click.echo(f"wrote {path}", err=True)
