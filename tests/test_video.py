import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from scanner import video
from scanner.container import HEAD_BYTES, _sync, avi_index
from scanner.video import (
    DecodeError,
    NotAVideoError,
    TooShortError,
    count_is_estimated,
    frame_area,
    has_video_signature,
    keyframe_indices,
    read_frames,
    sample_indices,
    seek_points,
)

from helpers import (
    audio_only_mp4,
    audio_only_webm,
    face_frames,
    frame_mark,
    matroska_video_header,
    retag_mp4,
    rotate_mp4,
    write_avi,
    write_clip,
    write_dropped_avi,
    write_h264_mp4,
    write_vfr_mp4,
)


def test_random_sampling_is_seeded_distinct_and_sorted():
    a = sample_indices(300, 15, "random", np.random.default_rng(7))
    b = sample_indices(300, 15, "random", np.random.default_rng(7))
    c = sample_indices(300, 15, "random", np.random.default_rng(8))
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert len(set(a.tolist())) == 15 and a.tolist() == sorted(a.tolist())
    assert a.min() >= 0 and a.max() < 300


def test_uniform_sampling_is_equally_spaced():
    idx = sample_indices(29, 15, "uniform", np.random.default_rng(0))
    assert idx.tolist() == list(range(0, 29, 2))
    assert sample_indices(15, 15, "uniform", np.random.default_rng(0)).tolist() == list(range(15))


def test_sampling_needs_enough_frames():
    with pytest.raises(TooShortError):
        sample_indices(10, 15, "random", np.random.default_rng(0))
    with pytest.raises(ValueError, match="sampling must be one of"):
        sample_indices(100, 15, "bogus", np.random.default_rng(0))
    with pytest.raises(ValueError, match="change signal"):
        sample_indices(100, 15, "keyframe", np.random.default_rng(0))


def test_sequential_sampling_is_one_seeded_run():
    a = sample_indices(300, 15, "sequential", np.random.default_rng(7))
    assert a.tolist() == list(range(a[0], a[0] + 15)) and 0 <= a[0] <= 285
    assert a.tolist() == sample_indices(300, 15, "sequential", np.random.default_rng(7)).tolist()
    assert sample_indices(15, 15, "sequential", np.random.default_rng(0)).tolist() == list(
        range(15)
    )


def test_subsequence_sampling_takes_a_run_in_each_third():
    idx = sample_indices(300, 15, "subsequence", np.random.default_rng(3))
    for k, run in enumerate(np.split(idx, 3)):
        assert run.tolist() == list(range(run[0], run[0] + 5))
        assert 100 * k <= run[0] and run[-1] < 100 * (k + 1)
    assert sample_indices(15, 15, "subsequence", np.random.default_rng(0)).tolist() == list(
        range(15)
    )


def test_keyframes_are_the_largest_separated_changes():
    change = np.ones(100)
    change[[0, 30, 31, 60, 90]] = [np.inf, 9, 8, 7, 6]  # 31 lies next to 30: suppressed
    assert keyframe_indices(change, 4).tolist() == [0, 30, 60, 90]
    still = np.zeros(20)
    still[0] = np.inf
    assert keyframe_indices(still, 15).tolist() == list(range(15))  # filled up, distinct


def test_keyframe_read_picks_the_scene_changes(tmp_path, face_image):
    frames = face_frames(face_image, 90)  # drifting a few pixels per frame
    cuts = (17, 41, 66)
    for i in range(90):  # brighter from each cut on (below the frame-index marks)
        lift = 40 * sum(i >= c for c in cuts)
        frames[i][16:] = np.clip(frames[i][16:].astype(int) + lift, 0, 255).astype(np.uint8)
    path = write_clip(tmp_path / "scenes.mp4", frames)
    got = read_frames(path, 15, "keyframe", seed=0)
    assert {0, *cuts} <= set(got.indices)
    assert [frame_mark(im) for im in got.images] == list(got.indices)
    assert read_frames(path, 15, "keyframe", seed=5).indices == got.indices  # no randomness
    inside = read_frames(path, 15, "keyframe", seed=0, span=(30, 60))
    assert {30, 41} <= set(inside.indices) and min(inside.indices) >= 30
    assert max(inside.indices) <= 60


