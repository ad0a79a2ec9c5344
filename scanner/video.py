"""Decode stage: probe a file, sample frame indices, decode only the sampled frames.

OpenCV's FFmpeg backend decodes. Between sampled frames that are close, frames are grabbed
(decoded, no colour conversion); across long gaps the reader seeks. Only sampled frames are
converted to RGB. OpenCV applies the container's rotation flag, so phone videos come out
upright.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import stat
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # keep FFmpeg's own chatter off stderr
import cv2  # noqa: E402

from scanner.container import (  # noqa: E402
    HEAD_BYTES,
    avi_index,
    codec_name,
    image_format,
    is_avi,
    is_iso_media,
    tracks,
    video_signature,
)
from scanner.contract import SAMPLING_METHODS  # noqa: E402
from scanner.errors import ClipError  # noqa: E402

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .wmv .flv .mpg .mpeg .ts .mts .m2ts .3gp .ogv .vob".split()
)


class VideoError(ClipError):
    """A file that cannot be decoded into the sampled frames."""

    status = "error"


class NotAVideoError(VideoError):
    status = "not_video"


class DecodeError(VideoError):
    status = "decode_error"


class TooShortError(VideoError):
    status = "too_short"


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed, after rotation
    height: int
    fps: float  # the container's declared rate; 0.0 where it declares none
    frame_count: int  # frames the clip could be sampled from: those known to decode
    duration_s: float  # the container's length: declared frames / fps
    declared_frames: int | None = None  # what the container declares; None: frame_count

    @property
    def note(self) -> str:
        """For the row's message: fewer frames decode than the container declares."""
        if self.declared_frames is None or self.frame_count >= self.declared_frames:
            return ""
        return (
            f"only {self.frame_count} of {self.declared_frames} declared frames decode "
            "(truncated or damaged?); the clip was sampled from those"
        )


@dataclass(frozen=True)
class Frames:
    info: VideoInfo
    indices: tuple[int, ...]  # sampled frame indices, increasing
    images: np.ndarray  # (T, H, W, 3) uint8 RGB


def show_opencv_log(show: bool) -> None:
    """Let OpenCV's own log lines (``[ WARN:0@0.6] global cap.cpp:212 open VIDEOIO(FFMPEG):
    ...``, written straight to stderr for every file it cannot open) through, or silence them:
    each video's row already says what went wrong."""
    levels = cv2.utils.logging
    levels.setLogLevel(levels.LOG_LEVEL_WARNING if show else levels.LOG_LEVEL_SILENT)


def has_video_signature(path: Path) -> bool:
    """Whether the file starts like a container FFmpeg reads (mp4/mov, mkv/webm, avi, ...)."""
    try:
        with open(path, "rb") as f:
            return video_signature(f.read(HEAD_BYTES))
    except OSError:
        return False


SUBSEQUENCES = 3  # runs of consecutive frames in "subsequence" sampling


