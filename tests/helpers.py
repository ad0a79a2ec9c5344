"""Test helpers: synthetic clips from a public-domain face image, tiny checkpoints.

The face is NASA's portrait of astronaut Eileen Collins (public domain), shipped inside
scikit-image as ``skimage.data.astronaut()``.
"""

from __future__ import annotations

import fractions
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scanner.checkpoint import CheckpointMeta, Provenance, save_checkpoint
from scanner.contract import Preprocessing
from scanner.model import DetectorConfig, build_detector

SHARED_VIDEOS = Path(
    os.environ.get(
        "DFSCAN_SHARED_VIDEOS", Path(__file__).resolve().parents[2] / "shared/data/videos"
    )
)
# Tests over the team's real-world clips: skipped, saying why, where the folder is absent.
needs_shared_videos = pytest.mark.skipif(
    not SHARED_VIDEOS.is_dir(),
    reason=f"shared clips not found at {SHARED_VIDEOS} (set DFSCAN_SHARED_VIDEOS)",
)

MARK_BITS = 7  # frame indices up to 127 are drawn into face_frames

TINY_CONFIG = DetectorConfig(
    backbone="test_efficientnet", proj_channels=16, hidden_channels=16, attention_channels=8
)


def write_clip(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    fps: float = 25.0,
) -> Path:
    """Write RGB frames to an mp4 (MPEG-4 Part 2, which every OpenCV build can encode)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def face_frames(
    face: np.ndarray, n: int, size: tuple[int, int] = (320, 240), face_height: int = 200
) -> list[np.ndarray]:
    """n frames of (w, h) = size showing the portrait, drifting a few pixels per frame.

    Each frame also carries its index in binary as a row of black and white squares along
    the top edge (read back by ``frame_mark``), so tests can tell which frames were decoded.
    """
    w, h = size
    scale = face_height / face.shape[0]
    portrait = cv2.resize(face, (round(face.shape[1] * scale), face_height))
    ph, pw = portrait.shape[:2]
    out = []
    for i in range(n):
        canvas = np.full((h, w, 3), 90, np.uint8)
        x = min(max(0, (w - pw) // 2 + (i % 7) - 3), max(0, w - pw))
        y = max(0, (h - ph) // 2)
        canvas[y : y + min(ph, h), x : x + min(pw, w)] = portrait[: min(ph, h), : min(pw, w)]
        for bit in range(MARK_BITS):
            canvas[:16, 16 * bit : 16 * bit + 16] = 255 if (i >> bit) & 1 else 0
        out.append(canvas)
    return out


def write_vfr_mp4(
    path: Path, frames: list[np.ndarray], durations_ms: list[int], nominal_rate: int = 1000
) -> Path:
    """An H.264 video (PyAV; mp4, or Matroska for a .mkv path) whose frame i lasts
    durations_ms[i]: a variable frame rate, as phones and screen recorders write; a keyframe
    every 30 frames, so seeks land mid-file. ``nominal_rate`` is the rate the stream declares."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=nominal_rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        stream.codec_context.gop_size = 30
        stream.codec_context.options = {"bf": "0"}
        pts = 0
        for image, duration in zip(frames, durations_ms):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = pts, fractions.Fraction(1, 1000)
            out.mux(stream.encode(frame))
            pts += duration
        out.mux(stream.encode())
    return path


