"""What a file says it is, read from its bytes: for the messages of files FFmpeg will not decode.

OpenCV's FFmpeg backend only reports whether a file opens as a video. When it does not, these
tell an audio-only mp4 or WebM (no video stream) from a damaged container, and a still image
from a video; the track list also names the codec of a video FFmpeg cannot open.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEAD_BYTES = 376  # enough for every signature below (MPEG-TS needs two 188-byte packets)
_MAX_HEADER = 64 << 20  # track headers larger than this are not read (a moov of hours)


@dataclass(frozen=True)
class Track:
    kind: str  # video, audio, subtitle or other
    codec: str  # fourcc (mp4/mov) or codec ID (Matroska) as the container writes it
    # mp4/mov: whether every sample lasts as long (its last one aside), from the sample
    # table; None where the container does not say (Matroska, a fragmented mp4)
    constant_rate: bool | None = None
    # video tracks: the frame size the container declares (mp4/mov: the track header's display
    # size; Matroska: PixelWidth x PixelHeight); None where it does not say
    width: int | None = None
    height: int | None = None
    # mp4/mov: the sync sample table's payload (keyframes; ``sync_samples`` reads it); None
    # where the track has none (every sample is a sync sample) or for other containers
    sync_table: bytes | None = field(default=None, repr=False)

    def sync_samples(self) -> np.ndarray | None:
        """The sync samples (keyframes), numbered from 0 and increasing; None where every
        sample is one. A table cut short gives what it holds."""
        return None if self.sync_table is None else _sync(self.sync_table)

    def __str__(self) -> str:
        return f"{self.kind} ({self.codec})" if self.codec else self.kind


def is_iso_media(head: bytes) -> bool:
    """mp4, mov, m4v, 3gp: ISO base media files start with one of these boxes."""
    return len(head) >= 8 and head[4:8] in (
        b"ftyp",
        b"moov",
        b"mdat",
        b"wide",
        b"free",
        b"skip",
        b"pnot",
    )


def is_avi(head: bytes) -> bool:
    return head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX")


def is_matroska(head: bytes) -> bool:
    return head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM


def video_signature(head: bytes) -> bool:
    """Whether ``head`` (the first HEAD_BYTES bytes) starts like a container FFmpeg reads."""
    if len(head) < 12:
        return False
    return (
        is_iso_media(head)
        or is_matroska(head)
        or is_avi(head)
        or head.startswith((b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"))
        or head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")  # ASF / WMV
        or (head[0] == 0x47 and len(head) > 188 and head[188] == 0x47)  # MPEG-TS
    )


def image_format(head: bytes) -> str | None:
    """PNG, JPEG, GIF, BMP, WebP or TIFF if ``head`` starts like that still-image format."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 18 and head[14] in (12, 40, 56, 64, 108, 124):
        return "BMP"
    return None


def tracks(path: Path, head: bytes, max_header: int = _MAX_HEADER) -> list[Track] | None:
    """The tracks an mp4/mov or Matroska/WebM file declares, or None when that cannot be
    read (another container, a header cut short or damaged, or larger than ``max_header``
    bytes)."""
    try:
        if is_iso_media(head):
            return _iso_tracks(path, max_header)
        if is_matroska(head):
            return _matroska_tracks(path, max_header)
    except (OSError, ValueError, struct.error, IndexError):
        return None
    return None


# Well-known codecs by fourcc or Matroska codec ID, lower case.
_CODEC_NAMES = {
    "av01": "AV1",
    "av1": "AV1",
    "v_av1": "AV1",
    "avc1": "H.264",
    "avc3": "H.264",
    "h264": "H.264",
    "x264": "H.264",
    "v_mpeg4/iso/avc": "H.264",
    "hvc1": "HEVC",
    "hev1": "HEVC",
    "hevc": "HEVC",
    "h265": "HEVC",
    "v_mpegh/iso/hevc": "HEVC",
    "vvc1": "H.266",
    "vvi1": "H.266",
    "vp08": "VP8",
    "vp80": "VP8",
    "v_vp8": "VP8",
    "vp09": "VP9",
    "vp90": "VP9",
    "v_vp9": "VP9",
    "mp4v": "MPEG-4 Part 2",
    "fmp4": "MPEG-4 Part 2",
    "xvid": "MPEG-4 Part 2",
    "divx": "MPEG-4 Part 2",
    "mjpg": "Motion JPEG",
    "mjpa": "Motion JPEG",
    "jpeg": "Motion JPEG",
    "apch": "ProRes",
    "apcn": "ProRes",
    "apcs": "ProRes",
    "apco": "ProRes",
    "ap4h": "ProRes",
    "mpg2": "MPEG-2",
    "mp2v": "MPEG-2",
    "theo": "Theora",
    "v_theora": "Theora",
}


