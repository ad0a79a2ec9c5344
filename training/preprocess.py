"""Extract face tracks once into a cache that training reads.

    python -m training.preprocess --data ROOT --cache DIR [--frames 32] [--workers 2]

Each video becomes one ``.npz`` with ``frames`` face crops taken at equally spaced frame
indices (all frames when the video is shorter) or, for models that sample runs of consecutive
frames (the contract's ``subsequence`` sampling), in three runs of consecutive frames, one in
each third of the video (``cache_sampling``), cropped by the scanner's own code
(``scanner.clip.read_face_clip``), with MTCNN's landmarks kept for augmentation. Training
draws its 15-frame clips from these. Progress is appended to ``index.jsonl`` as each video
finishes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scanner.clip import read_face_clip
from scanner.contract import Preprocessing
from scanner.errors import ClipError
from scanner.faces import FaceDetector
from scanner.video import VideoError
from training.cli import EXPECTED_ERRORS, add_data_arguments, add_output_arguments, report_error
from training.datasets import VideoItem, load_dataset

log = logging.getLogger(__name__)

INDEX = "index.jsonl"
SETTINGS = "preprocess.json"
# Face-crop fields of the contract that must match between a cache and a training run.
CROP_FIELDS = (
    "crop_size",
    "margin",
    "detect_max_side",
    "min_face_prob",
    "min_face_fraction",
    "shot_cut",
)


@dataclass(frozen=True)
class CacheEntry:
    """One video's line in the cache index."""

    path: str  # the video
    label: int
    group: str
    source: str
    split: str | None
    status: str  # ok, or the scanner status that kept the video out
    file: str = ""  # the .npz, relative to the cache folder; empty unless ok
    frames: int = 0  # crops in the file
    message: str = ""


def cache_name(video: Path) -> str:
    return hashlib.sha1(os.path.realpath(video).encode()).hexdigest()[:20] + ".npz"


def read_index(cache: Path) -> list[CacheEntry]:
    index = cache / INDEX
    if not index.exists():
        return []
    entries = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = CacheEntry(**json.loads(line))
            entries[e.path] = e  # a later line for the same video wins
    return list(entries.values())


def read_settings(cache: Path) -> dict:
    path = cache / SETTINGS
    if not path.exists():
        raise FileNotFoundError(f"{cache} is not a preprocess cache (no {SETTINGS})")
    return json.loads(path.read_text(encoding="utf-8"))


