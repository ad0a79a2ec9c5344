"""`dfscan export`: a checkpoint to ONNX / TensorRT from the command line.

Registered by ``scanner.cli`` by name and imported only when the command runs, so scanning
never loads the exporter.
"""

from __future__ import annotations

from pathlib import Path

import click

from export.pipeline import check_formats, export_all, sample_face_crops
from scanner.artifact_writer import ExportError
from scanner.checkpoint import CheckpointError, read_meta
from scanner.cli import weights_or_default


@click.command("export")
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="dfscan checkpoint (.safetensors) to export. Default: the shipped model.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write model.onnx, model.fp16.onnx, model.engine and their sidecars to.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "engine", "all"]),
    default="onnx",
    show_default=True,
    help="onnx: ONNX files; engine: a TensorRT engine for this GPU; all: both.",
)
@click.option(
    "--fp16",
    is_flag=True,
    help="Also write model.fp16.onnx (fp16 weights, fp32 I/O; with --format engine only as "
    "the engine's source); build the engine in fp16.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Largest batch (clips) the artifacts are run with: the TensorRT engine's profile, "
    "and onnxruntime's TensorRT profile and call size for the ONNX files.",
)
def export(weights: Path | None, out: Path, fmt: str, fp16: bool, max_batch: int) -> None:
    """Export a checkpoint to ONNX / TensorRT, each artifact checked against PyTorch.

    Exit code 0: every artifact written and within tolerance; 1: a step or a parity check
    failed, or no runtime here can run an artifact to check it (that artifact gets no
    sidecar, so it will not load); 2: usage error.
    """
    weights = weights_or_default(weights)

    try:
        check_formats(fmt)
        face = sample_face_crops(read_meta(weights).preprocessing)
        result = export_all(weights, out, formats=fmt, fp16=fp16, max_batch=max_batch, face=face)
    except (CheckpointError, ExportError) as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:  # the output folder, the sample clip, a scratch file: say which
        where = e.filename or out
        raise click.ClickException(f"export failed at {where}: {e.strerror or e}") from e
    for a in result.artifacts:
        parity = a.info.parity
        checked = (
            f"max |dp| {parity['max_abs_probabilities']:.1e}, "
            f"max |dattention| {parity['max_abs_attention']:.1e} "
            f"(tolerance {parity['tolerance']:g})"
        )
        click.echo(
            f"{a.path} ({a.info.precision}, {a.info.size_bytes / 1e6:.1f} MB, "
            f"{a.seconds:.1f} s): {checked}",
            err=True,
        )
    click.echo(f"sidecars beside each file; checkpoint copy: {result.checkpoint}", err=True)