def sample_indices(
    frame_count: int,
    num_frames: int,
    method: str,
    rng: np.random.Generator,
    change: np.ndarray | None = None,
) -> np.ndarray:
    """Pick ``num_frames`` distinct frame indices in [0, frame_count), increasing.

    The frame sampling methods of the paper's Table 4:

    - random: a uniformly random subset (the paper's best);
    - uniform: equally spaced, first and last frame included;
    - keyframe: the frames where the picture changes most (``keyframe_indices`` on
      ``change``, the per-frame change signal that ``read_frames`` measures);
    - subsequence: SUBSEQUENCES runs of consecutive frames, one starting at random in each
      equal part of the video (5 + 5 + 5 for 15 frames);
    - sequential: one run of consecutive frames starting at random.
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"sampling must be one of {SAMPLING_METHODS}, got {method!r}")
    if frame_count < num_frames:
        raise TooShortError(f"{frame_count} frames, {num_frames} needed")
    if method == "uniform":
        return np.linspace(0, frame_count - 1, num_frames).round().astype(np.int64)
    if method == "keyframe":
        if change is None or len(change) != frame_count:
            raise ValueError("keyframe sampling needs the change signal of every frame")
        return keyframe_indices(change, num_frames)
    if method == "subsequence":
        runs = np.array_split(np.arange(num_frames), min(SUBSEQUENCES, num_frames))
        bounds = np.linspace(0, frame_count, len(runs) + 1).round().astype(np.int64)
        if all(b - a >= len(r) for r, a, b in zip(runs, bounds, bounds[1:])):
            starts = [rng.integers(a, b - len(r) + 1) for r, a, b in zip(runs, bounds, bounds[1:])]
            return np.concatenate([s + np.arange(len(r)) for s, r in zip(starts, runs)])
        method = "sequential"  # parts shorter than their runs: one run instead
    if method == "sequential":
        start = rng.integers(0, frame_count - num_frames + 1)
        return np.arange(start, start + num_frames, dtype=np.int64)
    return np.sort(rng.choice(frame_count, size=num_frames, replace=False)).astype(np.int64)


def keyframe_indices(change: np.ndarray, num_frames: int) -> np.ndarray:
    """The ``num_frames`` frames with the largest ``change`` (F,), increasing.

    Greedy, largest first, each pick suppressing its neighbours within F / (2 num_frames)
    frames so that one burst of motion does not take every pick; a video too static to
    offer enough separated peaks is filled up with the largest remaining changes.
    """
    order = np.argsort(-np.asarray(change, np.float64), kind="stable")
    radius = max(1, len(change) // (2 * num_frames))
    free = np.ones(len(change), bool)
    chosen: list[int] = []
    for i in order.tolist():
        if len(chosen) == num_frames:
            break
        if free[i]:
            chosen.append(i)
            free[max(0, i - radius + 1) : i + radius] = False
    taken = set(chosen)
    rest = [i for i in order.tolist() if i not in taken]
    chosen += rest[: num_frames - len(chosen)]
    return np.sort(np.array(chosen, np.int64))


def frame_change(cap: cv2.VideoCapture, first: int, last: int, seek: bool = True) -> np.ndarray:
    """Decode frames first..last (as many as decode) and measure how much each differs from
    the one before: mean absolute difference of 64x36 grey thumbnails; the first frame counts
    as the largest change. ``seek``: seek to ``first`` (where ``seek_points`` says it lands
    there) instead of decoding the frames before it."""
    if seek and first > 0 and not cap.set(cv2.CAP_PROP_POS_FRAMES, first):
        raise DecodeError(f"cannot seek to frame {first}")
    if not seek:
        for _ in range(first):
            if not cap.grab():
                return np.zeros(0)
    change: list[float] = []
    prev = None
    for _ in range(first, last + 1):
        ok, bgr = cap.read()
        if not ok or bgr is None:
            break
        grey = cv2.resize(
            cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (64, 36), interpolation=cv2.INTER_AREA
        )
        grey = grey.astype(np.float32)
        change.append(np.inf if prev is None else float(np.abs(grey - prev).mean()))
        prev = grey
    return np.array(change)


def _head(path: Path) -> bytes:
    """The first bytes of a regular, non-empty file; raises OSError (PermissionError for a
    file the process may not read) or NotAVideoError."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise NotAVideoError(f"not a regular file ({kind})")
    if st.st_size == 0:
        raise NotAVideoError("empty file")
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


# frame_area reads headers up to this size: a larger one belongs to a long video, whose size
# then counts as unknown (the scan's workers take unknown sizes first)
AREA_HEADER_BYTES = 4 << 20


def frame_area(path: Path) -> int | None:
    """Pixels per frame of the largest video track, as the container's header declares it
    (mp4/mov, Matroska/WebM), read without decoding; None where the header does not say
    (another container, a header over AREA_HEADER_BYTES, a file that cannot be read)."""
    try:
        found = tracks(path, _head(path), AREA_HEADER_BYTES)
    except (OSError, NotAVideoError):
        return None
    areas = [t.width * t.height for t in found or () if t.kind == "video" and t.width and t.height]
    return max(areas, default=None)


# Threads of each FFmpeg decoder this process opens; None: OpenCV's default (one per core).
_decoder_threads: int | None = None