def test_read_frames_decodes_exactly_the_sampled_frames(face_clip):
    frames = read_frames(face_clip, 15, "random", seed=3)
    assert frames.images.shape == (15, 240, 320, 3) and frames.images.dtype == np.uint8
    assert [frame_mark(im) for im in frames.images] == list(frames.indices)
    again = read_frames(face_clip, 15, "random", seed=3)
    assert again.indices == frames.indices
    np.testing.assert_array_equal(again.images, frames.images)
    assert read_frames(face_clip, 15, "random", seed=4).indices != frames.indices
    info = frames.info
    assert (info.width, info.height, info.frame_count) == (320, 240, 40)
    assert info.fps == pytest.approx(25.0) and info.duration_s == pytest.approx(1.6)


def test_uniform_read(face_clip):
    frames = read_frames(face_clip, 5, "uniform", seed=0)
    assert frames.indices == (0, 10, 20, 29, 39)
    assert [frame_mark(im) for im in frames.images] == list(frames.indices)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(NotAVideoError, match="empty"):
        read_frames(path, 15, "random", 0)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 20)
    assert not has_video_signature(path)
    with pytest.raises(NotAVideoError):
        read_frames(path, 15, "random", 0)


def test_truncated_mp4(tmp_path, face_clip):
    data = face_clip.read_bytes()
    assert has_video_signature(face_clip)
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 3])
    assert has_video_signature(path)
    with pytest.raises(DecodeError):
        read_frames(path, 15, "random", 0)


def test_short_video(tmp_path, face_image):
    path = write_clip(tmp_path / "short.mp4", face_frames(face_image, 10))
    with pytest.raises(TooShortError, match="10 frames") as e:
        read_frames(path, 15, "random", 0)
    assert e.value.info is not None and e.value.info.frame_count == 10


def test_rotated_video_comes_out_upright(tmp_path, face_image):
    """A phone-style clip stored sideways with a 90-degree display matrix."""
    upright = face_frames(face_image, 20, size=(320, 240))
    stored = [np.ascontiguousarray(np.rot90(f)) for f in upright]  # stored 240 wide, 320 tall
    path = rotate_mp4(write_clip(tmp_path / "rotated.mp4", stored), 90)
    frames = read_frames(path, 15, "uniform", 0)
    assert (frames.info.width, frames.info.height) == (320, 240)
    assert [frame_mark(im) for im in frames.images] == list(frames.indices)


def test_long_gaps_are_seeked_exactly(tmp_path, face_image, monkeypatch):
    import scanner.video

    frames = face_frames(face_image, 127, size=(160, 120), face_height=100)
    path = write_clip(tmp_path / "long.mp4", frames)
    assert seek_points(path, path.read_bytes()[:HEAD_BYTES])  # a constant frame rate
    grab, seeked = scanner.video._grab_indices, []

    def recorded(cap, indices, seek):  # noqa: ANN001, ANN202
        got = grab(cap, indices, seek)
        seeked.append(got[2])
        return got

    monkeypatch.setattr(scanner.video, "_grab_indices", recorded)
    for seed in range(3):
        got = read_frames(path, 3, "random", seed)
        assert [frame_mark(im) for im in got.images] == list(got.indices)
    got = read_frames(path, 3, "uniform", 0)
    assert got.indices == (0, 63, 126)
    assert [frame_mark(im) for im in got.images] == [0, 63, 126]
    got = read_frames(path, 2, "uniform", 0)
    assert [frame_mark(im) for im in got.images] == [0, 126]
    assert seeked[-1]  # 125 frames between them: seeked, not decoded through


def recorded_seeks(monkeypatch) -> list[bool]:  # noqa: ANN001
    """Whether each ``_grab_indices`` call from now on seeked."""
    grab, seeked = video._grab_indices, []

    def recorded(cap, indices, seek):  # noqa: ANN001, ANN202
        got = grab(cap, indices, seek)
        seeked.append(got[2])
        return got

    monkeypatch.setattr(video, "_grab_indices", recorded)
    return seeked


