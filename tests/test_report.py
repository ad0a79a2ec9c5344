import csv
import dataclasses
import json

import cv2
import numpy as np
import pytest

from scanner.report import (
    CSV_FIELDS,
    THUMB_SIZE,
    PersonResult,
    ResultWriter,
    VideoResult,
    crops_dir,
    done_paths,
    neutralise,
    resume_point,
    unneutralise,
)


def person(number: int = 1, score: float = 0.75, frames: int = 2, thumbs: bool = False):
    rng = np.random.default_rng(number)
    return PersonResult(
        person=number,
        score=score,
        label="FAKE" if score >= 0.5 else "REAL",
        indices=tuple(range(1, 4 * frames, 4)),
        boxes=((10.0, 20.0, 50.0, 70.25),) * frames,
        detected=(True,) * (frames - 1) + (False,),
        attention=(1 / frames,) * frames,
        thumbnails=rng.integers(0, 255, (frames, THUMB_SIZE, THUMB_SIZE, 3), np.uint8)
        if thumbs
        else None,
    )


def result(path: str, status: str = "ok", **kw) -> VideoResult:
    base = dict(threshold=0.5, model="m@abc", backend="torch", device="cpu", seconds=1.25)
    if status == "ok":
        base |= dict(score=0.75, label="FAKE", people=(person(),), person=1)
    return VideoResult(path=path, status=status, **(base | kw))


def test_unscored_statuses_carry_no_score():
    with pytest.raises(ValueError, match="exactly when status is ok"):
        VideoResult("a.mp4", "no_face", 0.5, "m", "torch", "cpu", 1.0, score=0.1, label="REAL")
    with pytest.raises(ValueError, match="exactly when status is ok"):
        VideoResult("a.mp4", "ok", 0.5, "m", "torch", "cpu", 1.0)
    with pytest.raises(ValueError, match="status"):
        result("a.mp4", status="weird")


def test_the_csv_keeps_score_and_threshold_exact():
    """Rounded alike, a score just above the threshold would read as equal to it beside a
    REAL label, or the other way round."""
    near = dataclasses.replace(person(score=0.85533781), label="REAL")
    row = result(
        "a.mp4", score=0.85533781, label="REAL", threshold=0.8553378582, people=(near,)
    ).csv_row()
    assert (row["score"], row["threshold"], row["label"]) == ("0.85533781", "0.8553378582", "REAL")
    assert float(row["score"]) < float(row["threshold"])


def test_a_video_is_scored_as_its_named_person():
    two = (person(1, 0.2), person(2, 0.9))
    with pytest.raises(ValueError, match="person 3"):
        result("a.mp4", people=two, person=3, score=0.9)
    with pytest.raises(ValueError, match="its person"):
        result("a.mp4", people=two, person=1, score=0.9, label="FAKE")
    ok = result("a.mp4", people=two, person=2, score=0.9, label="FAKE")
    assert ok.scored.person == 2 and ok.csv_row()["people"] == "2"


def test_formula_cells_are_neutralised():
    for text in ('=HYPERLINK("x")', "+1", "-2", "@SUM(A1)", "\tx"):
        assert neutralise(text) == "'" + text
    assert neutralise("videos/clip.mp4") == "videos/clip.mp4"


TRICKY_NAMES = [
    "'=1+1.mp4",  # a name of its own quote before a formula character
    "''=1+1.mp4",
    "'",
    "''",
    "'plain.mp4",
    "=1+1.mp4",
    "'-",
    "'\t.mp4",
    "a'b.mp4",
    "",
    "plain.mp4",
]


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_neutralising_is_undone_exactly(name):
    """--resume finds a row by its unneutralised path: any other text than the name means
    the video is scanned again and gets a second row."""
    written = neutralise(name)
    assert unneutralise(written) == name
    assert not written.startswith(("=", "+", "-", "@", "\t", "\r"))  # still no formula


def test_ordinary_names_of_an_earlier_csv_read_back_as_written():
    """A CSV written before quotes were doubled: names without a leading quote, the
    neutralised formulas and a quote before anything else read as they did."""
    for cell, name in [("clip.mp4", "clip.mp4"), ("'=x.mp4", "=x.mp4"), ("'abc", "'abc")]:
        assert unneutralise(cell) == name


def test_resume_point_gives_back_every_tricky_name(tmp_path):
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    names = [n for n in TRICKY_NAMES if n]
    with ResultWriter(out, details) as w:
        for name in names:
            w.write(result(name, status="no_face"))
    assert resume_point(out, details).paths == tuple(names)


