"""Make the two sample clips that ship with dfscan: a real clip and a self-blended fake of it.

    python -m training.make_samples --video ../shared/data/videos/real/retalking_5.mp4

The fake is made by the training package's own self-blending, applied to every frame's face
crop and pasted back into the frame inside the blend mask only, so pixels outside the mask
are the original's. Both clips are re-encoded the same way (MPEG-4 Part 2 via OpenCV) so the
fake differs from the real one only by the blend. The source clip must not be in the default
model's training split (retalking_5 is a held-out test identity of its recipe).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from scanner.contract import Preprocessing
from scanner.faces import FaceDetector, extract_track, square_inside, square_region
from scanner.models import samples_dir
from scanner.video import Frames, VideoInfo
from training.landmarks import Landmarks68
from training.selfblend import self_blend


def read_video(path: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """The frames of ``path`` in order (the first ``limit`` when given) as (H, W, 3) uint8 RGB,
    decoded one at a time (OpenCV); the file is closed when they run out or the iterator is
    dropped. The counterpart of ``write_video``."""
    cap = cv2.VideoCapture(str(path))
    try:
        n = 0
        while limit is None or n < limit:
            ok, bgr = cap.read()
            if not ok:
                return
            n += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def video_fps(path: Path, default: float = 25.0) -> float:
    """The frame rate ``path`` declares (OpenCV), ``default`` where it declares none."""
    cap = cv2.VideoCapture(str(path))
    try:
        return cap.get(cv2.CAP_PROP_FPS) or default
    finally:
        cap.release()


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """(H, W, 3) uint8 RGB frames, one at a time -> an MPEG-4 Part 2 file (OpenCV) of the
    first frame's size; the number written (no file when 0)."""
    writer, n = None, 0
    try:
        for f in frames:
            if writer is None:
                h, w = f.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise RuntimeError(f"cannot write {path}")
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            n += 1
    finally:
        if writer is not None:
            writer.release()
    return n


def paste_back(
    frame: np.ndarray, crop: np.ndarray, mask: np.ndarray, box: np.ndarray, margin: float
) -> np.ndarray:
    """Inverse of ``crop_square``: blend ``crop`` back into ``frame`` where mask > 0."""
    h, w = frame.shape[:2]
    x0, y0, s = square_region(box, margin)
    big = cv2.resize(crop, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    m = cv2.resize(mask, (s, s), interpolation=cv2.INTER_LINEAR)[..., None]
    out = frame.copy()
    sx0, sy0, sx1, sy1 = square_inside(x0, y0, s, w, h)
    region = out[sy0:sy1, sx0:sx1].astype(np.float32)
    b = big[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    mm = m[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    out[sy0:sy1, sx0:sx1] = np.clip(mm * b + (1 - mm) * region + 0.5, 0, 255).astype(np.uint8)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.make_samples", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--dest", type=Path, default=samples_dir())
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    fps = video_fps(args.video)
    images = list(read_video(args.video, round(args.seconds * fps)))
    n = len(images)
    info = VideoInfo(images[0].shape[1], images[0].shape[0], fps, n, n / fps)
    frames = Frames(info, tuple(range(n)), np.stack(images))
    contract = Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3)  # crop geometry only
    track = extract_track(frames, FaceDetector(contract))
    dense = Landmarks68(contract.margin).clip(track.crops)
    _, fake_crops, masks = self_blend(
        track.crops, track.landmarks, np.random.default_rng(args.seed), dense=dense
    )
    fake = np.stack(
        [
            paste_back(f, c, m, b, contract.margin)
            for f, c, m, b in zip(frames.images, fake_crops, masks, track.boxes)
        ]
    )
    args.dest.mkdir(parents=True, exist_ok=True)
    stem = args.video.stem
    write_video(args.dest / f"real_{stem}.mp4", frames.images, fps)
    write_video(args.dest / f"selfblend_{stem}.mp4", fake, fps)
    print(f"wrote {n} frames to {args.dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