@pytest.mark.parametrize(("keyframe_every", "seeks"), [(1000, False), (30, True)])
def test_a_seek_is_made_only_past_a_keyframe(
    tmp_path, face_image, monkeypatch, keyframe_every, seeks
):
    """A seek decodes from the keyframe before its target: with one keyframe in the video it
    would decode again from the start, so the gap is decoded through; with a keyframe every
    30 frames, the 90 frames to the last one before the target are skipped."""
    pytest.importorskip("av", reason="PyAV writes the test clip (pip install av)")
    frames = face_frames(face_image, 120, size=(160, 120), face_height=100)
    path = write_h264_mp4(tmp_path / "gop.mp4", frames, keyframe_every)
    points = seek_points(path, path.read_bytes()[:HEAD_BYTES])
    want = [0] if keyframe_every > 120 else list(range(0, 120, 30))
    assert points is not None and points.keyframes.tolist() == want
    seeked = recorded_seeks(monkeypatch)
    got = read_frames(path, 2, "uniform", 0)
    assert got.indices == (0, 119) and [frame_mark(im) for im in got.images] == [0, 119]
    assert seeked == [seeks]


def test_an_avi_with_dropped_frames_is_decoded_through(tmp_path, face_image):
    """Empty index entries (frames a writer dropped) count as frames for a seek, not for
    decoding: seeking would land on other frames, so such an AVI is decoded through and
    sampled from the frames that decode."""
    pytest.importorskip("av", reason="PyAV writes the test clip (pip install av)")
    frames = face_frames(face_image, 120, size=(160, 120), face_height=100)
    path = write_dropped_avi(tmp_path / "dropped.avi", frames, late=set(range(0, 112, 7)))
    index = avi_index(path)
    assert index is not None and (index.frames, index.empty) == (120 + 2 * 16, 2 * 16)
    assert seek_points(path, path.read_bytes()[:HEAD_BYTES]) is None
    for seed in range(4):
        got = read_frames(path, 3, "random", seed)
        assert [frame_mark(im) for im in got.images] == list(got.indices)
    whole = write_avi(tmp_path / "whole.avi", frames[:40])  # OpenCV's writer: every frame
    index = avi_index(whole)
    assert index is not None and (index.frames, index.empty) == (40, 0)
    assert seek_points(whole, whole.read_bytes()[:HEAD_BYTES]).keyframes.tolist() == list(range(40))


def test_seek_points_weigh_a_seek_against_decoding_on():
    points = video.SeekPoints(np.array([0, 100, 300]), covered=400)
    frames = (0, 99, 100, 299, 399, 400, 555)
    assert [points.before(f) for f in frames] == [0, 0, 100, 100, 300, 400, 555]
    assert points.worth_seeking(35, 150) and not points.worth_seeking(36, 150)  # 64 frames
    assert not points.worth_seeking(0, 99)  # its keyframe is where decoding starts anyway
    assert points.worth_seeking(300, 470)  # past the index: as if every frame were one
    assert video.SeekPoints(None).before(77) == 77