def test_csv_schema_and_rows(tmp_path):
    out = tmp_path / "r.csv"
    details = tmp_path / "d.jsonl"
    two = (person(1, 0.25), person(2, 0.75))
    with ResultWriter(out, details) as w:
        w.write(result("=cmd|' /C calc'!A0.mp4", people=two, person=2, fps=25.0))
        w.write(result("b.mp4", status="no_face", message="no face", frames_sampled=15))
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert tuple(rows[0].keys()) == CSV_FIELDS
    assert rows[0]["path"].startswith("'=")
    assert rows[0]["score"] == "0.75" and rows[0]["label"] == "FAKE"
    assert (rows[0]["people"], rows[0]["person"]) == ("2", "2")
    assert rows[1]["status"] == "no_face" and rows[1]["score"] == "" and rows[1]["label"] == ""
    assert (rows[1]["people"], rows[1]["person"]) == ("0", "")
    assert rows[1]["frames_sampled"] == "15"
    detail = [json.loads(line) for line in details.read_text().splitlines()]
    assert detail[0]["path"] == "=cmd|' /C calc'!A0.mp4"  # JSON is data, not a spreadsheet
    assert detail[0]["person"] == 2 and detail[0]["score"] == 0.75
    first, second = detail[0]["people"]
    assert (first["person"], first["score"], first["label"]) == (1, 0.25, "REAL")
    assert second["attention"] == [0.5, 0.5] and second["frame_indices"] == [1, 5]
    assert second["times_s"] == [0.04, 0.2] and second["face_detected"] == [True, False]
    assert second["face_boxes"] == [[10.0, 20.0, 50.0, 70.2]] * 2  # rounded to 0.1 pixel
    assert second["frames_with_face"] == 1 and second["crops"] is None  # no thumbnails asked
    assert detail[1]["people"] == [] and detail[1]["person"] is None


def test_resume_appends_and_knows_done_paths(tmp_path):
    out = tmp_path / "r.csv"
    (tmp_path / "a.mp4").touch()
    (tmp_path / "-b.mp4").touch()
    with ResultWriter(out) as w:
        w.write(result(str(tmp_path / "a.mp4")))
    with ResultWriter(out, append=True) as w:
        w.write(result(str(tmp_path / "-b.mp4")))
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("path,status")
    done = done_paths(out)
    assert done == {str((tmp_path / "a.mp4").resolve()), str((tmp_path / "-b.mp4").resolve())}


def test_done_paths_rejects_foreign_csv(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("name,value\nx,1\n")
    with pytest.raises(ValueError, match="path"):
        done_paths(other)
    assert done_paths(tmp_path / "missing.csv") == set()


def test_resume_point_drops_a_row_cut_inside_a_quoted_path(tmp_path):
    """A path holding a quote and a newline is written quoted; a cut just after that newline
    still ends in a newline, but inside quotes: the row is incomplete."""
    out = tmp_path / "r.csv"
    with ResultWriter(out) as w:
        w.write(result("a.mp4"))
        w.write(result('odd "name"\nsecond line.mp4'))
    whole = out.read_bytes()
    assert [r["path"] for r in csv.DictReader(out.open(newline=""))][1].endswith("line.mp4")
    kept = whole.index(b"odd")
    out.write_bytes(whole[: whole.index(b"\n", kept) + 1])
    point = resume_point(out)
    assert point.paths == ("a.mp4",) and point.csv_end == kept - 1
    with ResultWriter(out, append=True) as w:
        w.write(result('odd "name"\nsecond line.mp4'))
    assert out.read_bytes() == whole


def test_crops_are_written_beside_the_details_as_one_strip_per_person(tmp_path):
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    crops = crops_dir(details)
    crops.mkdir()
    (crops / "0123456789abcdef-p1.jpg").write_bytes(b"an earlier run's")
    (crops / "mine.txt").write_text("not dfscan's")
    two = (person(1, 0.25, frames=3, thumbs=True), person(2, 0.75, frames=3, thumbs=True))
    with ResultWriter(out, details) as w:
        w.write(result("a.mp4", people=two, person=2))
    assert crops == tmp_path / "r.crops"
    names = sorted(p.name for p in crops.iterdir())
    assert len(names) == 3 and "mine.txt" in names  # the earlier run's strip is gone
    entries = json.loads(details.read_text())["people"]
    for entry, who in zip(entries, two):
        assert entry["crops"].startswith("r.crops/") and entry["crops"].endswith(
            f"-p{who.person}.jpg"
        )
        strip = cv2.imread(str(tmp_path / entry["crops"]))
        assert strip.shape == (THUMB_SIZE, 3 * THUMB_SIZE, 3)
        rgb = cv2.cvtColor(strip, cv2.COLOR_BGR2RGB).astype(float)
        frame = rgb[:, THUMB_SIZE : 2 * THUMB_SIZE]  # the second crop, in its place
        assert np.abs(frame - who.thumbnails[1]).mean() < np.abs(frame - who.thumbnails[0]).mean()
    with ResultWriter(out, details, append=True) as w:  # resumed: earlier strips stay
        w.write(result("b.mp4", people=two, person=2))
    assert len(list(crops.glob("*.jpg"))) == 4


def test_resume_refuses_a_csv_with_other_columns(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("path,status,score,label,threshold\na.mp4,ok,0.5,FAKE,0.5\n")
    with pytest.raises(ValueError, match="other columns"):
        resume_point(old)
