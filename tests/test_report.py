import csv
import json

import pytest

from scanner.report import (
    CSV_FIELDS,
    ResultWriter,
    VideoResult,
    done_paths,
    neutralise,
    resume_point,
)


def result(path: str, status: str = "ok", **kw) -> VideoResult:
    base = dict(threshold=0.5, model="m@abc", backend="torch", device="cpu", seconds=1.25)
    if status == "ok":
        base |= dict(score=0.75, label="FAKE")
    return VideoResult(path=path, status=status, **(base | kw))


def test_unscored_statuses_carry_no_score():
    with pytest.raises(ValueError):
        VideoResult("a.mp4", "no_face", 0.5, "m", "torch", "cpu", 1.0, score=0.1, label="REAL")
    with pytest.raises(ValueError):
        VideoResult("a.mp4", "ok", 0.5, "m", "torch", "cpu", 1.0)
    with pytest.raises(ValueError, match="status"):
        result("a.mp4", status="weird")


def test_formula_cells_are_neutralised():
    for text in ('=HYPERLINK("x")', "+1", "-2", "@SUM(A1)", "\tx"):
        assert neutralise(text) == "'" + text
    assert neutralise("videos/clip.mp4") == "videos/clip.mp4"


def test_csv_schema_and_rows(tmp_path):
    out = tmp_path / "r.csv"
    details = tmp_path / "d.jsonl"
    with ResultWriter(out, details) as w:
        w.write(result("=cmd|' /C calc'!A0.mp4", attention=(0.25, 0.75), indices=(1, 5)))
        w.write(result("b.mp4", status="no_face", message="no face", frames_sampled=15))
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert tuple(rows[0].keys()) == CSV_FIELDS
    assert rows[0]["path"].startswith("'=")
    assert rows[0]["score"] == "0.75" and rows[0]["label"] == "FAKE"
    assert rows[1]["status"] == "no_face" and rows[1]["score"] == "" and rows[1]["label"] == ""
    assert rows[1]["frames_sampled"] == "15"
    detail = [json.loads(line) for line in details.read_text().splitlines()]
    assert detail[0]["attention"] == [0.25, 0.75] and detail[0]["frame_indices"] == [1, 5]
    assert detail[0]["path"] == "=cmd|' /C calc'!A0.mp4"  # JSON is data, not a spreadsheet


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
