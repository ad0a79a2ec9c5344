"""Pack a preprocess cache into one small file to take to another machine, and unpack it.

    python -m training.cache_pack pack --cache runs/cache_real64 --out .gpu/cache.pack \
        [--frames 32] [--quality 90]
    python -m training.cache_pack unpack --pack .gpu/cache.pack --cache runs/cache_gpu

A cache holds raw 224 x 224 crops (about 150 kB each); packed, each crop is a JPEG and each
video keeps at most ``--frames`` equally spaced crops, so a hundred videos fit in tens of MB;
their 68-point landmarks (dlib, when installed) travel with them, so the other machine needs
no dlib.
Unpacking writes an ordinary cache (``preprocess.json``, ``index.jsonl``, one ``.npz`` per
video) whose crops are the decoded JPEGs; the paths in the index are kept as they were, so a
run on the other machine finds the cache entries of the same manifest. The JPEG round trip
is a mild recompression, of the kind training's own ``jpeg_prob`` applies anyway.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np

from scanner.files import replacing
from training.datasets import load_dataset
from training.landmarks import Landmarks68, LandmarksUnavailable
from training.preprocess import INDEX, SETTINGS, load_track, read_index, read_settings

FORMAT = "dfscan-cache-pack"


def _encode(crop: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def pack(
    cache: Path, out: Path, frames: int = 32, quality: int = 90, data: Path | None = None
) -> int:
    """Write ``out`` (an .npz of JPEG bytes, offsets and the index); returns its size.

    With ``data`` (a dataset the cache was made from), only its videos are packed, with the
    label, group, identity and split the dataset gives them now.
    """
    settings = read_settings(cache)
    frames = min(frames, settings["frames"])
    if settings.get("sampling") == "subsequence" and frames < settings["frames"]:
        raise ValueError(
            f"{cache} holds runs of consecutive frames (sampling subsequence): thinning its "
            f"{settings['frames']} frames to {frames} would break the runs; pack them all "
            f"(--frames {settings['frames']})"
        )
    try:
        fitter: Landmarks68 | None = Landmarks68(settings["contract"]["margin"])
    except LandmarksUnavailable:
        fitter = None
    entries = read_index(cache)  # failed videos too: the index travels whole
    if data is not None:
        items = {str(it.path): it for it in load_dataset(data)}
        entries = [
            replace(e, label=it.label, group=it.group, source=it.source, split=it.split)
            for e in entries
            if (it := items.get(e.path)) is not None
        ]
    blobs: list[bytes] = []
    arrays: dict[str, np.ndarray] = {}
    index = []
    for k, e in enumerate(entries):
        if e.status != "ok":
            index.append(asdict(e) | {"blobs": [len(blobs), len(blobs)]})
            continue
        track = load_track(cache, e)
        n = len(track["crops"])
        keep = np.unique(np.linspace(0, n - 1, min(n, frames)).round().astype(int))
        start = len(blobs)
        blobs += [_encode(track["crops"][j], quality) for j in keep]
        for key in ("landmarks", "detected", "indices"):
            arrays[f"{k}_{key}"] = track[key][keep]
        if fitter is not None:  # the other machine may lack dlib: take the 68 points along
            arrays[f"{k}_dense"] = fitter.clip(track["crops"][keep])
        index.append(asdict(replace(e, frames=len(keep))) | {"blobs": [start, len(blobs)]})
    sizes = np.array([len(b) for b in blobs], np.int64)
    header = {"format": FORMAT, "settings": settings | {"frames": frames}, "index": index}
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            header=np.frombuffer(json.dumps(header).encode(), np.uint8),
            jpeg=np.frombuffer(b"".join(blobs), np.uint8),
            offsets=np.concatenate([[0], np.cumsum(sizes)]),
            **arrays,
        )
    return out.stat().st_size


def unpack(pack_file: Path, cache: Path) -> int:
    """Rebuild an ordinary cache from a pack; returns the number of videos in its index."""
    with np.load(pack_file, allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes())
        if header.get("format") != FORMAT:
            raise ValueError(f"{pack_file} is not a dfscan cache pack")
        jpeg, offsets = z["jpeg"], z["offsets"]
        cache.mkdir(parents=True, exist_ok=True)
        (cache / SETTINGS).write_text(json.dumps(header["settings"], indent=2), encoding="utf-8")
        lines = []
        for k, item in enumerate(header["index"]):
            a, b = item.pop("blobs")
            lines.append(json.dumps(item))
            if item["status"] != "ok":
                continue
            crops = np.stack(
                [
                    cv2.imdecode(jpeg[offsets[j] : offsets[j + 1]], cv2.IMREAD_COLOR)[..., ::-1]
                    for j in range(a, b)
                ]
            )
            buf = io.BytesIO()
            np.savez(
                buf,
                crops=np.ascontiguousarray(crops),
                **{
                    key: z[f"{k}_{key}"]
                    for key in ("landmarks", "detected", "indices", "dense")
                    if f"{k}_{key}" in z.files
                },
            )
            (cache / item["file"]).write_bytes(buf.getvalue())
    (cache / INDEX).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.cache_pack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="cache folder -> one file of JPEG crops")
    a.add_argument("--cache", type=Path, required=True, help="preprocess cache folder")
    a.add_argument("--out", type=Path, required=True, help="pack file to write")
    a.add_argument("--frames", type=int, default=32, help="crops kept per video at most")
    a.add_argument("--quality", type=int, default=90, help="JPEG quality of the crops")
    a.add_argument("--data", type=Path, help="pack only this dataset's videos, with its labels")
    b = sub.add_parser("unpack", help="pack file -> cache folder")
    b.add_argument("--pack", type=Path, required=True, help="pack file to read")
    b.add_argument("--cache", type=Path, required=True, help="cache folder to write")
    args = p.parse_args(argv)
    if args.command == "pack":
        try:
            size = pack(args.cache, args.out, args.frames, args.quality, args.data)
        except ValueError as e:
            print(f"python -m training.cache_pack: {e}", file=sys.stderr)
            return 2
        print(f"{args.out}: {size / 1e6:.1f} MB", file=sys.stderr)
    else:
        n = unpack(args.pack, args.cache)
        print(f"{args.cache}: {n} videos", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