def frame_mark(image: np.ndarray) -> int:
    """The frame index that ``face_frames`` drew into an (upright) decoded frame."""
    bits = [image[4:12, 16 * b + 4 : 16 * b + 12].mean() > 128 for b in range(MARK_BITS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def rotate_mp4(path: Path, degrees: int) -> Path:
    """Set the display-rotation matrix of an mp4's video track (as phones do)."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"tkhd")
    assert pos > 0, "no tkhd box"
    version = data[pos + 4]
    matrix_at = pos + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    one, minus_one = 0x10000, -0x10000
    a, b, c, d = {
        90: (0, one, minus_one, 0),
        180: (minus_one, 0, 0, minus_one),
        270: (0, minus_one, one, 0),
    }[degrees]
    struct.pack_into(">9i", data, matrix_at, a, b, 0, c, d, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


def make_checkpoint(path: Path, config: DetectorConfig = TINY_CONFIG, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_detector(config)
    meta = CheckpointMeta(
        name="test-" + config.backbone,
        model=config,
        preprocessing=Preprocessing.for_backbone(config.backbone, num_frames=config.num_frames),
        provenance=Provenance(training_data="none (random init)", notes="test fixture"),
    )
    save_checkpoint(path, model, meta)
    return path


def write_avi(path: Path, frames: list[np.ndarray] | np.ndarray, fps: float = 25.0) -> Path:
    """Write RGB frames to a Motion-JPEG AVI: every frame stands alone, so a file cut short
    still decodes up to the cut, and the header keeps declaring every frame."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_dropped_avi(path: Path, frames: list[np.ndarray], late: set[int]) -> Path:
    """A Motion-JPEG AVI at 25/s (PyAV) whose frames in ``late`` last three ticks: the muxer
    fills each gap with two empty index entries, dropped frames as capture tools write them."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuvj420p"
        pts = 0
        for k, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = pts
            out.mux(stream.encode(frame))
            pts += 3 if k in late else 1
        out.mux(stream.encode())
    return path


def write_h264_mp4(path: Path, frames: list[np.ndarray], keyframe_every: int) -> Path:
    """An H.264 mp4 at 25/s (PyAV) with a keyframe every ``keyframe_every`` frames only."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = keyframe_every
        stream.codec_context.options = {"bf": "0", "sc_threshold": "0", "keyint_min": "1000"}
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), "rgb24")))
        out.mux(stream.encode())
    return path


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full_box(kind: bytes, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", flags), *parts)  # version 0


_UNITY = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def audio_only_mp4(path: Path, seconds: float = 1.0, rate: int = 8000) -> Path:
    """An mp4 whose one track is sound: a 440 Hz tone as 16-bit PCM ('sowt'), no video."""
    n = round(seconds * rate)
    pcm = (3000 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype("<i2").tobytes()

    def moov(data_offset: int) -> bytes:
        mvhd = _full_box(
            b"mvhd",
            0,
            struct.pack(">4IIH", 0, 0, rate, n, 0x10000, 0x100),
            bytes(10),
            _UNITY,
            bytes(24),
            struct.pack(">I", 2),
        )
        tkhd = _full_box(
            b"tkhd",
            3,
            struct.pack(">5I", 0, 0, 1, 0, n),
            bytes(8),
            struct.pack(">hhhH", 0, 0, 0x100, 0),
            _UNITY,
            struct.pack(">II", 0, 0),
        )
        mdhd = _full_box(b"mdhd", 0, struct.pack(">4IHH", 0, 0, rate, n, 0x55C4, 0))
        hdlr = _full_box(b"hdlr", 0, struct.pack(">I4s", 0, b"soun"), bytes(12), b"Sound\0")
        entry = _box(
            b"sowt", bytes(6), struct.pack(">HHHIHHHHI", 1, 0, 0, 0, 1, 16, 0, 0, rate << 16)
        )
        stbl = _box(
            b"stbl",
            _full_box(b"stsd", 0, struct.pack(">I", 1), entry),
            _full_box(b"stts", 0, struct.pack(">III", 1, n, 1)),
            _full_box(b"stsc", 0, struct.pack(">4I", 1, 1, n, 1)),
            _full_box(b"stsz", 0, struct.pack(">II", 2, n)),
            _full_box(b"stco", 0, struct.pack(">II", 1, data_offset)),
        )
        dinf = _box(b"dinf", _full_box(b"dref", 0, struct.pack(">I", 1), _full_box(b"url ", 1)))
        minf = _box(b"minf", _full_box(b"smhd", 0, bytes(4)), dinf, stbl)
        return _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))

    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"mp41")
    offset = len(ftyp) + len(moov(0)) + 8  # the samples start after mdat's header
    path.write_bytes(ftyp + moov(offset) + _box(b"mdat", pcm))
    return path


def retag_mp4(path: Path, fourcc: bytes) -> Path:
    """Relabel the video track of an mp4 written by ``write_clip`` as codec ``fourcc`` (e.g.
    b"av01"), dropping the MPEG-4 decoder configuration that would name the real codec: a
    file in a codec this FFmpeg has no working decoder for, as an AV1 video is here."""
    data = bytearray(path.read_bytes())
    stsd = data.index(b"stsd")
    entry = data.index(b"mp4v", stsd)
    data[entry : entry + 4] = fourcc
    esds = data.index(b"esds", entry)
    data[esds : esds + 4] = b"free"
    path.write_bytes(bytes(data))
    return path


def _ebml(element_id: int, payload: bytes) -> bytes:
    """One EBML element: its ID, an 8-byte size, the payload."""
    ident = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return ident + (len(payload) | (1 << 56)).to_bytes(8, "big") + payload