def codec_name(fourcc: str) -> str:
    """'AV1 (av01)' for a fourcc or codec ID, the fourcc alone when it is not a known one."""
    code = fourcc.strip("\x00 ")
    name = _CODEC_NAMES.get(code.lower())
    return f"{name} ({code})" if name else code or "unknown"


_ISO_KINDS = {
    b"vide": "video",
    b"soun": "audio",
    b"text": "subtitle",
    b"sbtl": "subtitle",
    b"subt": "subtitle",
    b"clcp": "subtitle",
}


def _boxes(data: bytes):  # noqa: ANN202 - an iterator of (type, payload)
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            raise ValueError(f"box {kind!r} overruns its parent")
        yield kind, data[pos + header : pos + size]
        pos += size


def _child(data: bytes, *path: bytes) -> bytes | None:
    for kind in path:
        data = next((payload for k, payload in _boxes(data) if k == kind), None)
        if data is None:
            return None
    return data


def _iso_tracks(path: Path, max_header: int) -> list[Track] | None:
    """Walk the top-level boxes (seeking past the media data) to the moov box; one Track per
    trak: its handler (vide, soun, ...) and its first sample entry's type (avc1, mp4a, ...)."""
    with open(path, "rb") as f:
        end = f.seek(0, 2)
        pos = 0
        while pos + 8 <= end:
            f.seek(pos)
            head = f.read(16)
            size, kind = struct.unpack_from(">I4s", head)
            header = 8
            if size == 1:
                size, header = struct.unpack_from(">Q", head, 8)[0], 16
            elif size == 0:
                size = end - pos
            if size < header or pos + size > end:
                return None  # cut short
            if kind == b"moov":
                if size > max_header:
                    return None
                f.seek(pos + header)
                moov = f.read(size - header)
                break
            pos += size
        else:
            return None
    found = []
    for kind, trak in _boxes(moov):
        if kind != b"trak":
            continue
        hdlr = _child(trak, b"mdia", b"hdlr")
        stsd = _child(trak, b"mdia", b"minf", b"stbl", b"stsd")
        handler = hdlr[8:12] if hdlr is not None and len(hdlr) >= 12 else b""
        codec = stsd[12:16].decode("latin-1") if stsd is not None and len(stsd) >= 16 else ""
        stts = _child(trak, b"mdia", b"minf", b"stbl", b"stts")
        stss = _child(trak, b"mdia", b"minf", b"stbl", b"stss")
        width, height = _iso_size(_child(trak, b"tkhd"))
        kind = _ISO_KINDS.get(handler, "other")
        found.append(Track(kind, codec, _constant_rate(stts), width, height, stss))
    return found


