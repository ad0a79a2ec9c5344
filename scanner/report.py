"""Report stage: one CSV row per video as it finishes, optional JSON Lines detail (one entry
per person) with the face crops as small JPEG strips beside it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from scanner.files import is_uri

STATUSES = ("ok", "no_face", "too_short", "decode_error", "not_video", "error")

CSV_FIELDS = (
    "path",
    "status",
    "score",
    "label",
    "people",
    "person",
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


THUMB_SIZE = 96  # pixels, the side of a face crop's thumbnail in the crops strip


def _is_rate(fps: float | None) -> bool:
    """A frame rate frame times can be computed from (OpenCV gives NaN for some files)."""
    return fps is not None and math.isfinite(fps) and fps > 0


@dataclass(frozen=True)
class PersonResult:
    """One scored face track of a video: its frames, boxes, score and attention."""

    person: int  # 1-based; people are numbered largest first (1: the dominant face)
    score: float
    label: str
    indices: tuple[int, ...]  # frame indices of the clip's frames
    boxes: tuple[tuple[float, float, float, float], ...]  # face box per frame (frame pixels)
    detected: tuple[bool, ...]  # the face was detected in this frame (else a neighbour's box)
    attention: tuple[float, ...]  # the model's weight of each frame (sums to 1)
    # (T, THUMB_SIZE, THUMB_SIZE, 3) uint8 RGB: the model's face crops, shrunk; None unless
    # the scan was asked for them (ScanOptions.thumbnails).
    thumbnails: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def frames_with_face(self) -> int:
        return sum(self.detected)

    def detail(self, fps: float | None) -> dict:
        """The person's entry of a details line; frame times where ``fps`` is a rate."""
        return {
            "person": self.person,
            "score": self.score,
            "label": self.label,
            "frames_with_face": self.frames_with_face,
            "frame_indices": list(self.indices),
            "times_s": [round(i / fps, 3) for i in self.indices] if _is_rate(fps) else None,
            "face_boxes": [[round(v, 1) for v in b] for b in self.boxes],
            "face_detected": list(self.detected),
            "attention": [round(a, 6) for a in self.attention],
        }


@dataclass(frozen=True)
class VideoResult:
    """The outcome for one video. score and label are set only when status is ok: those of
    the most suspicious person (``person``), every scored person is in ``people``."""

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
    people: tuple[PersonResult, ...] = ()  # the scored faces, person 1 first
    person: int | None = None  # the person whose score and label these are
    faces_left_unscored: int = 0  # further faces seen in enough frames, beyond max_people
    identity: str | None = None  # how face tracks were kept one person each
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if (self.status == "ok") != (self.score is not None and self.label is not None):
            raise ValueError("score and label are set exactly when status is ok")
        if self.people and self.person not in [p.person for p in self.people]:
            raise ValueError(f"person {self.person} is not one of the scored people")
        if self.status == "ok" and self.people:
            chosen = next(p for p in self.people if p.person == self.person)
            if (chosen.score, chosen.label) != (self.score, self.label):
                raise ValueError("a video's score and label are those of its person")

    @property
    def scored(self) -> PersonResult | None:
        """The person whose score is the video's."""
        return next((p for p in self.people if p.person == self.person), None)

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
            # exact (shortest round-trip) score and threshold, so the label never looks at odds
            # with them: 0.85533781 against 0.8553378582 would both read 0.855338
            "score": fmt(self.score, digits=0),
            "label": fmt(self.label),
            "people": fmt(len(self.people)),
            "person": fmt(self.person),
            "threshold": fmt(self.threshold, digits=0),
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
            "person": self.person,
            "threshold": self.threshold,
            "message": self.message,
            "frames_sampled": self.frames_sampled,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "duration_s": self.duration_s,
            "model": self.model,
            "identity": self.identity,
            "faces_left_unscored": self.faces_left_unscored,
            "people": [p.detail(self.fps) for p in self.people],
            **self.extra,
        }


def neutralise(text: str) -> str:
    """Prefix a quote to text a spreadsheet would evaluate as a formula.

    Text that already starts with the quote gets one too, so that ``unneutralise`` can tell
    an added quote from one of the text's own (a video named ``'=1+1.mp4``): the two are
    exact inverses, which --resume needs to find every row's path again.
    """
    return "'" + text if text.startswith((*_FORMULA_START, "'")) else text


def unneutralise(text: str) -> str:
    """The text ``neutralise`` was given. A quote is only ever added before a formula
    character or a quote, so other text (every ordinary name) reads back as it is."""
    if text.startswith("'") and text[1:].startswith((*_FORMULA_START, "'")):
        return text[1:]
    return text