def set_decoder_threads(threads: int | None) -> None:
    """How many threads each video decoder opened from now on in this process uses (None:
    OpenCV's default, one per core). A scan's worker processes decode one video each, as many
    at once as there are workers, and share the cores out (``scanner.scan.decoder_threads``):
    two processes on two cores decoding with one thread each read 12-15 % more frames a second
    of the 29 shared clips, and 20-28 % more of 1080p clips, than with OpenCV's two each,
    which only contend for the same cores."""
    global _decoder_threads
    _decoder_threads = threads


def _capture(path: Path) -> cv2.VideoCapture:
    """OpenCV's FFmpeg capture of the file at ``path``, by its absolute path: FFmpeg takes a
    name that starts like ``word:`` for a protocol (``pipe:0.mp4`` reads stdin,
    ``2023-01-01T10:00:00.mp4`` fails to open). A name that is not UTF-8 (Linux keeps any
    bytes; OpenCV crashes on them) is opened through a link with a name of its own. Its
    decoder runs ``set_decoder_threads``'s thread count."""
    params = [] if _decoder_threads is None else [cv2.CAP_PROP_N_THREADS, _decoder_threads]
    name = os.path.abspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        with tempfile.TemporaryDirectory(prefix="dfscan-") as tmp:
            suffix = Path(name).suffix  # for FFmpeg's format guess, where it is plain
            link = os.path.join(tmp, "video" + (suffix if suffix.isascii() else ""))
            os.symlink(os.fsencode(name), link)
            return cv2.VideoCapture(link, cv2.CAP_FFMPEG, params)  # open before the link goes
    return cv2.VideoCapture(name, cv2.CAP_FFMPEG, params)


def _open(path: Path, head: bytes) -> cv2.VideoCapture:
    cap = _capture(path)
    if cap.isOpened():
        return cap
    cap.release()
    image = image_format(head)
    if image is not None:
        raise NotAVideoError(f"a {image} image, not a video")
    if not video_signature(head):
        raise NotAVideoError("not a video file FFmpeg can read")
    found = tracks(path, head)
    if found is None:
        raise DecodeError("container recognised but cannot be opened (truncated or corrupt?)")
    videos = [t for t in found if t.kind == "video"]
    if not videos:
        held = ", ".join(map(str, found)) or "no tracks at all"
        raise NotAVideoError(f"no video stream: the file holds {held}")
    raise DecodeError(
        f"the video stream (codec {codec_name(videos[0].codec)}) cannot be opened: "
        "a codec this FFmpeg cannot decode, or damaged"
    )


def _codec(cap: cv2.VideoCapture, path: Path, head: bytes) -> str:
    """The video codec, as the container names it (else as FFmpeg reports it)."""
    videos = [t for t in tracks(path, head) or () if t.kind == "video"]
    if videos and videos[0].codec:
        return codec_name(videos[0].codec)
    tag = int(cap.get(cv2.CAP_PROP_FOURCC) or 0) & 0xFFFFFFFF
    return codec_name(tag.to_bytes(4, "little").decode("latin-1")) if tag else "unknown"


def _count_frames(cap: cv2.VideoCapture) -> int:
    n = 0
    while cap.grab():
        n += 1
    return n


def count_is_estimated(head: bytes) -> bool:
    """Whether OpenCV's frame count of a file starting with ``head`` is an estimate, its
    duration times a nominal rate (Matroska, WebM, MPEG-TS, FLV: no frame index), rather than
    read from the container's index (an mp4/mov sample table, an AVI index)."""
    return not (is_iso_media(head) or is_avi(head))


def _faster_than_declared(cap: cv2.VideoCapture, reached: int, fps: float) -> bool:
    """Whether the ``reached`` frames decoded so far came faster than the declared ``fps``:
    the last one's time lies more than a frame before its number at that rate (the first 20
    of frames 10 ms apart at a declared 25/s end at 190 ms, not 760). Unknown: True."""
    if fps <= 0 or reached < 2:
        return True
    at = cap.get(cv2.CAP_PROP_POS_MSEC)
    return at < (reached - 2) * 1000.0 / fps