def _sync(stss: bytes) -> np.ndarray:
    """A sync sample table's samples, numbered from 0 (the box numbers them from 1), sorted.
    A table cut short gives what it holds."""
    if len(stss) < 8:
        return np.zeros(0, np.int64)
    count = min(struct.unpack_from(">I", stss, 4)[0], (len(stss) - 8) // 4)
    return np.sort(np.frombuffer(stss, ">u4", count, 8).astype(np.int64) - 1)


@dataclass(frozen=True)
class AviIndex:
    """An AVI's legacy index (``idx1``), its entries of the first video stream in file order:
    one per frame as a frame-number seek counts them."""

    frames: int  # entries, empty ones included
    empty: int  # empty entries: frames a writer dropped (a timing gap), which decode to nothing
    keyframes: np.ndarray = field(repr=False)  # entries flagged as keyframes, numbered from 0


# An AVI index entry: chunk id (video: stream number, then dc or db), flags, offset, size.
_AVI_ENTRY = np.dtype([("id", "V4"), ("flags", "<u4"), ("offset", "<u4"), ("size", "<u4")])
_AVIIF_KEYFRAME = 0x10
_AVI_CHUNKS = 1000  # top-level chunks looked through for the index (files hold a handful)


def avi_index(path: Path, max_header: int = _MAX_HEADER) -> AviIndex | None:
    """The ``idx1`` index of an AVI file (``AviIndex``), or None where it has none that can be
    read (cut short, an OpenDML file indexed otherwise, larger than ``max_header``)."""
    try:
        with open(path, "rb") as f:
            riff = f.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"AVI ":
                return None
            end = min(f.seek(0, 2), 8 + struct.unpack_from("<I", riff, 4)[0])
            pos, chunks = 12, 0
            while pos + 8 <= end and chunks < _AVI_CHUNKS:
                chunks += 1
                f.seek(pos)
                kind, size = struct.unpack("<4sI", f.read(8))
                if kind == b"idx1":
                    if size > max_header or pos + 8 + size > end:
                        return None
                    data = f.read(size - size % 16)
                    break
                pos += 8 + size + (size & 1)  # chunks are padded to even sizes
            else:
                return None
    except (OSError, struct.error):
        return None
    entries = np.frombuffer(data, _AVI_ENTRY)
    ids = np.frombuffer(data, np.uint8).reshape(-1, 16)[:, :4]  # the chunk ids' bytes
    digit = (ids[:, :2] >= ord("0")) & (ids[:, :2] <= ord("9"))
    is_video = digit.all(axis=1) & (ids[:, 2] == ord("d")) & np.isin(ids[:, 3], list(b"cb"))
    if not is_video.any():
        return None
    streams = ids[:, 0].astype(np.int32) * 256 + ids[:, 1]
    video = entries[is_video & (streams == streams[is_video].min())]  # FFmpeg's first stream
    return AviIndex(
        frames=len(video),
        empty=int((video["size"] == 0).sum()),
        keyframes=np.flatnonzero(video["flags"] & _AVIIF_KEYFRAME),
    )


def _iso_size(tkhd: bytes | None) -> tuple[int | None, int | None]:
    """A track header's width and height (its last 8 bytes, 16.16 fixed point); None for a
    header cut short or a track without a picture (zero)."""
    if tkhd is None or len(tkhd) < 84:  # version 0 is 84 bytes, version 1 96
        return None, None
    width, height = (v >> 16 for v in struct.unpack_from(">II", tkhd, len(tkhd) - 8))
    return (width, height) if width and height else (None, None)


def _constant_rate(stts: bytes | None) -> bool | None:
    """Whether a track's time-to-sample table (runs of samples of one duration) gives every
    sample the same duration, the last sample aside (muxers often shorten it); None for an
    empty or missing table (a fragmented mp4 keeps its timing in the fragments)."""
    if stts is None or len(stts) < 8:
        return None
    (count,) = struct.unpack_from(">I", stts, 4)
    if count == 0 or len(stts) < 8 + 8 * count:
        return None
    runs = [struct.unpack_from(">II", stts, 8 + 8 * i) for i in range(count)]
    if len(runs) > 1 and runs[-1][0] == 1:
        runs = runs[:-1]
    return len({delta for _, delta in runs}) == 1


_MKV_KINDS = {1: "video", 2: "audio", 0x11: "subtitle"}
_SEGMENT, _TRACKS, _CLUSTER = 0x18538067, 0x1654AE6B, 0x1F43B675


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int, bool]:
    """An EBML variable-length integer at ``pos``: (value, length, all value bits set)."""
    first = data[pos]
    if first == 0:
        raise ValueError("invalid EBML length")
    length = 9 - first.bit_length()
    if len(data) < pos + length:
        raise ValueError("EBML number cut short")
    value = int.from_bytes(data[pos : pos + length], "big")
    bits = 7 * length
    unknown = value & ((1 << bits) - 1) == (1 << bits) - 1
    return (value if keep_marker else value & ((1 << bits) - 1)), length, unknown


def _elements(data: bytes):  # noqa: ANN202 - an iterator of (id, payload)
    pos = 0
    while pos < len(data):
        ident, n, _ = _vint(data, pos, keep_marker=True)
        size, m, unknown = _vint(data, pos + n, keep_marker=False)
        start = pos + n + m
        end = len(data) if unknown else start + size
        yield ident, data[start:end]
        pos = end


def _matroska_tracks(path: Path, max_header: int) -> list[Track] | None:
    """Read past the EBML header into the Segment, then its children up to Tracks; one Track
    per TrackEntry: its TrackType and CodecID (V_VP9, A_OPUS, ...)."""
    with open(path, "rb") as f:
        end = f.seek(0, 2)
        f.seek(0)
        head = f.read(64)
        _, n, _ = _vint(head, 0, keep_marker=True)
        size, m, _ = _vint(head, n, keep_marker=False)
        pos = n + m + size  # past the EBML header
        for _ in range(4096):  # Segment, then its children (SeekHead, Info, Tracks, ...)
            if pos >= end:
                return None
            f.seek(pos)
            head = f.read(16)
            ident, n, _ = _vint(head, 0, keep_marker=True)
            size, m, unknown = _vint(head, n, keep_marker=False)
            if ident == _SEGMENT:
                pos += n + m  # into the segment
                continue
            if ident == _CLUSTER or unknown:
                return None  # media data before any track list
            if ident == _TRACKS:
                if size > max_header or pos + n + m + size > end:
                    return None
                f.seek(pos + n + m)
                entries = f.read(size)
                break
            pos += n + m + size
        else:
            return None
    found = []
    for ident, entry in _elements(entries):
        if ident != 0xAE:  # TrackEntry
            continue
        kind, codec, size = "other", "", {}
        for child, value in _elements(entry):
            if child == 0x83:  # TrackType
                kind = _MKV_KINDS.get(int.from_bytes(value, "big"), "other")
            elif child == 0x86:  # CodecID
                codec = value.decode("ascii", "replace").rstrip("\x00")
            elif child == 0xE0:  # Video: PixelWidth, PixelHeight
                size = {k: int.from_bytes(v, "big") for k, v in _elements(value)}
        width, height = size.get(0xB0) or None, size.get(0xBA) or None
        found.append(Track(kind, codec, None, width, height))
    return found