@dataclass(frozen=True)
class ResumePoint:
    """What an earlier run's files hold that a resumed run keeps: the CSV's header and
    complete rows (``csv_end`` bytes), the details file's complete lines (``details_end``
    bytes; None without a details file) and the paths of the kept rows, unneutralised."""

    csv_end: int
    details_end: int | None
    paths: tuple[str, ...]
    statuses: tuple[str, ...] = ()  # of the kept rows


def _record_ends(data: bytes, count: int) -> list[int]:
    """Byte offsets just past the last ``count`` complete CSV records of ``data``, last first.

    A record ends at a newline outside quotes, i.e. one with an even number of quote
    characters before it (CSV doubles quotes inside quoted fields, so that parity is exact).
    """
    ends: list[int] = []
    pos = len(data)
    while len(ends) < count:
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            break
        if data.count(b'"', 0, pos) % 2 == 0:
            ends.append(pos + 1)
    return ends


def resume_point(csv_path: Path, details_path: Path | None = None) -> ResumePoint:
    """Where a run killed mid-write can be continued from.

    Rows and details lines are written one video at a time, the row first. A kill can cut
    the last CSV row (inside its score, inside its path, ...) or the details line after it:
    such a fragment is not kept, and a row whose details line is missing is not kept either,
    so that video is scanned again. Raises ValueError for a CSV that dfscan did not write.
    """
    details_end = None
    details_lines = 0
    if details_path is not None and details_path.exists():
        tail = details_path.read_bytes()
        details_end = tail.rfind(b"\n") + 1
        details_lines = tail.count(b"\n", 0, details_end)
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return ResumePoint(0, details_end, ())
    data = csv_path.read_bytes()
    ends = _record_ends(data, 1)
    header = ",".join(CSV_FIELDS).encode()
    if not ends:  # not even the header is whole: a run killed at its very start
        if not header.startswith(data.rstrip(b"\r")):
            raise ValueError(f"{csv_path} is not a dfscan results file (no 'path' column)")
        return ResumePoint(0, details_end, ())
    csv_end = ends[0]
    text = data[:csv_end].decode("utf-8", "surrogateescape")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or "path" not in rows[0]:
        raise ValueError(f"{csv_path} is not a dfscan results file (no 'path' column)")
    if tuple(rows[0]) != CSV_FIELDS:
        raise ValueError(
            f"{csv_path} has other columns than this dfscan writes (an older version's?): "
            "scan into a new file or pass --overwrite"
        )
    column = rows[0].index("path")
    rows = rows[1:]
    if details_path is not None and rows and details_lines == len(rows) - 1:
        # Killed between the last row and its details line: scan that video again.
        csv_end = _record_ends(data[:csv_end], 2)[1]
        rows = rows[:-1]
    elif details_path is not None and details_lines != len(rows):
        raise ValueError(
            f"{details_path} holds {details_lines} videos and {csv_path} {len(rows)}: not "
            "the details of that run (an earlier run without --details?); resume with the "
            "details file that run wrote, or without --details"
        )
    rows = [r for r in rows if len(r) > column and r[column]]
    status = CSV_FIELDS.index("status")
    paths = tuple(unneutralise(r[column]) for r in rows)
    statuses = tuple(r[status] if len(r) > status else "" for r in rows)
    return ResumePoint(csv_end, details_end, paths, statuses)


def done_paths(csv_path: Path, details_path: Path | None = None) -> set[str]:
    """Real paths of the videos that already have a complete row in ``csv_path`` (and, with
    ``details_path``, a details line) for --resume; see ``resume_point``."""
    return {os.path.realpath(p) for p in resume_point(csv_path, details_path).paths}


def same_file(a: Path, b: Path) -> bool:
    """Whether two spellings name one file: the same real path (links, '..', relative paths
    resolved), or the same file on disk (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet (and its real path differs)
        return False


def output_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as an output file, or None; creates nothing."""
    if path.is_dir():
        return "it is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else "permission denied"
    folder = path.absolute().parent
    while not folder.exists() and not folder.is_symlink():
        folder = folder.parent
    if not folder.exists():
        return f"{folder} is a link to nothing"
    if not folder.is_dir():
        return f"{folder} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create files in {folder}: permission denied"
    return None


def crops_dir(details_path: Path) -> Path:
    """Where the face crops of a details file go: ``NAME.crops`` beside ``NAME.jsonl``."""
    return details_path.with_name(details_path.stem + ".crops")


# The name of a crops strip ResultWriter writes (ASCII digits only, the whole name: fullmatch).
_CROPS_FILE = re.compile(r"[0-9a-f]{16}-p[0-9]+\.jpg")
_CROPS_DIR = re.compile(r"[^/\\]+\.crops")  # a sibling of the details file: NAME.crops