def test_keyframe_tables_cut_short_or_damaged_give_what_they_hold(tmp_path, face_image):
    stss = (
        (0).to_bytes(4, "big")
        + (1000).to_bytes(4, "big")
        + b"".join(n.to_bytes(4, "big") for n in (31, 1, 61))
    )
    assert _sync(stss + b"\x00\x01").tolist() == [0, 30, 60]  # 1000 declared, 3 held
    assert _sync(stss[:6]).tolist() == []
    path = write_avi(tmp_path / "clip.avi", face_frames(face_image, 30))
    data = path.read_bytes()
    at = data.rindex(b"idx1")
    size = int.from_bytes(data[at + 4 : at + 8], "little")
    assert avi_index(path).frames == 30 == size // 16
    (tmp_path / "cut.avi").write_bytes(data[: at + 8 + size // 2])  # the index cut in half
    assert avi_index(tmp_path / "cut.avi") is None
    odd = data[:at] + b"idx1" + (size - 3).to_bytes(4, "little") + data[at + 8 : at + 8 + size - 3]
    (tmp_path / "odd.avi").write_bytes(odd)  # a size that is not whole entries: 29 of them
    assert avi_index(tmp_path / "odd.avi").frames == 29
    junk = b"RIFF\xff\xff\xff\xffAVI " + b"JUNK\x00\x00\x00\x00" * 5000
    (tmp_path / "junk.avi").write_bytes(junk)
    assert avi_index(tmp_path / "junk.avi") is None  # no index among the first chunks


@pytest.mark.parametrize("order", ["slow then fast", "fast then slow"])
def test_a_variable_frame_rate_gives_the_frames_asked_for(order, tmp_path, face_image):
    """OpenCV seeks by time: on a variable frame rate a seek to frame N lands elsewhere (or
    past the end), so such a video is decoded through instead."""
    pytest.importorskip("av", reason="PyAV writes the test clip (pip install av)")
    frames = face_frames(face_image, 127, size=(160, 120), face_height=100)
    durations = [40] * 64 + [10] * 63 if order == "slow then fast" else [10] * 64 + [40] * 63
    path = write_vfr_mp4(tmp_path / "vfr.mp4", frames, durations)
    assert seek_points(path, path.read_bytes()[:HEAD_BYTES]) is None
    got = read_frames(path, 2, "uniform", 0)
    assert got.indices == (0, 126)
    assert [frame_mark(im) for im in got.images] == [0, 126]
    for seed in range(3):
        got = read_frames(path, 5, "random", seed)
        assert [frame_mark(im) for im in got.images] == list(got.indices)
    got = read_frames(path, 5, "keyframe", 0, span=(70, 126))
    assert [frame_mark(im) for im in got.images] == list(got.indices)


def test_a_matroska_count_below_the_clip_length_is_checked_by_decoding(tmp_path, face_image):
    """OpenCV counts Matroska frames as duration times the declared rate: 20 frames 10 ms
    apart at a nominal 25/s count as 6, which is not a reason to call the video too short."""
    pytest.importorskip("av", reason="PyAV writes the test clip (pip install av)")
    frames = face_frames(face_image, 20, size=(160, 120), face_height=100)
    path = write_vfr_mp4(tmp_path / "fast.mkv", frames, [10] * 20, nominal_rate=25)
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) < 15  # the undercount this guards against
    cap.release()
    got = read_frames(path, 15, "uniform", 0)
    assert got.info.frame_count == 20
    assert [frame_mark(im) for im in got.images] == list(got.indices)
    with pytest.raises(TooShortError, match="20 frames"):
        read_frames(path, 21, "uniform", 0)


def test_frames_past_a_matroska_undercount_are_sampled_too(tmp_path, face_image):
    """120 frames 10 ms apart at a nominal 25/s count as 30: the sampled frames span all 120,
    not the first 30 that the count promised."""
    pytest.importorskip("av", reason="PyAV writes the test clip (pip install av)")
    frames = face_frames(face_image, 120, size=(160, 120), face_height=100)
    path = write_vfr_mp4(tmp_path / "long.mkv", frames, [10] * 120, nominal_rate=25)
    assert count_is_estimated(path.read_bytes()[:HEAD_BYTES])  # Matroska: no frame index
    mp4 = write_vfr_mp4(tmp_path / "long.mp4", frames[:20], [10] * 20, nominal_rate=25)
    assert not count_is_estimated(mp4.read_bytes()[:HEAD_BYTES])  # its sample table counts
    cap = cv2.VideoCapture(str(path))
    assert 15 <= cap.get(cv2.CAP_PROP_FRAME_COUNT) < 60  # the undercount this guards against
    cap.release()
    got = read_frames(path, 15, "uniform", 0)
    assert got.info.frame_count == 120 and got.indices[-1] == 119
    assert [frame_mark(im) for im in got.images] == list(got.indices)
    got = read_frames(path, 15, "random", 1)
    assert max(got.indices) >= 60 and [frame_mark(im) for im in got.images] == list(got.indices)
    whole = got
    got = read_frames(path, 5, "uniform", 0, span=(60, 119))  # a shot past the count
    assert got.indices == (60, 75, 90, 104, 119)
    assert [frame_mark(im) for im in got.images] == list(got.indices)
    # the container's own figures are reported alike, whichever part was read
    assert (got.info.declared_frames, got.info.duration_s) == (
        whole.info.declared_frames,
        whole.info.duration_s,
    )
    got = read_frames(path, 15, "keyframe", 0)
    assert got.info.frame_count == 120 and max(got.indices) >= 60
    assert [frame_mark(im) for im in got.images] == list(got.indices)


def test_a_matroska_count_that_holds_is_not_checked_by_decoding_on(
    tmp_path, face_image, monkeypatch
):
    """Frames at the declared rate give a right count: a sample of the first frames (a run of
    consecutive ones) is not followed by decoding the rest of a long video to check it."""
    import scanner.video as video

    pytest.importorskip("av", reason="PyAV writes the test clip (pip install av)")
    frames = face_frames(face_image, 120, size=(160, 120), face_height=100)
    path = write_vfr_mp4(tmp_path / "steady.mkv", frames, [40] * 120, nominal_rate=25)
    counted = []
    count_on = video._count_on
    monkeypatch.setattr(video, "_count_on", lambda *a: counted.append(a) or count_on(*a))
    got = read_frames(path, 15, "sequential", 0)
    assert got.info.frame_count == 120 and counted == []
    assert [frame_mark(im) for im in got.images] == list(got.indices)
    fast = write_vfr_mp4(tmp_path / "fast.mkv", frames, [10] * 120, nominal_rate=25)
    assert read_frames(fast, 15, "sequential", 0).info.frame_count == 120 and counted


def test_frames_of_a_stream_whose_size_changes_are_brought_to_one_size(
    tmp_path, face_image, monkeypatch
):
    """A video call's recording changes resolution with its bandwidth: the sampled frames
    are resized to the size most of them have, not refused as undecodable."""
    import scanner.video as video

    path = write_clip(tmp_path / "call.mp4", face_frames(face_image, 20, size=(320, 240)))
    grab = video._grab_indices

    def adapting(cap, indices, seek):  # noqa: ANN001, ANN202
        images, reached, seeked = grab(cap, indices, seek)
        small = [cv2.resize(im, (160, 120)) if k % 3 == 0 else im for k, im in enumerate(images)]
        return small, reached, seeked

    monkeypatch.setattr(video, "_grab_indices", adapting)
    got = read_frames(path, 15, "uniform", 0)
    assert got.images.shape == (15, 240, 320, 3)
    assert (got.info.width, got.info.height) == (320, 240)
    # the enlarged frame is the original, softened: the face is where it was
    original = grab(cv2.VideoCapture(str(path)), np.array(got.indices[:1]), None)[0][0]
    assert np.abs(got.images[0].astype(int) - original).mean() < 12


def test_a_turned_frame_keeps_its_proportions(tmp_path, face_image, monkeypatch):
    """A frame of another shape (the phone turned mid-call) is fitted inside the common size,
    centred on black, not stretched: its face keeps its proportions."""
    import scanner.video as video

    path = write_clip(tmp_path / "call.mp4", face_frames(face_image, 20, size=(320, 240)))
    grab = video._grab_indices

    def turned(cap, indices, seek):  # noqa: ANN001, ANN202
        images, reached, seeked = grab(cap, indices, seek)
        return [np.ascontiguousarray(np.rot90(images[0])), *images[1:]], reached, seeked

    monkeypatch.setattr(video, "_grab_indices", turned)
    got = read_frames(path, 15, "uniform", 0)
    first = got.images[0]
    assert first.shape == (240, 320, 3)
    # 240x320 portrait fitted into 320x240: 180 px wide, centred, black bars of 70 px each side
    assert first[:, :70].max() == 0 and first[:, -70:].max() == 0 and first[:, 70:250].any()


def test_the_frame_area_is_read_from_the_container_header(tmp_path, face_image, monkeypatch):
    """The scan's work order reads frame sizes from mp4 and Matroska headers without decoding;
    other containers, files that are not videos and headers too large to read have none."""
    import scanner.video as video

    frames = face_frames(face_image, 5, size=(320, 240))
    assert frame_area(write_clip(tmp_path / "clip.mp4", frames)) == 320 * 240
    assert frame_area(matroska_video_header(tmp_path / "clip.webm", 1920, 1080)) == 1920 * 1080
    assert frame_area(write_avi(tmp_path / "clip.avi", frames)) is None
    assert frame_area(audio_only_mp4(tmp_path / "song.mp4")) is None
    (tmp_path / "notes.mp4").write_text("not a video")
    assert frame_area(tmp_path / "notes.mp4") is None
    assert frame_area(tmp_path / "missing.mp4") is None
    monkeypatch.setattr(video, "AREA_HEADER_BYTES", 64)  # a long video's header is not read
    assert frame_area(tmp_path / "clip.mp4") is None


@pytest.mark.parametrize("make", [audio_only_mp4, audio_only_webm], ids=["mp4", "webm"])
def test_a_file_of_sound_only_is_not_a_video(make, tmp_path):
    path = make(tmp_path / f"song.{make.__name__.rsplit('_', 1)[1]}")
    assert has_video_signature(path)
    with pytest.raises(NotAVideoError, match="no video stream") as e:
        read_frames(path, 15, "random", 0)
    assert "audio" in str(e.value)


def test_an_unreadable_file_is_a_permission_error(tmp_path, face_clip, monkeypatch):
    """Root reads any file, so the refusal is simulated where dfscan opens it."""
    import builtins

    import scanner.video

    path = tmp_path / "locked.mp4"
    path.write_bytes(face_clip.read_bytes())

    def refuse(file, *args, **kw):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kw)

    monkeypatch.setattr(scanner.video, "open", refuse, raising=False)
    with pytest.raises(PermissionError):
        read_frames(path, 15, "random", 0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: chmod 000 cannot lock it")
def test_an_unreadable_file_for_real(tmp_path, face_clip):
    path = tmp_path / "locked.mp4"
    path.write_bytes(face_clip.read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(PermissionError):
            read_frames(path, 15, "random", 0)
    finally:
        path.chmod(0o644)


def test_a_video_cut_short_reports_what_decodes(tmp_path, face_image):
    """An AVI cut at two thirds still declares its 60 frames and decodes 40: the clip is
    sampled from those, the length stays the container's, and the note says what decoded."""
    whole = write_avi(tmp_path / "whole.avi", face_frames(face_image, 60))
    data = whole.read_bytes()
    path = tmp_path / "cut.avi"
    path.write_bytes(data[: len(data) * 2 // 3])
    frames = read_frames(path, 15, "uniform", 0)
    info = frames.info
    assert (info.declared_frames, info.frame_count) == (60, 40)
    assert info.duration_s == pytest.approx(60 / 25)  # the container's length
    assert frames.indices[-1] == 39
    assert [frame_mark(im) for im in frames.images] == list(frames.indices)
    assert "40 of 60 declared frames decode" in info.note
    assert read_frames(whole, 15, "uniform", 0).info.note == ""


def test_an_undecodable_codec_is_named(tmp_path, face_clip):
    path = tmp_path / "av1.mp4"
    path.write_bytes(face_clip.read_bytes())
    retag_mp4(path, b"av01")
    with pytest.raises(DecodeError, match="only 0 of 40 declared frames decode") as e:
        read_frames(path, 15, "random", 0)
    assert "AV1" in str(e.value) and "av01" in str(e.value).lower()


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_a_still_image_named_mp4_is_not_a_video(fmt, tmp_path, face_image):
    ok, data = cv2.imencode("." + fmt, face_image)
    path = tmp_path / "photo.mp4"
    path.write_bytes(data.tobytes())
    with pytest.raises(NotAVideoError, match="single .*image") as e:
        read_frames(path, 15, "random", 0)
    assert fmt.upper() in str(e.value)


@pytest.mark.parametrize("threads", [1, 3])
def test_decoder_threads_are_set_and_decode_the_same_frames(face_clip, threads):
    def threads_of(cap: cv2.VideoCapture) -> float:
        try:
            return cap.get(cv2.CAP_PROP_N_THREADS)
        finally:
            cap.release()

    default = read_frames(face_clip, 15, "random", seed=3)
    video.set_decoder_threads(threads)
    try:
        assert threads_of(video._capture(face_clip)) == threads
        frames = read_frames(face_clip, 15, "random", seed=3)
    finally:
        video.set_decoder_threads(None)
    assert frames.indices == default.indices
    np.testing.assert_array_equal(frames.images, default.images)
    opencvs = threads_of(cv2.VideoCapture(str(face_clip), cv2.CAP_FFMPEG))
    assert threads_of(video._capture(face_clip)) == opencvs


def test_sampled_frames_are_decoded_into_one_array_not_copied(face_clip):
    cap = video._capture(face_clip)
    try:
        images, _, _ = video._grab_indices(cap, np.array([2, 5, 9]), seek=None)
    finally:
        cap.release()
    stacked = video._stacked(images)
    assert stacked.shape == (3, 240, 320, 3) and all(im.base is stacked for im in images)
    assert [frame_mark(im) for im in stacked] == [2, 5, 9]
    reordered = video._stacked(images[::-1])  # its rows, not in order: a copy
    assert reordered.base is None and [frame_mark(im) for im in reordered] == [9, 5, 2]
    copied = video._stacked([im.copy() for im in images])  # not its rows
    assert copied.base is None and [frame_mark(im) for im in copied] == [2, 5, 9]
    assert video._stacked(images[:2]).base is None  # decoding stopped short: a copy
