"""read_face_clip: the one decode + face stage, and its second look inside a face's shot."""

import numpy as np
import pytest

from scanner.clip import StageClock, read_face_clip
from scanner.contract import Preprocessing
from scanner.faces import FaceDetector

from helpers import face_frames, frame_mark, write_clip

CONTRACT = Preprocessing.for_backbone("test_efficientnet")
FACE_FRAMES = 120  # frame marks go up to 127; then 60 frames of a blue wall


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(CONTRACT)


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory, face_image):
    frames = face_frames(face_image, FACE_FRAMES)
    wall = np.full_like(frames[0], (20, 60, 160))
    return write_clip(tmp_path_factory.mktemp("cut") / "cut.mp4", frames + [wall] * 60)


def test_a_sample_across_a_cut_is_taken_again_inside_the_face_shot(cut_clip, detector):
    clock = StageClock()
    clip = read_face_clip(cut_clip, detector, 15, "random", seed=0, clock=clock)
    assert clip.refocused
    indices = list(clip.frames.indices)
    assert len(indices) == 15 and max(indices) < FACE_FRAMES
    assert [frame_mark(im) for im in clip.frames.images] == indices  # decoded what it says
    assert clip.track.in_shot.all() and clip.track.detected.all()
    assert clock.decode > 0 and clock.detect > 0 and clock.crop > 0
    assert clock.frames == 30  # the first sample and the one inside the face's shot


def test_the_first_sample_really_straddled_the_cut(cut_clip, detector):
    """What the test above relies on: seed 0 puts frames on both sides of the cut."""
    from scanner.faces import track_faces
    from scanner.video import read_frames

    frames = read_frames(cut_clip, 15, "random", 0)
    track = track_faces(frames, detector.detect(frames.images), CONTRACT)
    outside = np.asarray(frames.indices)[~track.in_shot]
    assert len(outside) > 0 and outside.min() >= FACE_FRAMES
    assert not track.detected[~track.in_shot].any()


def test_a_single_shot_is_sampled_once(face_clip, detector):
    clock = StageClock()
    clip = read_face_clip(face_clip, detector, 15, "random", seed=0, clock=clock)
    assert not clip.refocused and clip.track.in_shot.all()
    once = clock.detect
    read_face_clip(face_clip, detector, 15, "random", seed=0, clock=clock)
    assert clock.detect > once  # the clock sums over calls


@pytest.fixture(scope="module")
def many_shots_clip(tmp_path_factory, face_image):
    """Six shots of 100 frames: the portrait on three backgrounds, a coloured wall between."""
    frames = []
    for k, wall in enumerate([(20, 60, 160), (160, 40, 40), (40, 150, 60)]):
        shot = face_frames(face_image, 100)
        for f in shot:
            f[16:][(f[16:] == 90).all(axis=-1)] = 60 + 50 * k  # this shot's background
        frames += shot + [np.full_like(shot[0], wall)] * 100
    return write_clip(tmp_path_factory.mktemp("shots") / "shots.mp4", frames)


def test_a_video_of_short_shots_is_judged_inside_one_shot(many_shots_clip, detector):
    from scanner.faces import track_faces
    from scanner.video import read_frames

    first = read_frames(many_shots_clip, 15, "random", 0)
    track = track_faces(first, detector.detect(first.images), CONTRACT, require=False)
    assert track.shot_count >= 5 and 2 <= track.frames_with_face < 5  # no third anywhere
    clip = read_face_clip(many_shots_clip, detector, 15, "random", seed=0)
    assert clip.refocused and clip.track.in_shot.all() and clip.track.detected.all()
    shot = {i // 100 for i in clip.frames.indices}
    assert len(shot) == 1 and shot.pop() % 2 == 0  # one of the portrait's shots


def test_a_face_shot_too_short_for_a_clip_is_too_short(tmp_path, face_image, detector):
    """12 frames of the portrait, then a wall: enough sampled frames show the face, but 15
    frames of its shot do not exist; a mixed clip would be scored on frames without it."""
    from scanner.video import TooShortError

    frames = face_frames(face_image, 12)
    path = write_clip(tmp_path / "short.mp4", frames + [np.full_like(frames[0], 200)] * 13)
    with pytest.raises(TooShortError, match="shot is too short") as e:
        read_face_clip(path, detector, 15, "random", seed=0)
    assert e.value.status == "too_short" and e.value.info.frame_count == 25
    # the row reports what was sampled: 15 frames, the face in those of its first 12 frames
    assert e.value.frames_sampled == 15 and 5 <= e.value.frames_with_face <= 12


def test_a_long_shot_that_fails_the_face_rule_inside_it_is_no_face(cut_clip, detector, monkeypatch):
    """The whole-video sample passes the face rule, the sample inside the face's shot does
    not: the video has no face by the rule as judged in the shot (no_face), not a shot too
    short (the shot is long enough)."""
    from scanner import clip as clip_module
    from scanner.faces import NoFaceError

    real = clip_module._one_pass

    def no_face_inside(path, detector, num_frames, sampling, seed, span, *rest):  # noqa: ANN001, ANN202
        if span is not None:
            raise NoFaceError("face in 2 of 15 sampled frames", 2)
        return real(path, detector, num_frames, sampling, seed, span, *rest)

    monkeypatch.setattr(clip_module, "_one_pass", no_face_inside)
    with pytest.raises(NoFaceError) as e:
        read_face_clip(cut_clip, detector, 15, "random", seed=0)
    assert e.value.status == "no_face" and e.value.frames_with_face == 2