def crops_file(details_path: Path, crops: object) -> Path | None:
    """The crops strip that a details entry's ``crops`` field names, or None when the field
    is not a name ResultWriter writes (``NAME.crops/HASH-pN.jpg``) or the file it names lies
    elsewhere, through a link. A details file can come from anyone, and a report made from
    it is meant to be shared: an absolute path, a ``..`` or a link planted in the crops
    folder must not inline some other local file (``~/.ssh/id_rsa``) into the page."""
    if not isinstance(crops, str):
        return None
    folder, _, name = crops.partition("/")
    # The folder is named after the details file when it was written: a renamed details
    # file keeps reading its crops from a sibling folder, never from further away.
    if not (_CROPS_DIR.fullmatch(folder) and _CROPS_FILE.fullmatch(name)):
        return None
    home = details_path.parent / folder
    path = home / name
    if os.path.dirname(os.path.realpath(path)) != os.path.realpath(home):
        return None  # a link out of the crops folder
    if os.path.dirname(os.path.realpath(home)) != os.path.realpath(details_path.parent):
        return None  # the crops folder itself a link elsewhere
    return path


def crops_strip(thumbnails: np.ndarray, quality: int = 85) -> bytes:
    """A person's thumbnails (T, S, S, 3) RGB as one JPEG, frames left to right."""
    import cv2

    strip = np.concatenate(list(thumbnails), axis=1)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise OSError("cannot encode the face crops as JPEG")
    return data.tobytes()


class ResultWriter:
    """Appends rows to the CSV (and detail to the JSON Lines file) as each video finishes,
    flushing each, so an interrupted run keeps every finished row.

    With a details file, each scored person's face crops (the model's input, shrunk to
    THUMB_SIZE pixels) are written as one JPEG strip into ``crops_dir(details_path)``,
    named after a hash of the video's path, before the details line that names it."""

    def __init__(self, csv_path: Path, details_path: Path | None = None, append: bool = False):
        """append: continue the files of an earlier run, first cutting off what a kill left
        half-written (``resume_point``); else start both files afresh.

        Every file is opened (created if missing, nothing truncated) before any is written,
        and files this call created are removed again if another cannot be opened.
        """
        point = resume_point(csv_path, details_path) if append else None
        targets = [csv_path] if details_path is None else [csv_path, details_path]
        existed = [p.exists() for p in targets]
        files: list[IO[str]] = []
        try:
            for target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                # a file name that is not UTF-8 (Linux allows any bytes) is written as its
                # bytes, and read back alike by resume_point
                files.append(
                    open(target, "a", newline="", encoding="utf-8", errors="surrogateescape")
                )
        except BaseException:
            for f in files:
                f.close()
            for target, was in zip(targets, existed):
                if not was and target.is_file():
                    target.unlink()
            raise
        self._csv: IO[str] = files[0]
        self._details: IO[str] | None = files[1] if details_path is not None else None
        fresh = point is None or point.csv_end == 0
        self._csv.truncate(0 if fresh else point.csv_end)
        if self._details is not None:  # no row kept: no details line either
            self._details.truncate(0 if fresh else point.details_end or 0)
        self._writer = csv.DictWriter(self._csv, fieldnames=CSV_FIELDS)
        if fresh:
            self._writer.writeheader()
            self._csv.flush()
        self._crops = crops_dir(details_path) if details_path is not None else None
        if self._crops is not None and fresh and self._crops.is_dir():
            for old in self._crops.iterdir():  # an earlier run's crops, not this one's
                if _CROPS_FILE.fullmatch(old.name):
                    old.unlink()

    def _write_crops(self, result: VideoResult) -> dict[int, str]:
        """Each person's crops strip; returns person -> path relative to the details file."""
        written = {}
        # the file itself, not the text naming it: a resumed scan run from another folder
        # names other videos by the same relative paths, whose crops must not replace these
        where = result.path if is_uri(result.path) else os.path.realpath(result.path)
        key = hashlib.sha1(where.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        for person in result.people:
            if person.thumbnails is None:
                continue
            self._crops.mkdir(parents=True, exist_ok=True)
            name = f"{key}-p{person.person}.jpg"
            (self._crops / name).write_bytes(crops_strip(person.thumbnails))
            written[person.person] = f"{self._crops.name}/{name}"
        return written

    def write(self, result: VideoResult) -> None:
        self._writer.writerow(result.csv_row())
        self._csv.flush()
        if self._details is not None:
            detail = result.detail()
            crops = self._write_crops(result)
            for entry in detail["people"]:
                entry["crops"] = crops.get(entry["person"])
            self._details.write(json.dumps(detail, ensure_ascii=False) + "\n")
            self._details.flush()

    def close(self) -> None:
        self._csv.close()
        if self._details is not None:
            self._details.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