def _count_on(cap: cv2.VideoCapture, pos: int, declared: int) -> int:
    """From position ``pos``, how many frames the video holds if more than ``declared``
    decode; otherwise ``declared`` (no more is decoded than one frame past it)."""
    while pos < declared:
        if not cap.grab():
            return declared
        pos += 1
    return pos + _count_frames(cap)


# Beyond this many frames ahead, seeking (to the keyframe before, then decoding forward) is
# cheaper than decoding every frame in between. OpenCV's FFmpeg seek is frame-exact on a
# constant frame rate (checked pixel for pixel against sequential decoding on the shared
# clips, H.264, and in the tests); it finds a frame by its time, so on a variable frame rate
# it lands on another frame than the one asked for, and only such videos are seeked.
SEEK_GAP = 64


@dataclass(frozen=True)
class SeekPoints:
    """A video in which a seek to a frame number lands on that frame, and the keyframes such a
    seek decodes from (None: every frame is one)."""

    keyframes: np.ndarray | None = None  # increasing frame numbers
    # frames the keyframe list covers (an AVI over 1 GB indexes only its first part): past
    # them every frame counts as a keyframe, as if not known
    covered: int | None = None

    def before(self, frame: int) -> int:
        """The last keyframe at or before ``frame`` (-1 if none)."""
        if self.keyframes is None or (self.covered is not None and frame >= self.covered):
            return frame
        at = int(np.searchsorted(self.keyframes, frame, side="right")) - 1
        return int(self.keyframes[at]) if at >= 0 else -1

    def worth_seeking(self, pos: int, target: int) -> bool:
        """Whether seeking from position ``pos`` to frame ``target`` skips more than SEEK_GAP
        frames of decoding: the seek decodes from the keyframe before the target, so in a
        video with few keyframes (one, in some screen recordings) it would decode again what
        decoding on from ``pos`` reaches anyway."""
        return self.before(target) - pos > SEEK_GAP


def seek_points(path: Path, head: bytes) -> SeekPoints | None:
    """Where seeking to a frame number lands on that frame (``SeekPoints``), else None:

    - an mp4/mov whose video track's sample table gives every frame one duration, its
      keyframes from the sync sample table;
    - an AVI whose index has an entry for every frame that decodes: a writer that dropped
      frames (a gap in the timing) leaves empty entries, which a seek counts as frames and
      decoding does not, so such an AVI is decoded through; its keyframes from the index.

    Not Matroska/WebM and other containers, whose timing is in the frames themselves."""
    if is_avi(head):
        index = avi_index(path)
        if index is None or index.empty:
            return None
        return SeekPoints(index.keyframes, covered=index.frames)
    videos = [t for t in tracks(path, head) or () if t.kind == "video"]
    if not videos or videos[0].constant_rate is not True:
        return None
    return SeekPoints(videos[0].sync_samples())


def _grab_indices(
    cap: cv2.VideoCapture, indices: np.ndarray, seek: SeekPoints | None
) -> tuple[list[np.ndarray], int, bool]:
    """Decode the frames at ``indices`` (increasing), skipping long gaps by seeking where
    ``seek`` (``seek_points``) says it saves decoding, else by decoding through them.

    Returns the RGB frames read, the position reached and whether it seeked; fewer frames
    than indices means decoding stopped at that position (without a seek, the position is
    the number of frames that decode). The frames of the first frame's size are converted
    into the rows of one array, which ``_stacked`` returns without a copy.
    """
    images: list[np.ndarray] = []
    rows: np.ndarray | None = None
    pos = 0
    seeked = False
    for target in indices.tolist():
        if (
            seek is not None
            and seek.worth_seeking(pos, target)
            and cap.set(cv2.CAP_PROP_POS_FRAMES, target)
        ):
            pos = target
            seeked = True
        while pos < target:
            if not cap.grab():
                return images, pos, seeked
            pos += 1
        if not cap.grab():
            return images, pos, seeked
        ok, bgr = cap.retrieve()
        if not ok or bgr is None:
            return images, pos, seeked
        if rows is None:
            rows = np.empty((len(indices), *bgr.shape), np.uint8)
        into = rows[len(images)] if bgr.shape == rows.shape[1:] else None
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=into))
        pos += 1
    return images, pos, seeked


