"""`dfscan bench`: every model configuration and backend this machine has, measured.

Two models: the paper configuration (EfficientNet-B5 backbone, random weights: speed and size
do not depend on the values) and the shipped default (or ``--weights``). Each is exported to
ONNX (fp32, fp16) in a scratch folder and, where TensorRT and a GPU exist, to an engine; then
every artifact is loaded through ``scanner.backends.make_backend``, the scanner's own loader.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.bench import (
    BenchReport,
    SizeRow,
    StageTimes,
    file_size_row,
    measure_end_to_end,
    measure_latency,
)
from scanner.artifacts import (
    CHECKPOINT_FILE,
    ENGINE_FILE,
    ONNX_FILE,
    ONNX_FP16_FILE,
    sidecar_path,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    weights: Path | None = None  # None: the shipped default model
    paper: bool = True  # also measure the EfficientNet-B5 paper configuration
    videos: Path | None = None  # end-to-end folder; None: the bundled samples
    batches: tuple[int, ...] = (1, 4)
    runs: int = 5
    warmup: int = 2
    device: str = "auto"
    backends: tuple[str, ...] = ("torch", "onnx", "onnx-fp16", "tensorrt")
    export: bool = True  # export ONNX / engine to measure those backends
    max_batch: int = 16
    workers: int | None = None  # scan workers of the end-to-end run; None: the scan's default


def _paper_checkpoint(folder: Path) -> Path:
    from scanner.checkpoint import CheckpointMeta, Provenance, save_checkpoint
    from scanner.contract import Preprocessing
    from scanner.model import DetectorConfig, build_detector

    torch.manual_seed(0)
    config = DetectorConfig()  # efficientnet_b5, the paper's backbone
    path = folder / "paper_b5.safetensors"
    meta = CheckpointMeta(
        name="paper-b5-random",
        model=config,
        preprocessing=Preprocessing.for_backbone(config.backbone),
        provenance=Provenance(notes="random weights, for size and speed only"),
    )
    save_checkpoint(path, build_detector(config), meta)
    return path


def _params(path: Path) -> int:
    from scanner.checkpoint import load_checkpoint

    return sum(p.numel() for p in load_checkpoint(path).model.parameters())


def bench_model(
    label: str, checkpoint: Path, scratch: Path, cfg: BenchConfig, device: torch.device
) -> tuple[list[SizeRow], list]:
    """Size rows and latency rows of one checkpoint across the requested backends."""
    from scanner.backends import BackendUnavailable, make_backend

    params = _params(checkpoint)
    sizes = [file_size_row(label, "checkpoint", checkpoint, params)]
    out = scratch / label.split()[0]
    artifacts = {
        "onnx": out / ONNX_FILE,
        "onnx-fp16": out / ONNX_FP16_FILE,
        "tensorrt": out / ENGINE_FILE,
    }
    failed: dict[str, str] = {}  # artifact kind -> why it was not exported

    def export(formats: str, kinds: tuple[str, ...], fp16: bool, why: str) -> None:
        """One export into ``out``; a kind it was to write that has no sidecar afterwards
        (the export stopped before it, or its check failed) is marked failed. Artifacts of
        the other format, written by an earlier call, stay (export_all keeps them)."""
        from export.pipeline import export_all

        try:
            export_all(
                checkpoint, out, formats=formats, fp16=fp16, max_batch=cfg.max_batch, device=device
            )
        except Exception as e:  # noqa: BLE001 - a failed export shows as error rows below
            # No engine where TensorRT or a GPU is missing is the common case, not a warning.
            (log.warning if formats == "onnx" else log.info)(
                "%s: %s export failed: %s", label, formats, e
            )
            for kind in kinds:
                if not sidecar_path(artifacts[kind]).is_file():
                    failed[kind] = f"{why}: {e}"

    if cfg.export and any(b != "torch" for b in cfg.backends):
        fp16 = "onnx-fp16" in cfg.backends
        export("onnx", ("onnx", "onnx-fp16") if fp16 else ("onnx",), fp16, "export failed")
        if "tensorrt" in cfg.backends:
            export("engine", ("tensorrt",), device.type == "cuda", "not built")
    for kind, path in artifacts.items():
        if kind not in cfg.backends:
            continue
        if kind in failed:
            sizes.append(SizeRow(label, kind, params, None, str(path), error=failed[kind]))
        else:
            sizes.append(file_size_row(label, kind, path, params))
    latency = []
    for kind in cfg.backends:
        if kind == "torch":

            def factory(kind=kind):  # noqa: ANN202
                return make_backend(checkpoint, "torch", device)
        else:

            def factory(kind=kind):  # noqa: ANN202
                if kind in failed:
                    raise BackendUnavailable(failed[kind])
                backend = "onnx" if kind.startswith("onnx") else kind
                return make_backend(artifacts[kind], backend, device)

        latency += measure_latency(f"{label} [{kind}]", factory, cfg.batches, cfg.runs, cfg.warmup)
    return sizes, latency


def run_bench(cfg: BenchConfig) -> BenchReport:
    """Every measurement of ``cfg``; one that fails is a row with its error. Raises
    CheckpointError where the checkpoint to measure (``cfg.weights``) cannot be read."""
    from scanner.backends import make_backend, resolve_device
    from scanner.discover import discover_videos
    from scanner.models import default_weights, samples_dir

    device = resolve_device(cfg.device)
    weights = cfg.weights or default_weights()
    report = BenchReport()
    with tempfile.TemporaryDirectory(prefix="dfscan-bench-") as tmp:
        scratch = Path(tmp)
        models: list[tuple[str, Path]] = []
        if weights is not None:
            from scanner.checkpoint import read_meta

            models.append((f"default ({read_meta(weights).model.backbone})", weights))
        else:
            log.warning("no default model in this build and no --weights: paper config only")
        if cfg.paper:
            models.append(("paper (efficientnet_b5)", _paper_checkpoint(scratch)))
        for label, path in models:
            sizes, latency = bench_model(label, path, scratch, cfg, device)
            report.sizes += sizes
            report.latency += latency
        videos = discover_videos([cfg.videos or samples_dir()])
        if videos and models:
            label, path = models[0]
            export_dir = scratch / label.split()[0]
            source = export_dir if (export_dir / CHECKPOINT_FILE).exists() else path
            try:
                backend = make_backend(source, "auto", device)
                stages = measure_end_to_end(label, backend, videos, workers=cfg.workers)
            except Exception as e:  # noqa: BLE001 - a failed measurement is a row with its error
                log.warning("%s: end-to-end measurement failed: %s", label, e)
                stages = StageTimes.failed(label, str(device), len(videos), e)
            report.end_to_end.append(stages)
    return report


def parse_batches(text: str) -> tuple[int, ...]:
    values = tuple(int(x) for x in text.split(",") if x.strip())
    if not values or min(values) < 1:
        raise ValueError("batches must be positive integers, e.g. 1,4,16")
    return values


def default_batches(device: torch.device) -> Sequence[int]:
    return (1, 8, 32, 128) if device.type == "cuda" else (1, 4)
