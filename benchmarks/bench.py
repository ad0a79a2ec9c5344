"""Size, latency, throughput and end-to-end speed of dfscan models and backends.

Everything is measured through the public path: the same backends, decoder and face cropper
the scanner uses. Latency is per model call on a batch of clips as long as the checkpoint's
contract says (``num_frames``: 15 in the paper's configuration), normalisation, host-device
copies and the forward pass included, after warm-up, as median and 90th percentile over
repeated runs; on CUDA it is timed with CUDA events. A backend that fails to load or run is a
row with its error, never a silent omission. Table 7 of Su et al. 2021 is printed beside the
measured rows as the paper reported it (two GTX 1080 Ti, PyTorch).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from scanner import __version__
from scanner.backends import Backend
from scanner.clip import StageClock, read_face_clip
from scanner.errors import ClipError
from scanner.machine import hardware

log = logging.getLogger(__name__)

# Su et al. 2021, Table 7 (method.md §6): model size (MB) and forward-pass testing time (ms).
PAPER_TABLE7 = (
    ("McCloskey et al.", 59, 15.5),
    ("Galteri et al.", 60, 16.9),
    ("Rössler et al.", 66, 18.6),
    ("Sabir et al.", 63, 19.7),
    ("Su et al. (paper)", 61, 18.4),
)


def versions() -> str:
    parts = [f"dfscan {__version__}", f"torch {torch.__version__}"]
    for mod in ("onnxruntime", "tensorrt"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    return ", ".join(parts)


@dataclass(frozen=True)
class SizeRow:
    model: str  # e.g. "paper (efficientnet_b5)", "default (tf_efficientnet_lite0)"
    artifact: str  # checkpoint, onnx, onnx-fp16, engine
    params: int | None
    size_mb: float | None
    path: str = ""
    error: str = ""


@dataclass(frozen=True)
class LatencyRow:
    model: str
    backend: str
    device: str
    batch: int
    median_ms: float | None  # per model call (one batch of clips)
    p90_ms: float | None
    ms_per_clip: float | None
    clips_per_s: float | None
    runs: int
    hardware: str
    versions: str
    error: str = ""
    frames: int | None = None  # frames per clip, the checkpoint's contract (None: not loaded)


@dataclass(frozen=True)
class StageTimes:
    """End-to-end seconds per stage over a folder, run one video at a time."""

    model: str
    backend: str
    device: str
    videos: int
    scored: int
    decode_s: float
    detect_s: float
    crop_s: float
    model_s: float
    pipeline_s: float  # the same videos through the scanner's overlapped pipeline
    hardware: str
    versions: str
    frames: int = 0  # sampled frames decoded and run through face detection
    identity_s: float = 0.0  # identity descriptors of the faces of videos with several tracks
    clips: int = 0  # face clips through the model (every person scored, as the scan does)
    descriptors: int = 0  # identity descriptors computed (identity_s is their time)
    # seconds from the pipeline's start to each result, in order (worker start-up included)
    result_s: tuple[float, ...] = ()
    workers: int = 0  # the pipeline's decode + face workers
    error: str = ""  # why the measurement failed (its times are then 0)

    @classmethod
    def failed(cls, model: str, device: str, videos: int, error: BaseException) -> StageTimes:
        """The row of a measurement that failed: no times, the error."""
        return cls(
            model=model,
            backend="?",
            device=device,
            videos=videos,
            scored=0,
            decode_s=0.0,
            detect_s=0.0,
            crop_s=0.0,
            model_s=0.0,
            pipeline_s=0.0,
            hardware=hardware(device),
            versions=versions(),
            error=f"{type(error).__name__}: {error}",
        )

    @property
    def decode_fps(self) -> float:
        """Sampled frames decoded per second of decoding (seeking and skipping included)."""
        return self.frames / self.decode_s if self.decode_s > 0 else float("nan")

    @property
    def detect_fps(self) -> float:
        """Frames through face detection per second."""
        return self.frames / self.detect_s if self.detect_s > 0 else float("nan")

    @property
    def videos_per_s(self) -> float:
        return self.videos / self.pipeline_s if self.pipeline_s > 0 else float("nan")

    @property
    def first_result_s(self) -> float:
        return self.result_s[0] if self.result_s else float("nan")

    @property
    def after_first_videos_per_s(self) -> float:
        """The pipeline's rate from its first result to its last: without the start-up of its
        workers (seconds with a GPU, where each one starts afresh), which a long scan pays
        once. Counted over every later result, as results come in bursts: they wait in
        order behind the first unfinished video while the workers take the largest first."""
        t = self.result_s
        if len(t) < 3 or t[-1] <= t[0]:
            return float("nan")
        return (len(t) - 1) / (t[-1] - t[0])

    @property
    def bottleneck(self) -> str:
        if self.error:
            return ""
        stages = {
            "decode": self.decode_s,
            "detect": self.detect_s,
            "crop": self.crop_s,
            "identity": self.identity_s,
            "model": self.model_s,
        }
        return max(stages, key=stages.get)


@dataclass
class BenchReport:
    sizes: list[SizeRow] = field(default_factory=list)
    latency: list[LatencyRow] = field(default_factory=list)
    end_to_end: list[StageTimes] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "hardware": hardware(),
            "versions": versions(),
            "paper_table7": [
                {"method": m, "size_mb": s, "forward_ms": t} for m, s, t in PAPER_TABLE7
            ],
            "sizes": [asdict(r) for r in self.sizes],
            "latency": [asdict(r) for r in self.latency],
            "end_to_end": [
                asdict(r)
                | {
                    "videos_per_s": r.videos_per_s,
                    "first_result_s": r.first_result_s,
                    "after_first_videos_per_s": r.after_first_videos_per_s,
                    "decode_fps": r.decode_fps,
                    "detect_fps": r.detect_fps,
                    "bottleneck": r.bottleneck,
                }
                for r in self.end_to_end
            ],
        }


def file_size_row(model: str, artifact: str, path: Path, params: int | None) -> SizeRow:
    try:
        return SizeRow(model, artifact, params, path.stat().st_size / 1e6, str(path))
    except OSError as e:
        return SizeRow(model, artifact, params, None, str(path), error=str(e))


def measure_latency(
    model: str,
    backend_factory: Callable[[], Backend],
    batches: Sequence[int],
    runs: int = 10,
    warmup: int = 2,
    seed: int = 0,
) -> list[LatencyRow]:
    """Latency of one backend at several batch sizes; failures become rows with the error."""
    hw, ver = hardware(), versions()
    try:
        backend = backend_factory()
    except Exception as e:  # noqa: BLE001 - a backend that cannot load is a result row
        log.warning("%s: backend failed to load: %s", model, e)
        return [
            LatencyRow(
                model,
                "?",
                "?",
                b,
                None,
                None,
                None,
                None,
                0,
                hw,
                ver,
                error=f"{type(e).__name__}: {e}",
            )
            for b in batches
        ]
    hw = hardware(backend.device)  # the GPU that runs it, none for the CPU
    c = backend.contract
    rng = np.random.default_rng(seed)
    cuda = backend.device.startswith("cuda")
    rows = []
    for b in batches:
        clips = rng.integers(0, 256, (b, c.num_frames, c.crop_size, c.crop_size, 3), np.uint8)
        try:
            for _ in range(warmup):
                backend(clips)
            times = []
            for _ in range(runs):
                if cuda:
                    start, end = torch.cuda.Event(True), torch.cuda.Event(True)
                    start.record()
                    backend(clips)
                    end.record()
                    torch.cuda.synchronize()
                    times.append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter()
                    backend(clips)
                    times.append((time.perf_counter() - t0) * 1e3)
        except Exception as e:  # noqa: BLE001
            log.warning("%s/%s batch %d failed: %s", model, backend.name, b, e)
            rows.append(
                LatencyRow(
                    model,
                    backend.name,
                    backend.device,
                    b,
                    None,
                    None,
                    None,
                    None,
                    0,
                    hw,
                    ver,
                    error=f"{type(e).__name__}: {e}",
                    frames=c.num_frames,
                )
            )
            continue
        med, p90 = float(np.median(times)), float(np.percentile(times, 90))
        rows.append(
            LatencyRow(
                model,
                backend.name,
                backend.device,
                b,
                med,
                p90,
                med / b,
                1e3 * b / med,
                runs,
                hw,
                ver,
                frames=c.num_frames,
            )
        )
        log.info(
            "%s %s %s batch %d: median %.1f ms (%.1f clips/s)",
            model,
            backend.name,
            backend.device,
            b,
            med,
            1e3 * b / med,
        )
    return rows


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's operator thread count set to ``n`` for the block, then set back."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_end_to_end(
    model: str,
    backend: Backend,
    videos: Sequence[Path],
    workers: int | None = None,
    seed: int = 0,
) -> StageTimes:
    """Time decode, face detection, identity descriptors, cropping and the model per video,
    one video at a time and with the scan's own settings (its detector device, sampling,
    every person up to ``max_people`` scored, descriptors where a video holds several face
    tracks), then the same videos through the scanner's overlapped pipeline with ``workers``
    workers (default: the scan's).

    The faces of each video are found with torch's thread count of the scan's workers (one
    in a worker process): on a busy 2-core CPU, two threads made MTCNN's element-wise work,
    and so the detection stage, nearly twice as slow as in the scan (25 s against 14 s on
    the 29 shared clips). The model runs with this process's count, as in the scan.
    """
    from scanner.scan import WORKER_TORCH_THREADS, Preparer, Scanner, ScanOptions

    options = ScanOptions(seed=seed, **({"workers": workers} if workers else {}))
    scanner = Scanner(backend, options)
    s = scanner.prepare_settings
    stage = Preparer(s)  # the scan's detector and embedder, built here
    threads = WORKER_TORCH_THREADS if scanner.uses_processes else torch.get_num_threads()
    clock = StageClock()
    model_s = 0.0
    scored = clips = 0
    for path in videos:
        try:
            with torch_threads(threads):
                clip = read_face_clip(
                    path,
                    stage.detector,
                    s.contract.num_frames,
                    s.sampling,
                    s.seed,
                    clock,
                    max_people=s.max_people,
                    embedder=stage.embedder,
                )
        except (ClipError, OSError):  # the scan's rows with a status and no score
            continue
        t0 = time.perf_counter()
        backend(np.stack([person.crops for person in clip.people]))
        model_s += time.perf_counter() - t0
        scored += 1
        clips += len(clip.people)
    t0 = time.perf_counter()
    results: list[float] = []
    scanner.run(list(videos), lambda r: results.append(time.perf_counter() - t0))
    pipeline = time.perf_counter() - t0
    return StageTimes(
        model=model,
        backend=backend.name,
        device=backend.device,
        videos=len(videos),
        scored=scored,
        decode_s=clock.decode,
        detect_s=clock.detect,
        crop_s=clock.crop,
        model_s=model_s,
        pipeline_s=pipeline,
        hardware=hardware(backend.device),
        versions=versions(),
        frames=clock.frames,
        identity_s=clock.identity,
        clips=clips,
        descriptors=clock.descriptors,
        result_s=tuple(results),
        workers=options.workers,
    )


def forward_title(rows: Sequence[LatencyRow]) -> str:
    """The latency table's title, with the clip length of the measured checkpoints."""
    frames = sorted({r.frames for r in rows if r.frames})
    if len(frames) == 1:
        return f"Forward pass per {frames[0]}-frame clip"
    if frames:
        return f"Forward pass per clip ({'/'.join(map(str, frames))} frames by model)"
    return "Forward pass per clip"


def format_report(report: BenchReport) -> str:
    """Measured rows beside the paper's Table 7."""
    lines = [
        f"hardware: {hardware()}",
        f"versions: {versions()}",
        "",
        "Model size                                   params      MB",
        "  Su et al. 2021, Table 7 (reported):",
    ]
    for m, size, _ in PAPER_TABLE7:
        lines.append(f"    {m:<40} {'':>8} {size:>7.1f}")
    lines.append("  measured here:")
    for r in report.sizes:
        params = f"{r.params / 1e6:.2f}M" if r.params else "-"
        size = f"{r.size_mb:.1f}" if r.size_mb is not None else f"error: {r.error}"
        lines.append(f"    {r.model + ' ' + r.artifact:<40} {params:>8} {size:>7}")
    lines += [
        "",
        f"{forward_title(report.latency):<50}batch  median ms  p90 ms  ms/clip  clips/s",
        "  Su et al. 2021, Table 7 (reported, 2x GTX 1080 Ti):",
    ]
    for m, _, ms in PAPER_TABLE7:
        lines.append(f"    {m:<46} {'':>5} {ms:>9.1f}")
    lines.append("  measured here:")
    for r in report.latency:
        name = f"{r.model} {r.backend} {r.device}"
        if r.error:
            lines.append(f"    {name:<46} {r.batch:>5}  error: {r.error}")
        else:
            lines.append(
                f"    {name:<46} {r.batch:>5} {r.median_ms:>9.1f} {r.p90_ms:>7.1f} "
                f"{r.ms_per_clip:>8.1f} {r.clips_per_s:>8.2f}"
            )
    if report.end_to_end:
        lines += [
            "",
            "End to end (one video at a time, seconds per stage; videos/s through "
            "the overlapped scan pipeline)",
        ]
        for e in report.end_to_end:
            if e.error:
                lines.append(
                    f"  {e.model} {e.backend} {e.device}: {e.videos} videos, error: {e.error}"
                )
                continue
            lines.append(
                f"  {e.model} {e.backend} {e.device}: {e.videos} videos ({e.scored} scored, "
                f"{e.clips} face clips), decode {e.decode_s:.2f} s ({e.decode_fps:.1f} frames/s), "
                f"detect {e.detect_s:.2f} s ({e.detect_fps:.1f} frames/s), "
                f"identity {e.identity_s:.2f} s ({e.descriptors} descriptors), "
                f"crop {e.crop_s:.2f} s, "
                f"model {e.model_s:.2f} s; pipeline with {e.workers} workers "
                f"{e.videos_per_s:.2f} videos/s "
                f"(first result after {e.first_result_s:.2f} s, then "
                f"{e.after_first_videos_per_s:.2f} videos/s); bottleneck: {e.bottleneck}"
            )
    return "\n".join(lines)


def write_report(report: BenchReport, out: Path) -> list[Path]:
    """``OUT.json``, ``OUT.csv`` (latency rows) and ``OUT.png`` (a plot) for ``out`` = OUT
    or OUT.json (.csv, .png): the suffixes are appended to the name, so ``runs/bench.v2``
    writes ``runs/bench.v2.json``."""
    out = out.with_suffix("") if out.suffix in (".json", ".csv", ".png") else out
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [out.with_name(out.name + suffix) for suffix in (".json", ".csv", ".png")]
    written[0].write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    import csv

    with open(written[1], "w", newline="", encoding="utf-8") as f:
        fieldnames = list(LatencyRow.__dataclass_fields__)
        w = csv.DictWriter(f, fieldnames=fieldnames)
        w.writeheader()
        for r in report.latency:
            w.writerow(asdict(r))
    plot_latency(report.latency, written[2])
    return written


def plot_latency(rows: Sequence[LatencyRow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    series: dict[str, list[LatencyRow]] = {}
    for r in rows:
        if not r.error:
            series.setdefault(f"{r.model} {r.backend} {r.device}", []).append(r)
    for name, rs in series.items():
        rs = sorted(rs, key=lambda r: r.batch)
        ax1.plot([r.batch for r in rs], [r.median_ms for r in rs], marker="o", label=name)
        ax2.plot([r.batch for r in rs], [r.clips_per_s for r in rs], marker="o", label=name)
    ax1.set(
        xlabel="batch (clips)",
        ylabel="median latency per call (ms)",
        xscale="log",
        yscale="log",
        title="Latency",
    )
    ax2.set(xlabel="batch (clips)", ylabel="clips / s", xscale="log", title="Throughput")
    batches = sorted({r.batch for rs in series.values() for r in rs})
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        if batches:
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.minorticks_off()
    if series:
        ax2.legend(fontsize=7)
    fig.suptitle(hardware(), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