def _stacked(images: list[np.ndarray]) -> np.ndarray:
    """(T, H, W, 3): the array whose rows the frames are (``_grab_indices``), where they are
    all of it in order, else a copy of them stacked (1080p: 90 MB and 45 ms a clip saved)."""
    rows = images[0].base
    if isinstance(rows, np.ndarray) and rows.shape == (len(images), *images[0].shape):
        at, step = rows.ctypes.data, rows.strides[0]
        if all(im.base is rows and im.ctypes.data == at + i * step for i, im in enumerate(images)):
            return rows
    return np.stack(images)


def _one_size(images: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """The sampled frames at one size: a stream whose resolution changes (a video call's
    recording adapting to its bandwidth) has its frames scaled to the size most of them have
    (the first frame's among equals), so that faces are found and cropped alike. A frame of
    another shape (the phone turned) is scaled to fit inside it, centred on black, so that its
    faces keep their proportions."""
    sizes = Counter(im.shape[:2] for im in images)
    if len(sizes) == 1:
        return images
    top = max(sizes.values())
    height, width = next(im.shape[:2] for im in images if sizes[im.shape[:2]] == top)
    log.info(
        "%s: frame size changes (%s); frames scaled to %dx%d",
        path,
        ", ".join(f"{w}x{h}" for h, w in sizes),
        width,
        height,
    )
    return [im if im.shape[:2] == (height, width) else _fit(im, height, width) for im in images]


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` scaled to fit a height x width frame with its proportions kept, centred."""
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    size = (min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale))))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((height, width, image.shape[2]), image.dtype)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    out[top : top + size[1], left : left + size[0]] = small
    return out


def _span(frame_count: int, span: tuple[int, int] | None) -> tuple[int, int]:
    """First and last frame to sample from: the whole video, or span clipped to it."""
    lo, hi = (0, frame_count - 1) if span is None else (span[0], min(span[1], frame_count - 1))
    if lo < 0 or hi < lo:
        raise ValueError(f"empty frame span {span} in a video of {frame_count} frames")
    return lo, hi


def _sample_span(
    lo: int, hi: int, num_frames: int, method: str, seed: int, change: np.ndarray | None = None
) -> np.ndarray:
    """``sample_indices`` over frames lo..hi, seeded."""
    rng = np.random.default_rng(seed)
    return lo + sample_indices(hi - lo + 1, num_frames, method, rng, change)


def read_frames(
    path: Path, num_frames: int, method: str, seed: int, span: tuple[int, int] | None = None
) -> Frames:
    """Sample and decode ``num_frames`` frames of ``path`` (only of frames span[0]..span[1],
    inclusive, when given).

    The same file, method, seed and span always give the same indices. Raises
    NotAVideoError, DecodeError or TooShortError for inputs that cannot give a clip.
    """
    path = Path(path)
    head = _head(path)
    cap = _open(path, head)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (math.isfinite(fps) and fps > 0):  # NaN for some broken files: none declared
            fps = 0.0
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        estimated = count_is_estimated(head)  # a count that decoding may find too low
        if declared < num_frames:
            # Some containers do not say (streamed webm, raw TS, still images); Matroska's
            # count is its duration times a nominal rate, which undercounts a variable frame
            # rate (20 frames 10 ms apart at a nominal 25/s: 6). Too few to sample from is
            # checked by decoding: a short video costs few frames.
            declared = _count_frames(cap)
            estimated = False
            cap.release()
            cap = _open(path, head)
        declared_info = VideoInfo(
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=fps,
            frame_count=declared,
            duration_s=declared / fps if fps > 0 else 0.0,
            declared_frames=declared,
        )
        image = image_format(head)
        if declared <= 1 and image is not None:
            raise NotAVideoError(f"a single {image} image, not a video", declared_info)
        if declared == 0:
            codec = _codec(cap, path, head)
            raise DecodeError(f"no decodable frames (codec {codec})", declared_info)
        if declared < num_frames:
            raise TooShortError(f"{declared} frames, {num_frames} needed", declared_info)
        decodable = declared  # the frames to sample from
        if estimated and span is not None and span[1] >= declared:
            # a span from an earlier pass that decoded past an undercount (below): count again
            decodable = max(declared, _count_frames(cap))
            cap.release()
            cap = _open(path, head)
        lo, hi = _span(decodable, span)
        change = None
        # the container's timing is read only where a seek would save decoding
        points = functools.cache(lambda: seek_points(path, head))
        if method == "keyframe":
            seek_to_lo = lo > SEEK_GAP and (p := points()) is not None and p.worth_seeking(0, lo)
            change = frame_change(cap, lo, hi, seek=seek_to_lo)
            if estimated and span is None and len(change) == hi - lo + 1:
                total = _count_on(cap, hi + 1, declared)  # frames past an undercount?
                if total > declared:
                    log.info("%s: %d frames decode, %d declared", path, total, declared)
                    cap.release()
                    cap = _open(path, head)
                    decodable, hi = total, total - 1
                    change = frame_change(cap, lo, hi, seek=False)
            cap.release()
            cap = _open(path, head)
            if len(change) < min(num_frames, hi - lo + 1):
                raise DecodeError(
                    f"only {len(change)} of frames {lo}..{hi} decode "
                    f"(codec {_codec(cap, path, head)})",
                    declared_info,
                )
            if len(change) < hi - lo + 1:
                decodable = lo + len(change)
            hi = lo + len(change) - 1
        indices = _sample_span(lo, hi, num_frames, method, seed, change)
        gaps = np.diff(indices, prepend=-1) - 1  # frames decoded through before each one
        seek = points() if (gaps > SEEK_GAP).any() else None
        images, reached, seeked = _grab_indices(cap, indices, seek)
        if (
            len(images) == num_frames
            and span is None
            and change is None
            and estimated
            and _faster_than_declared(cap, reached, fps)
        ):
            # A count from the duration times a nominal rate (Matroska's) undercounts frames
            # that come faster than that rate, and frames past it would never be sampled:
            # decoding on to the count (the rest of a run decoded through) tells whether more
            # follow.
            total = _count_on(cap, reached, declared)
            if total > declared:
                log.info("%s: %d frames decode, %d declared; resampling", path, total, declared)
                decodable = total
                indices = _sample_span(0, total - 1, num_frames, method, seed)
                cap.release()
                cap = _open(path, head)
                images, reached, seeked = _grab_indices(cap, indices, seek=None)
        if len(images) < num_frames:
            # The container promised more frames than decode: sample again from what decodes.
            if seeked:  # the position reached past a seek says nothing of the frames before
                cap.release()
                cap = _open(path, head)
                reached = _count_frames(cap)
            if reached < num_frames:
                raise DecodeError(
                    f"only {reached} of {declared} declared frames decode "
                    f"(codec {_codec(cap, path, head)})",
                    declared_info,
                )
            log.info("%s: %d of %d declared frames decode; resampling", path, reached, declared)
            if change is not None:  # decoded once already: cannot run short unless it changed
                raise DecodeError("frames stopped decoding on a second pass", declared_info)
            decodable = reached
            indices = _sample_span(*_span(decodable, span), num_frames, method, seed)
            cap.release()
            cap = _open(path, head)
            images, _, _ = _grab_indices(cap, indices, seek=None)  # decoded through
            if len(images) < num_frames:
                raise DecodeError("frames stopped decoding on a second pass", declared_info)
    finally:
        cap.release()
    images = _one_size(images, path)
    height, width = images[0].shape[:2]
    info = VideoInfo(
        width=width,
        height=height,
        fps=fps,
        frame_count=decodable,
        duration_s=declared_info.duration_s,
        declared_frames=declared,
    )
    return Frames(info=info, indices=tuple(indices.tolist()), images=_stacked(images))
