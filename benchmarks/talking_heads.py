"""Make 10-second 1080p talking-head clips from short ones, for the end-to-end GPU run.

Each source clip (one face filling much of the frame) is scaled to fill 1920x1080 (the
middle cut out), looped back and forth until the clip lasts ``--seconds``, and written as
MPEG-4 at the source's frame rate. ``--copies`` writes each clip that many times under
different names, so that a scan has enough videos to keep a GPU busy without encoding each
one again (dfscan scans every file once, so links would not count).

    python -m benchmarks.talking_heads SRC_DIR OUT_DIR [--seconds 10] [--copies 8]
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np

from scanner.discover import discover_videos

log = logging.getLogger(__name__)

SIZE = (1920, 1080)


def fill(image: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Scale (H, W, 3) to cover ``size`` (width, height) and cut out the middle."""
    w, h = size
    scale = max(w / image.shape[1], h / image.shape[0])
    big = cv2.resize(
        image,
        (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale))),
        interpolation=cv2.INTER_CUBIC,
    )
    y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return big[y0 : y0 + h, x0 : x0 + w]


def make_clip(src: Path, out: Path, seconds: float = 10.0) -> int:
    """Write ``out`` from ``src``: 1080p, looped back and forth to ``seconds``. Returns the
    number of frames written (0 when ``src`` does not decode)."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    if not frames:
        return 0
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    total = round(seconds * fps)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    if not writer.isOpened():
        log.warning("%s: OpenCV cannot write MPEG-4 here, skipped", out)
        return 0
    scaled: dict[int, np.ndarray] = {}
    for i in range(total):
        k = order[i % len(order)]
        if k not in scaled:
            scaled[k] = fill(frames[k])
        writer.write(scaled[k])
    writer.release()
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="folder of talking-head clips")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--copies", type=int, default=1, help="files per clip")
    parser.add_argument(
        "--match",
        default="liveportrait,retalking,sadtalker",
        help="comma-separated parts of the source names to take (talking heads)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parts = [m for m in args.match.split(",") if m]
    args.out.mkdir(parents=True, exist_ok=True)
    made = 0
    for src in discover_videos([args.src]):
        if not any(p in src.name for p in parts):
            continue
        first = args.out / f"{src.stem}_1080p_c0.mp4"
        n = make_clip(src, first, args.seconds)
        if n == 0:
            log.warning("%s: nothing written (no frames, or no writer), skipped", src)
            first.unlink(missing_ok=True)
            continue
        for c in range(1, args.copies):
            shutil.copyfile(first, args.out / f"{src.stem}_1080p_c{c}.mp4")
        made += args.copies
        log.info("%s: %d frames, %d files", src.name, n, args.copies)
    log.info("%d clips in %s", made, args.out)
    return 0 if made else 1


if __name__ == "__main__":
    raise SystemExit(main())
