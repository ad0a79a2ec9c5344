"""The `dfscan` command line: a thin click layer over the library.

Exit codes of `dfscan scan`:
  0  every video has a row and none failed (statuses ok, no_face or too_short)
  1  the run could not start or stopped (bad checkpoint, output not writable, the model's
     device failed, ...)
  2  usage error (bad option or argument)
  3  the run finished, but some videos failed (decode_error, not_video or error), with
     --resume also in the rows kept from the earlier run
  130 interrupted (Ctrl-C); the rows written so far are kept, `--resume` continues
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import click

from scanner.contract import SAMPLING_METHODS
from scanner.errors import RayFailure
from scanner.files import is_uri

EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130
FAILED_STATUSES = ("decode_error", "not_video", "error")


class PathOrURI(click.ParamType):
    """A local path that exists (a ``Path``), or a URI (``scheme://...``, kept as a ``str``):
    read by the Ray engine through pyarrow's filesystems."""

    name = "path"

    def __init__(self) -> None:
        # Not click's readability check: a file the process may not read gets an error row
        # that says so, and the run goes on, as for one found in a folder.
        self.local = click.Path(exists=True, readable=False, path_type=Path)

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201
        if is_uri(value):
            return value
        return self.local.convert(value, param, ctx)


def _configure_logging(verbose: int, quiet: bool) -> None:
    """dfscan's log level on stderr: -q warnings and errors, -v debug, else info."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def weights_or_default(weights: Path | None) -> Path:
    """The --weights path, else the shipped default model, else a usage error."""
    if weights is not None:
        return weights
    from scanner.models import default_weights

    found = default_weights()
    if found is None:
        raise click.UsageError(
            "this installation has no default model: pass --weights PATH to a dfscan "
            "checkpoint (train one with `python -m training.train`)"
        )
    return found


def _verbosity_options(f):  # noqa: ANN001, ANN202
    """-v / -q, accepted before the command (`dfscan -q scan`) and after it (`dfscan scan -q`)."""
    f = click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")(f)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        help="Debug log output on stderr, OpenCV's own warnings included.",
    )(f)


class LazyGroup(click.Group):
    """A click group whose commands from other packages are imported only when they run.

    ``lazy`` maps a command name to ("module:attribute", its one-line help): `dfscan --help`
    lists them from that line, and `dfscan scan` never imports the exporter or the
    benchmarks (the scanner's layer sits below both; see the import contract in
    pyproject.toml).
    """

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        target = self.lazy[name][0]
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name.split(".")[0]:
                raise  # a dependency of the command is missing: its own message says which
            raise click.UsageError(
                f"`dfscan {name}` runs from a source checkout of dfscan (its `{e.name}` "
                "package is not installed with the wheel, see the README's Packaging): "
                "clone the repository and run `make setup` there"
            ) from e
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            limit = formatter.width - 6 - len(name)
            if name in self.lazy:
                stub = click.Command(name, help=self.lazy[name][1])  # click's own shortening
                rows.append((name, stub.get_short_help_str(limit)))
                continue
            cmd = super().get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


LAZY_COMMANDS = {
    "export": (
        "export.cli:export",
        "Export a checkpoint to ONNX / TensorRT, each artifact checked against PyTorch.",
    ),
    "bench": (
        "benchmarks.cli:bench",
        "Model size, forward latency and end-to-end speed, beside the paper's Table 7.",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="dfscan")
@_verbosity_options
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """dfscan: find deepfake videos with an attention ConvLSTM over face tracks."""
    ctx.obj = {"verbose": verbose, "quiet": quiet}
    _configure_logging(verbose, quiet)


def _interrupted_exit(f):  # noqa: ANN001, ANN202
    """Ctrl-C anywhere in the command (loading the model, exporting its graph, listing the
    videos, writing the report) exits with EXIT_INTERRUPTED, as it does while videos are
    scanned, instead of click's "Aborted!" and 1."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return f(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            click.get_current_context().exit(EXIT_INTERRUPTED)

    return wrapper


@main.command()
@click.argument("inputs", nargs=-1, type=PathOrURI())
@click.option(
    "--samples",
    is_flag=True,
    help="Scan the two sample clips bundled with dfscan (a real clip and a self-blended fake).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV file to write, one row per video.",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, path_type=Path),
    help="dfscan checkpoint (.safetensors), exported .onnx or .engine, or a directory written "
    "by `dfscan export`. Default: the shipped model.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "onnx", "tensorrt"]),
    default="auto",
    show_default=True,
    help="What runs the model. auto: the fastest that can run --weights here "
    "(TensorRT > onnxruntime on a GPU > PyTorch on a GPU; onnxruntime > PyTorch on the CPU).",
)
@click.option(
    "--details",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write per-video detail as JSON Lines: one entry per person (frame indices, "
    "face boxes, score, attention), and the face crops as small JPEGs in NAME.crops/ beside it.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report of the results (see `dfscan report`).",
)
@click.option(
    "--max-people",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Faces scored per video, largest first: every face seen in at least a third of the "
    "sampled frames is a person with a clip of its own. The row's score is the most "
    "suspicious person's.",
)
@click.option("--resume", is_flag=True, help="Skip videos already in --out and append to it.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace existing --out, --details (and its crops) and --report files.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    help="P(fake) at or above which a video is FAKE. Default: the checkpoint's.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "fp16"]),
    default="auto",
    show_default=True,
    help="auto: fp16 on CUDA, fp32 on CPU.",
)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1),
    help="Workers decoding videos and detecting faces ahead of the model: processes (forked "
    "on the CPU, started afresh with a GPU detector), threads on the CPU without fork. "
    "Default: the cores less two, at least 2. With --engine ray: the decode actors (default: "
    "the cluster's CPUs less the scoring actors').",
)
@click.option(
    "--sampling",
    type=click.Choice(SAMPLING_METHODS),
    help="Frame sampling (the paper's Table 4). Default: the checkpoint's (random, the "
    "paper's best).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Frame sampling seed.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process. ray: a Ray Data pipeline on a Ray cluster (decode and faces in "
    "CPU actors, the model in an actor pool, one GPU each where there are GPUs); pip install "
    '"dfscan[ray]". Same rows, resume and exit codes.',
)
@click.option(
    "--ray-address",
    metavar="ADDR",
    help="With --engine ray: the cluster to run on (ray://HOST:10001, HOST:6379 or auto). "
    "Default: RAY_ADDRESS, else a Ray instance started on this machine for the scan.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_verbosity_options
@click.pass_context
@_interrupted_exit
def scan(
    ctx: click.Context,
    inputs: tuple[Path | str, ...],
    samples: bool,
    out: Path,
    weights: Path | None,
    backend: str,
    details: Path | None,
    report: Path | None,
    max_people: int,
    resume: bool,
    overwrite: bool,
    threshold: float | None,
    device: str,
    precision: str,
    batch_size: int,
    workers: int | None,
    sampling: str | None,
    seed: int,
    engine: str,
    ray_address: str | None,
    no_progress: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Scan video files and directories (recursively) and write one CSV row per video."""
    given = ctx.obj or {}
    verbose += given.get("verbose", 0)
    quiet = quiet or given.get("quiet", False)
    _configure_logging(verbose, quiet)
    if samples:
        from scanner.models import samples_dir

        inputs = (*inputs, samples_dir())
    if not inputs:
        raise click.UsageError("name video files or directories to scan (or --samples)")
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    from scanner.report import crops_dir, output_problem, same_file

    if details is not None:
        # The details file's crops folder is made when the first crops are written: an
        # output file of that name (``--details r.crops`` is its own, r.crops) would end the
        # scan after its first row.
        crops = crops_dir(details)
        for option, path in (("--out", out), ("--details", details), ("--report", report)):
            if path is not None and same_file(path, crops):
                whose = "its own" if option == "--details" else f"those of --details {details}"
                raise click.UsageError(
                    f"{option} {path} is the folder {crops} of face crops ({whose}): name "
                    "the file otherwise (--details NAME.jsonl puts its crops in NAME.crops/)"
                )
    for option, path in (("--out", out), ("--details", details), ("--report", report)):
        if path is None or resume or overwrite:
            continue
        used = path.exists() and path.stat().st_size > 0
        if option == "--details" and crops_dir(path).is_dir():
            used = used or any(crops_dir(path).iterdir())  # a fresh run empties it
        if used:
            raise click.UsageError(
                f"{option} {path} exists; pass --resume to continue the scan or "
                "--overwrite to replace it"
            )

    outputs = [("--out", out), ("--details", details), ("--report", report)]
    outputs = [(option, path) for option, path in outputs if path is not None]
    for i, (option, path) in enumerate(outputs):
        for other, other_path in outputs[:i]:
            if same_file(other_path, path):
                raise click.UsageError(
                    f"{other} {other_path} and {option} {path} are the same file"
                )
    if report is not None and resume and details is None:
        raise click.UsageError(
            "--report with --resume needs --details: the report is made from the details "
            "file, which holds the earlier run's videos too"
        )
    for option, path in outputs:
        problem = output_problem(path)
        if problem:  # checked for every output before any is created
            raise click.ClickException(f"cannot write {option} {path}: {problem}")
    if details is not None and crops_dir(details).exists() and not crops_dir(details).is_dir():
        raise click.ClickException(
            f"cannot write the face crops of --details into {crops_dir(details)}: not a directory"
        )
    if ray_address is not None and engine != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    uris = [i for i in inputs if isinstance(i, str)]
    if uris and engine != "ray":
        raise click.UsageError(
            f"{uris[0]}: URIs are read by the Ray engine only: pass --engine ray (or a local path)"
        )
    weights = weights_or_default(weights)
    if engine == "ray":
        from scanner.ray_engine import RayUnavailable, import_ray

        try:
            import_ray()
        except RayUnavailable as e:
            raise click.ClickException(str(e)) from e

    import os
    import tempfile

    from tqdm import tqdm

    from scanner.api import load_backend, scan_paths
    from scanner.backends import BackendUnavailable, DeviceFailure, resolve_device
    from scanner.checkpoint import CheckpointError
    from scanner.discover import discover_videos
    from scanner.report import ResultWriter, resume_point
    from scanner.scan import ScanOptions, default_workers
    from scanner.video import show_opencv_log

    show_opencv_log(verbose > 0)
    log = logging.getLogger("dfscan")
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from e
    if precision == "fp16" and dev.type != "cuda":
        raise click.BadParameter("fp16 needs a CUDA device", param_hint="--precision")
    try:
        runner = load_backend(weights, backend, dev, precision)
    except (CheckpointError, BackendUnavailable) as e:
        raise click.ClickException(str(e)) from e

    if engine == "ray":
        from scanner.ray_engine import discover_inputs

        try:
            videos = discover_inputs(inputs)
        except ValueError as e:
            raise click.ClickException(str(e)) from e
    else:
        videos = discover_videos(inputs)
    if not videos:  # with --resume too: no videos is not a finished scan
        raise click.ClickException("no video files found in " + ", ".join(map(str, inputs)))
    kept_failed: Counter[str] = Counter()  # failed rows kept from an earlier run (--resume)
    if resume:
        try:
            point = resume_point(out, details)
        except (ValueError, OSError) as e:
            raise click.ClickException(f"cannot resume from {out}: {e}") from e
        before = len(videos)
        # a URI's row is done under the URI itself; a local path's under its real path
        done = {os.path.realpath(p) for p in point.paths}
        done_uris = {p for p in point.paths if is_uri(p)}
        videos = [
            v
            for v in videos
            if (v not in done_uris if isinstance(v, str) else os.path.realpath(v) not in done)
        ]
        log.info("resuming: %d of %d videos already in %s", before - len(videos), before, out)
        lost = [p for p in point.paths if not is_uri(p) and not os.path.isabs(p)]
        lost = [p for p in lost if not os.path.lexists(p)]
        if lost:  # rows hold paths as found: relative ones are relative to the first run's folder
            log.warning(
                "%d kept rows name relative paths not found from %s (the first: %s): if the "
                "earlier run ran in another folder, resume there, or these videos are scanned "
                "again under their new names",
                len(lost),
                os.getcwd(),
                lost[0],
            )
        kept_failed = Counter(s for s in point.statuses if s in FAILED_STATUSES)

    options = ScanOptions(
        seed=seed,
        sampling=sampling,
        threshold=threshold,
        batch_size=batch_size,
        workers=workers or default_workers(),
        max_people=max_people,
        thumbnails=details is not None or report is not None,
    )
    if engine == "ray" and not videos:  # --resume with nothing left: no cluster needed
        results = iter(())
    elif engine == "ray":
        from scanner.ray_engine import ModelSpec, RayOptions, connected, scan_ray

        try:  # before any output is created: a cluster that cannot be reached is exit 1
            ctx.with_resource(connected(import_ray(), ray_address))
        except RayUnavailable as e:
            raise click.ClickException(str(e)) from e
        model = ModelSpec(weights, backend, device, precision)
        # --workers: the decode actors (the cluster's CPUs less the scorers' by default)
        ray_options = RayOptions(address=ray_address, decode_actors=workers)
        results = scan_ray(videos, options, model, runner, ray_options)
    else:
        results = scan_paths(videos, options, backend=runner)
    log.info(
        "scanning %d videos with %s (%s on %s, threshold %.3f%s)",
        len(videos),
        runner.model_label,
        runner.name,
        runner.device,
        runner.threshold if threshold is None else threshold,
        ", on Ray" if engine == "ray" else "",
    )
    start = time.perf_counter()
    counts: Counter[str] = Counter()
    scratch = None
    if report is not None and details is None:  # the report is made from a details file
        scratch = tempfile.TemporaryDirectory(prefix="dfscan-report-")
        details = Path(scratch.name) / "details.jsonl"
    try:
        with (
            ResultWriter(out, details, append=resume) as writer,
            tqdm(
                total=len(videos),
                unit="video",
                file=sys.stderr,
                disable=True if no_progress else None,
            ) as bar,
        ):
            for r in results:
                writer.write(r)
                counts[r.status] += 1
                bar.update(1)
    except KeyboardInterrupt:
        click.echo(f"interrupted; finished rows are in {out} (continue with --resume)", err=True)
        if scratch is not None:
            scratch.cleanup()
        click.get_current_context().exit(EXIT_INTERRUPTED)
    except DeviceFailure as e:
        raise click.ClickException(
            f"the model's device failed: {e}; finished rows are in {out} (continue with "
            "--resume once it works again)"
        ) from e
    except RayFailure as e:
        raise click.ClickException(
            f"{e}; finished rows are in {out} (continue with --resume once it is mended)"
        ) from e
    except OSError as e:
        raise click.ClickException(f"cannot write results: {e}") from e
    elapsed = time.perf_counter() - start
    if report is not None:
        from scanner.html import ReportError, write_report

        try:
            write_report(details, report, source=out if scratch is not None else None)
        except (OSError, ReportError) as e:
            raise click.ClickException(f"cannot write --report {report}: {e}") from e
        finally:
            if scratch is not None:
                scratch.cleanup()
        log.info("report: %s", report)
    total = sum(counts.values())
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to do"
    rate = total / elapsed if elapsed > 0 else 0.0
    click.echo(
        f"{total} videos in {elapsed:.1f} s ({rate:.2f} videos/s): {summary}. Results: {out}",
        err=True,
    )
    if kept_failed:
        click.echo(
            "rows kept from the earlier run: "
            + ", ".join(f"{k} {v}" for k, v in sorted(kept_failed.items()))
            + " (scan those videos again into a new file, or remove their rows, to retry them)",
            err=True,
        )
    if any(counts[s] for s in FAILED_STATUSES) or kept_failed:
        click.get_current_context().exit(EXIT_SOME_FAILED)


@main.command("report")
@click.argument(
    "details", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="RESULTS.jsonl"
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML file to write.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def report_command(details: Path, out: Path, overwrite: bool) -> None:
    """Write a self-contained HTML report of a scan's --details file (JSON Lines).

    One file, images inline, no network: a summary (counts per status and verdict, a
    histogram of the scores), then one card per video, most suspicious first, with each
    person's face crops, the attention of each frame, frame indices and times. Face crops are
    read from the NAME.crops/ folder the scan wrote beside the details file.
    """
    from scanner.html import ReportError, write_report
    from scanner.report import output_problem, same_file

    if same_file(details, out):
        raise click.UsageError(f"--out {out} is the details file")
    if out.exists() and out.stat().st_size > 0 and not overwrite:
        raise click.UsageError(f"{out} exists; pass --overwrite to replace it")
    problem = output_problem(out)
    if problem:
        raise click.ClickException(f"cannot write --out {out}: {problem}")
    try:
        summary = write_report(details, out)
    except ReportError as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot write --out {out}: {e}") from e
    click.echo(f"{summary}. Report: {out}", err=True)
