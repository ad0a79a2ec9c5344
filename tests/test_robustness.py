"""The robustness check rewrites every video through each perturbation and compares the
scans with the unchanged rewrite's."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np

from training import robustness
from training.make_samples import read_video


def _frames(path):
    return np.stack(list(read_video(path)))


def test_perturbations_keep_size_and_length_and_change_detail(face_clip, tmp_path) -> None:
    source = _frames(face_clip)
    control = tmp_path / "reencode.mp4"
    assert robustness.perturb_video(face_clip, control, "reencode")
    same = _frames(control)
    assert same.shape == source.shape
    sharp = cv2.Laplacian(cv2.cvtColor(same[5], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    for name in ("blur", "downscale", "jpeg"):
        out = tmp_path / f"{name}.mp4"
        assert robustness.perturb_video(face_clip, out, name)
        frames = _frames(out)
        assert frames.shape == source.shape
        assert np.abs(frames.astype(int) - same).mean() > 0.3, name
        if name != "jpeg":  # blocking adds edges; the others take detail away
            lap = cv2.Laplacian(cv2.cvtColor(frames[5], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
            assert lap < sharp, name
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"not a video")
    assert not robustness.perturb_video(empty, tmp_path / "none.mp4", "blur")
    assert not (tmp_path / "none.mp4").exists()


def test_score_shift_counts_moves_against_the_control() -> None:
    control = {"0": 0.1, "1": 0.9, "2": 0.4}
    blurred = {"0": 0.7, "1": 0.8, "3": 0.5}  # video 2 unscored, 3 has no control
    labels = {"0": 0, "1": 1, "2": 0, "3": 0}
    s = robustness.score_shift("blur", control, blurred, labels, threshold=0.5)
    assert s.n == 2 and s.verdicts_changed == 1
    assert abs(s.mean_abs_change - 0.35) < 1e-9 and abs(s.real_mean_change - 0.6) < 1e-9
    assert s.real_flagged == 1 and s.fakes_flagged == 1


def test_robustness_reports_every_perturbation(face_clip, tiny_checkpoint, tmp_path, capsys):
    shutil.copy(face_clip, tmp_path / "a.mp4")
    shutil.copy(face_clip, tmp_path / "b.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"broken")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.mp4,real\nb.mp4,fake\nbad.mp4,real\n")
    out = tmp_path / "report.json"
    argv = ["--weights", str(tiny_checkpoint), "--data", str(manifest), "--json", str(out)]
    assert robustness.main([*argv, "--perturb", "blur,jpeg"]) == 0
    report = json.loads(out.read_text())
    assert list(report["perturbations"]) == ["reencode", "blur", "jpeg"]
    for p in report["perturbations"].values():
        assert len(p["videos"]) == 2  # the broken file is never given a score
        assert p["shift"]["n"] == 2 and p["groups"][0]["n"] == 2
        assert all(0 <= v["score"] <= 1 for v in p["videos"])
    assert report["perturbations"]["reencode"]["shift"]["mean_abs_change"] == 0
    assert "against the control" in capsys.readouterr().out
    assert robustness.main([*argv, "--perturb", "sepia"]) == 2