def load_track(cache: Path, entry: CacheEntry) -> dict[str, np.ndarray]:
    """The cached arrays: crops (K, S, S, 3) uint8, landmarks (K, 5, 2), detected, indices."""
    with np.load(cache / entry.file, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


_detector: FaceDetector | None = None


def _init_worker(contract: Preprocessing, device: str, threads: int) -> None:
    global _detector
    import torch

    torch.set_num_threads(threads)
    _detector = FaceDetector(contract, device)


def cache_sampling(contract: Preprocessing) -> str:
    """How a cache for ``contract`` picks its frames: in runs of consecutive frames
    (``subsequence``, scanner.video.sample_indices: SUBSEQUENCES runs, one in each part of the
    video) for a model that scans runs of consecutive frames, else equally spaced."""
    return "subsequence" if contract.sampling == "subsequence" else "uniform"


def _extract(item: VideoItem, cache: str, frames: int, seed: int) -> CacheEntry:
    assert _detector is not None
    base = dict(
        path=str(item.path),
        label=item.label,
        group=item.group,
        source=item.source,
        split=item.split,
    )
    c = _detector.contract
    try:
        try:
            clip = read_face_clip(item.path, _detector, frames, cache_sampling(c), seed)
        except VideoError as e:
            # Shorter than the cache depth but long enough for a clip: take every frame.
            n = e.info.frame_count if e.status == "too_short" and e.info else 0
            if not c.num_frames <= n < frames:
                raise
            clip = read_face_clip(item.path, _detector, e.info.frame_count, "uniform", seed)
        track = clip.track
    except ClipError as e:
        return CacheEntry(**base, status=e.status, message=str(e))
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the extraction
        return CacheEntry(**base, status="error", message=f"{type(e).__name__}: {e}")
    name = cache_name(item.path)
    tmp = Path(cache) / (name + ".tmp.npz")
    np.savez(
        tmp,
        crops=track.crops,
        landmarks=track.landmarks.astype(np.float32),
        detected=track.detected,
        indices=np.asarray(track.indices, np.int64),
    )
    tmp.replace(Path(cache) / name)
    return CacheEntry(**base, status="ok", file=name, frames=len(track.indices))


def preprocess(
    items: list[VideoItem],
    cache: Path,
    contract: Preprocessing,
    frames: int = 32,
    workers: int = 2,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> list[CacheEntry]:
    """Extract face tracks of ``items`` into ``cache``; skips videos already in its index."""
    from tqdm import tqdm

    cache.mkdir(parents=True, exist_ok=True)
    sampling = cache_sampling(contract)
    settings = {
        "frames": frames,
        "seed": seed,
        "sampling": sampling,
        "contract": contract.to_dict(),
    }
    settings_path = cache / SETTINGS
    if settings_path.exists():
        old = json.loads(settings_path.read_text(encoding="utf-8"))
        made = {"shot_cut": 1.0, **old["contract"]}  # caches older than shot cuts had none
        mismatched = [k for k in CROP_FIELDS if made[k] != contract.to_dict()[k]]
        if old.get("sampling", "uniform") != sampling:  # older caches: equally spaced
            mismatched.append("sampling")
        elif sampling == "subsequence" and old.get("seed", seed) != seed:
            log.warning(  # a seed sweep may share one cache; it should know it does
                "%s holds runs of frames whose starts seed %s drew, not seed %s: they are "
                "used as they are (a new cache folder draws them again)",
                cache,
                old["seed"],
                seed,
            )
        if mismatched or old["frames"] != frames:
            raise ValueError(
                f"{cache} was made with other settings ({mismatched or 'frames'}); "
                "use a new cache folder"
            )
    else:
        settings_path.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    # A video's own faults (no face, too short, undecodable) stay recorded; an "error" (an
    # exception of the run: out of memory, a killed worker) is tried again.
    known = {e.path: e for e in read_index(cache)}
    done = {path for path, e in known.items() if e.status != "error"}
    todo = [it for it in items if str(it.path) not in done]
    again = sum(str(it.path) in known for it in todo)
    log.info(
        "%d videos, %d already cached, %d to extract%s",
        len(items),
        len(done),
        len(todo),
        f" ({again} of them failed before)" if again else "",
    )
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    with (
        open(cache / INDEX, "a", encoding="utf-8") as index,
        ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a torch process
            initializer=_init_worker,
            initargs=(contract, device, threads),
        ) as pool,
        tqdm(total=len(todo), unit="video", file=sys.stderr, disable=not progress) as bar,
    ):
        futures = [pool.submit(_extract, it, str(cache), frames, seed) for it in todo]
        for f in futures:
            entry = f.result()
            index.write(json.dumps(asdict(entry)) + "\n")
            index.flush()
            if entry.status != "ok":
                log.warning("%s: %s (%s)", entry.path, entry.status, entry.message)
            bar.update(1)
    wanted = {str(it.path) for it in items}
    return [e for e in read_index(cache) if e.path in wanted]


PROG = "python -m training.preprocess"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 done (videos without a usable face are listed in the index, not "
        "errors); 2 the flags, the data or the cache cannot work: one line says why (-v adds "
        "the traceback).",
    )
    add_data_arguments(p)
    p.add_argument(
        "--cache",
        required=True,
        type=Path,
        help="Folder for the face tracks; a cache made with other crop settings or --frames is "
        "refused, one made with the same ones is resumed.",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=32,
        help="Face crops kept per video, equally spaced (training's --cache-frames; default: 32).",
    )
    p.add_argument(
        "--backbone",
        default="efficientnet_b5",
        help="timm backbone the cache is for (sets the contract's mean and std; the crops do "
        "not depend on it; default: efficientnet_b5).",
    )
    p.add_argument(
        "--crop-size",
        type=int,
        default=224,
        help="Side of the face crops in pixels, as training's --crop-size (default: 224).",
    )
    p.add_argument("--workers", type=int, default=2, help="Face-extraction processes (default: 2).")
    p.add_argument(
        "--device", default="cpu", help="Device of the face detector: cpu or cuda (default: cpu)."
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the frame sampling, as training's --seed (default: 0).",
    )
    p.add_argument(
        "--quality",
        default=None,
        help="FaceForensics++ only: one compression level, c0, c23 or c40 (default: all).",
    )
    p.add_argument(
        "--sampling",
        choices=("random", "uniform", "subsequence"),
        default="random",
        help="The sampling of the model the cache is for (training's --sampling): subsequence "
        "caches --frames crops in three runs of consecutive frames, as such a model scans; "
        "any other, equally spaced ones (default: random).",
    )
    add_output_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s", force=True
    )
    try:
        items = load_dataset(args.data, args.layout, quality=args.quality)
        contract = Preprocessing.for_backbone(
            args.backbone, sampling=args.sampling, crop_size=args.crop_size
        )
        entries = preprocess(
            items,
            args.cache,
            contract,
            args.frames,
            args.workers,
            args.device,
            args.seed,
            progress=not args.no_progress,
        )
    except EXPECTED_ERRORS as e:
        return report_error(PROG, e, args.verbose)
    ok = sum(e.status == "ok" for e in entries)
    print(f"{ok} of {len(entries)} videos cached in {args.cache}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