def audio_only_webm(path: Path, seconds: float = 1.0, rate: int = 8000) -> Path:
    """A Matroska file (named as the caller likes, e.g. .webm) whose one track is PCM sound."""
    n = round(seconds * rate)
    pcm = np.zeros(n, "<i2").tobytes()
    header = _ebml(
        0x1A45DFA3,
        _ebml(0x4282, b"matroska") + _ebml(0x4287, b"\x04") + _ebml(0x4285, b"\x02"),
    )
    audio = _ebml(0xB5, struct.pack(">d", float(rate))) + _ebml(0x9F, b"\x01")
    track = _ebml(
        0xAE,
        _ebml(0xD7, b"\x01")  # TrackNumber
        + _ebml(0x73C5, b"\x01")  # TrackUID
        + _ebml(0x83, b"\x02")  # TrackType: audio
        + _ebml(0x86, b"A_PCM/INT/LIT")
        + _ebml(0xE1, audio + _ebml(0x6264, b"\x10")),  # 16 bits
    )
    info = _ebml(0x1549A966, _ebml(0x2AD7B1, struct.pack(">I", 1_000_000)))
    block = _ebml(0xA3, b"\x81" + struct.pack(">hB", 0, 0x80) + pcm)  # track 1, keyframe
    cluster = _ebml(0x1F43B675, _ebml(0xE7, b"\x00") + block)
    segment = _ebml(0x18538067, info + _ebml(0x1654AE6B, track) + cluster)
    path.write_bytes(header + segment)
    return path


def matroska_video_header(path: Path, width: int, height: int) -> Path:
    """The header of a Matroska file with one VP9 video track of ``width`` x ``height``
    (no frames: what ``scanner.container.tracks`` reads)."""
    header = _ebml(0x1A45DFA3, _ebml(0x4282, b"webm"))
    video = _ebml(0xB0, width.to_bytes(2, "big")) + _ebml(0xBA, height.to_bytes(2, "big"))
    track = _ebml(
        0xAE,
        _ebml(0xD7, b"\x01") + _ebml(0x83, b"\x01") + _ebml(0x86, b"V_VP9") + _ebml(0xE0, video),
    )
    path.write_bytes(header + _ebml(0x18538067, _ebml(0x1654AE6B, track)))
    return path


# What the scan must say of each file ``write_hostile_files`` writes.
HOSTILE_STATUSES = {
    "with spaces/ünïcode/face clip.mp4": "ok",
    "portrait.mp4": "ok",
    "noface.mp4": "no_face",
    "short.mp4": "too_short",
    "truncated.mp4": "decode_error",
    "empty.mp4": "not_video",
    "notes.mp4": "not_video",
    "dangling.mp4": "error",
}


def write_hostile_files(
    d: Path, face_image: np.ndarray, face_clip: Path, noface_clip: Path
) -> Path:
    """Files the scan must give each its status (``HOSTILE_STATUSES``) in folder ``d``: a face
    under a spaced non-ASCII path, a portrait-shaped face clip, no face, too short, truncated,
    empty, text, a link to nothing."""
    spaced = d / "with spaces" / "ünïcode"
    spaced.mkdir(parents=True)
    (spaced / "face clip.mp4").write_bytes(face_clip.read_bytes())
    write_clip(d / "portrait.mp4", face_frames(face_image, 20, size=(240, 360)))
    (d / "noface.mp4").write_bytes(noface_clip.read_bytes())
    write_clip(d / "short.mp4", face_frames(face_image, 10))
    data = face_clip.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (d / "empty.mp4").touch()
    (d / "notes.mp4").write_text("not a video\n" * 50)
    os.symlink(d / "gone.mp4", d / "dangling.mp4")
    return d


GEOMETRY = Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3)  # crop geometry only


def self_blended(frames: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Every frame's face self-blended (training.selfblend, five-point masks) and pasted back."""
    from scanner.faces import FaceDetector, extract_track
    from scanner.video import Frames, VideoInfo
    from training.make_samples import paste_back
    from training.selfblend import self_blend

    images = np.stack(frames)
    n = len(images)
    info = VideoInfo(images.shape[2], images.shape[1], 25.0, n, n / 25)
    track = extract_track(Frames(info, tuple(range(n)), images), FaceDetector(GEOMETRY))
    _, fake, masks = self_blend(track.crops, track.landmarks, np.random.default_rng(seed))
    return [
        paste_back(f, c, m, b, GEOMETRY.margin)
        for f, c, m, b in zip(images, fake, masks, track.boxes)
    ]


def side_by_side(left: list[np.ndarray], right: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate([a, b], axis=1) for a, b in zip(left, right)]


def fake_engine_build(monkeypatch: pytest.MonkeyPatch) -> dict:
    """TensorRT stand-ins for the export pipeline without a GPU: the "engine" is the ONNX it
    was built from, verified through onnxruntime. Returns what the last build was given
    (source file name, precision, max_batch)."""
    from export import pipeline
    from scanner.onnx_writer import verify_onnx

    built: dict = {}

    def fake_build(source, path, contract, *, precision, max_batch, device):
        built.update(source=source.name, precision=precision, max_batch=max_batch)
        path.write_bytes(source.read_bytes())
        return {"version": "stand-in", "built_from": source.name}

    def fake_verify(path, cases, tolerance, device):
        return verify_onnx(path, cases, tolerance)

    monkeypatch.setattr(pipeline, "engine_unavailable", lambda device=None: None)
    monkeypatch.setattr(pipeline, "build_engine", fake_build)
    monkeypatch.setattr(pipeline, "verify_engine", fake_verify)
    return built
