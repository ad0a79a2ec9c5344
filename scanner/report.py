"""Report stage: one CSV row per video as it finishes, optional JSON Lines detail."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STATUSES = ("ok", "no_face", "too_short", "decode_error", "not_video", "error")

CSV_FIELDS = (
    "path",
    "status",
    "score",
    "label",
    "threshold",
    "frames_sampled",
    "frames_with_face",
    "width",
    "height",
    "fps",
    "duration_s",
    "model",
    "backend",
    "device",
    "seconds",
    "message",
)

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class VideoResult:
    """The outcome for one video. score and label are set only when status is ok."""

    path: str
    status: str
    threshold: float
    model: str
    backend: str
    device: str
    seconds: float
    score: float | None = None
    label: str | None = None
    frames_sampled: int = 0
    frames_with_face: int = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    message: str = ""
    # Detail for the JSON Lines output.
    indices: tuple[int, ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    detected: tuple[bool, ...] = ()
    attention: tuple[float, ...] = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if (self.status == "ok") != (self.score is not None and self.label is not None):
            raise ValueError("score and label are set exactly when status is ok")

    def csv_row(self) -> dict[str, str]:
        def fmt(v: object, digits: int = 6) -> str:
            if v is None:
                return ""
            if isinstance(v, float):
                return f"{v:.{digits}g}" if digits else str(v)
            return str(v)

        return {
            "path": neutralise(self.path),
            "status": self.status,
            "score": fmt(self.score),
            "label": fmt(self.label),
            "threshold": fmt(self.threshold),
            "frames_sampled": fmt(self.frames_sampled),
            "frames_with_face": fmt(self.frames_with_face),
            "width": fmt(self.width),
            "height": fmt(self.height),
            "fps": fmt(self.fps),
            "duration_s": fmt(self.duration_s),
            "model": neutralise(self.model),
            "backend": self.backend,
            "device": self.device,
            "seconds": f"{self.seconds:.3f}",
            "message": neutralise(self.message),
        }

    def detail(self) -> dict:
        return {
            "path": self.path,
            "status": self.status,
            "score": self.score,
            "label": self.label,
            "threshold": self.threshold,
            "message": self.message,
            "frame_indices": list(self.indices),
            "face_boxes": [[round(v, 1) for v in b] for b in self.boxes],
            "face_detected": list(self.detected),
            "attention": [round(a, 6) for a in self.attention],
            **self.extra,
        }


def neutralise(text: str) -> str:
    """Prefix a quote to text a spreadsheet would evaluate as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def unneutralise(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def done_paths(csv_path: Path) -> set[str]:
    """Real paths of the videos that already have a row in ``csv_path`` (for --resume)."""
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return set()
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ValueError(f"{csv_path} is not a dfscan results file (no 'path' column)")
        return {os.path.realpath(unneutralise(row["path"])) for row in reader if row.get("path")}


class ResultWriter:
    """Appends rows to the CSV (and detail to the JSON Lines file) as each video finishes,
    flushing each, so an interrupted run keeps every finished row."""

    def __init__(self, csv_path: Path, details_path: Path | None = None, append: bool = False):
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not append or not csv_path.exists() or csv_path.stat().st_size == 0
        self._csv: IO[str] = open(csv_path, "w" if fresh else "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._csv, fieldnames=CSV_FIELDS)
        if fresh:
            self._writer.writeheader()
            self._csv.flush()
        self._details: IO[str] | None = None
        if details_path is not None:
            details_path.parent.mkdir(parents=True, exist_ok=True)
            self._details = open(details_path, "a" if append else "w", encoding="utf-8")

    def write(self, result: VideoResult) -> None:
        self._writer.writerow(result.csv_row())
        self._csv.flush()
        if self._details is not None:
            self._details.write(json.dumps(result.detail(), ensure_ascii=False) + "\n")
            self._details.flush()

    def close(self) -> None:
        self._csv.close()
        if self._details is not None:
            self._details.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
