"""training.evaluate --rescore: an earlier report summarised again over a corrected manifest."""

import json

import pytest

from training.evaluate import main


@pytest.fixture
def earlier(tmp_path):
    """A report of four videos (two real, two fake) and the files it names."""
    names = {"r1.mp4": (0, 0.1), "r2.mp4": (0, 0.8), "f1.mp4": (1, 0.7), "f2.mp4": (1, 0.9)}
    for name in names:
        (tmp_path / name).write_bytes(b"")
    report = {
        "weights": "w.safetensors",
        "model": "m",
        "data": "old.csv",
        "split": "all",
        "threshold": 0.75,
        "groups": [],
        "unscored": [{"path": str(tmp_path / "gone.mp4"), "status": "no_face", "message": ""}],
        "videos": [
            {"path": str(tmp_path / n), "group": "g", "label": lab, "score": s}
            for n, (lab, s) in names.items()
        ],
    }
    (tmp_path / "gone.mp4").write_bytes(b"")
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def manifest(tmp_path, rows):
    path = tmp_path / "fixed.csv"
    lines = ["path,label,group,source"] + [f"{n},{lab},{g},{n}" for n, lab, g in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_real_clip_taken_out_changes_the_figures_not_the_scores(earlier, tmp_path, capsys):
    fixed = manifest(
        tmp_path,
        [
            ("r1.mp4", "real", "real"),
            ("f1.mp4", "fake", "swap"),
            ("f2.mp4", "fake", "swap"),
            ("gone.mp4", "real", "real"),
        ],
    )
    out = tmp_path / "new.json"
    assert main(["--rescore", str(earlier), "--data", str(fixed), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    groups = {g["group"]: g for g in report["groups"]}
    assert groups["all"]["auc"] == 1.0  # r2 (0.8, above f1) was the only real clip misranked
    assert groups["all"]["n_real"] == 1 and groups["swap"]["n_fake"] == 2  # the new groups
    assert sorted(v["score"] for v in report["videos"]) == [0.1, 0.7, 0.9]
    assert report["threshold"] == 0.75 and report["rescored_from"] == str(earlier)
    assert [u["status"] for u in report["unscored"]] == ["no_face"]
    assert "1 videos not scored" in capsys.readouterr().out


def test_a_video_the_report_never_scored_is_refused(earlier, tmp_path, capsys):
    (tmp_path / "new.mp4").write_bytes(b"")
    fixed = manifest(tmp_path, [("r1.mp4", "real", "real"), ("new.mp4", "fake", "swap")])
    assert main(["--rescore", str(earlier), "--data", str(fixed)]) == 2
    assert "has no score for 1 of the 2 videos" in capsys.readouterr().err


def test_a_report_made_from_another_folder_is_matched_by_the_path_s_end(earlier, tmp_path):
    """Relative paths written from another working directory: ``x.mp4`` of a report made
    inside the data folder is the manifest's ``DATA/x.mp4``."""
    report = json.loads(earlier.read_text())
    for v in report["videos"] + report["unscored"]:
        v["path"] = v["path"].rsplit("/", 1)[1]
    earlier.write_text(json.dumps(report), encoding="utf-8")
    fixed = manifest(tmp_path, [("r1.mp4", "real", "real"), ("f2.mp4", "fake", "swap")])
    out = tmp_path / "new.json"
    assert main(["--rescore", str(earlier), "--data", str(fixed), "--json", str(out)]) == 0
    assert sorted(v["score"] for v in json.loads(out.read_text())["videos"]) == [0.1, 0.9]


def test_a_relative_path_that_ends_two_videos_scores_neither(earlier, tmp_path, capsys):
    report = json.loads(earlier.read_text())
    for v in report["videos"] + report["unscored"]:
        v["path"] = v["path"].rsplit("/", 1)[1]
    earlier.write_text(json.dumps(report), encoding="utf-8")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "r1.mp4").write_bytes(b"")
    fixed = manifest(tmp_path, [("r1.mp4", "real", "real"), ("other/r1.mp4", "real", "real")])
    assert main(["--rescore", str(earlier), "--data", str(fixed)]) == 2
    assert "has no score for 2 of the 2 videos" in capsys.readouterr().err
