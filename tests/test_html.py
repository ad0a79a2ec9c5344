"""The HTML report: made from a details file, self-contained, and as a browser shows it."""

from __future__ import annotations

import base64
import csv
import json
import logging
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser import CHROMIUM, WHY_NOT, Cards, open_page, screenshot
from click.testing import CliRunner

from scanner.cli import main
from scanner.html import ATTENTION_LABEL, ReportError, render
from scanner.report import THUMB_SIZE, PersonResult, ResultWriter, VideoResult, crops_strip

FRAMES = 15
A, B, GONE = ("a" * 16, "b" * 16, "c" * 16)  # hashes of paths, as ResultWriter names strips


def person(number: int, score: float, crops: str | None, fps: float = 25.0) -> dict:
    indices = list(range(3, 3 + 7 * FRAMES, 7))
    attention = np.linspace(1, 2, FRAMES) / np.linspace(1, 2, FRAMES).sum()
    return {
        "person": number,
        "score": score,
        "label": "FAKE" if score >= 0.5 else "REAL",
        "frames_with_face": FRAMES - 1,
        "frame_indices": indices,
        "times_s": [round(i / fps, 3) for i in indices],
        "face_boxes": [[10.0, 20.0, 110.0, 140.0]] * FRAMES,
        "face_detected": [True] * (FRAMES - 1) + [False],
        "attention": [round(float(a), 6) for a in attention],
        "crops": crops,
    }


def video(path: str, status: str = "ok", people: list | None = None, **kw) -> dict:
    people = people or []
    worst = max(people, key=lambda p: p["score"]) if people else None
    return {
        "path": path,
        "status": status,
        "score": worst["score"] if worst else None,
        "label": worst["label"] if worst else None,
        "person": worst["person"] if worst else None,
        "threshold": 0.5,
        "message": "",
        "frames_sampled": FRAMES,
        "width": 640,
        "height": 360,
        "fps": 25.0,
        "duration_s": 4.2,
        "model": "test@abc",
        "seconds": 1.0,
        "identity": "position",
        "faces_left_unscored": 0,
        "people": people,
    } | kw


@pytest.fixture(scope="module")
def details(tmp_path_factory, face_image) -> Path:
    """A details file of four videos as a scan writes it, crops included."""
    folder = tmp_path_factory.mktemp("report")
    crops = folder / "r.crops"
    crops.mkdir()
    face = cv2.resize(face_image[40:220, 130:310], (THUMB_SIZE, THUMB_SIZE))
    for name in (f"{A}-p1", f"{A}-p2", f"{B}-p1"):
        shades = np.stack([np.clip(face.astype(int) + 6 * t, 0, 255) for t in range(FRAMES)])
        (crops / f"{name}.jpg").write_bytes(crops_strip(shades.astype(np.uint8)))
    lines = [
        video("clips/real one.mp4", people=[person(1, 0.21, f"r.crops/{B}-p1.jpg")]),
        video(
            "clips/<two> & people.mp4",
            people=[person(1, 0.35, f"r.crops/{A}-p1.jpg"), person(2, 0.92, f"r.crops/{A}-p2.jpg")],
            identity="position+dlib_descriptor",
        ),
        video(
            "clips/wall.mp4",
            status="no_face",
            message="face found in 1 of 15 sampled frames, 5 needed",
        ),
        video("clips/gone.mp4", people=[person(1, 0.6, f"r.crops/{GONE}-p1.jpg")]),
    ]
    path = folder / "r.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def report(details) -> Path:
    out = details.with_name("report.html")
    res = CliRunner().invoke(main, ["report", str(details), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "4 videos (ok 3, no_face 1): FAKE 2, REAL 1, not scored 1" in res.output
    return out


def test_one_card_per_video_most_suspicious_first(report):
    page = report.read_text(encoding="utf-8")
    cards = Cards(page).cards
    assert [c["path"] for c, _ in cards] == [
        "clips/<two> & people.mp4",  # 0.92, its person 2
        "clips/gone.mp4",  # 0.6
        "clips/real one.mp4",  # 0.21
        "clips/wall.mp4",  # not scored
    ]
    assert [c["verdict"] for c, _ in cards] == ["FAKE", "FAKE", "REAL", "unscored"]
    assert "&lt;two&gt; &amp; people.mp4" in page  # escaped, not markup
    assert "face found in 1 of 15 sampled frames, 5 needed" in page  # the unscored video's why
    assert ATTENTION_LABEL in page and "not a map of where a fake was found" in page


def test_each_person_shows_fifteen_crops_with_attention_frames_and_times(report):
    page = report.read_text(encoding="utf-8")
    two = page[page.index('data-path="clips/&lt;two&gt;') : page.index('data-path="clips/gone')]
    people = re.findall(r'<section class="person" data-person="(\d)">(.*?)</section>', two)
    assert [p for p, _ in people] == ["1", "2"]
    for _, section in people:
        assert section.count('class="crop ') == FRAMES
        assert section.count('<div class="att"') == FRAMES
        assert "#3<br>0.12 s" in section and "#101<br>4.04 s" in section  # index and time
        assert section.count('class="frame missed"') == 1  # the undetected frame is faded
    assert "the video's score" in people[1][1] and "the video's score" not in people[0][1]
    assert "person 2 of 2" in two and "0.920" in two
    # The missing strip: frames, attention and indices without pictures, and no failure.
    gone = page[page.index('data-path="clips/gone') : page.index('data-path="clips/real')]
    assert gone.count("no crop") == FRAMES and gone.count('<div class="att"') == FRAMES


def test_the_page_is_self_contained(report):
    page = report.read_text(encoding="utf-8")
    assert page.count("data:image/jpeg;base64,") == 3  # each strip once, as a CSS class
    assert not re.search(r"(src|href|url)\s*[=(]\s*[\"']?(https?:|//)", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<svg" in page and "threshold 0.500" in page  # the histogram


def test_report_command_errors(details, tmp_path):
    out = tmp_path / "report.html"
    runner = CliRunner()
    res = runner.invoke(main, ["report", str(details), "--out", str(out)])
    assert res.exit_code == 0, res.output
    again = runner.invoke(main, ["report", str(details), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    table = tmp_path / "r.csv"
    table.write_text("path,status\na.mp4,ok\n")
    res = runner.invoke(main, ["report", str(table), "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 1 and "--details" in res.output and "not JSON" in res.output
    res = runner.invoke(main, ["report", str(details), "--out", str(details)])
    assert res.exit_code == 2 and "details file" in res.output


def test_a_cut_last_line_and_old_details_still_make_a_report(details, tmp_path):
    old = {  # a details line written before per-person scoring
        "path": "old.mp4",
        "status": "ok",
        "score": 0.7,
        "label": "FAKE",
        "threshold": 0.5,
        "message": "",
        "frame_indices": [1, 2],
        "face_boxes": [[0, 0, 9, 9]] * 2,
        "face_detected": [True, True],
        "attention": [0.4, 0.6],
    }
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(old) + "\n" + details.read_text()[:-40], encoding="utf-8")
    page, summary = render(mixed)
    assert summary.startswith("4 videos")  # the cut fourth line is left out
    assert [c["path"] for c, _ in Cards(page).cards][:2] == ["clips/<two> & people.mp4", "old.mp4"]
    assert page.count('<section class="person"') == 1 + 1 + 2  # old.mp4's one face


def test_scan_writes_the_report(face_clip, noface_clip, tiny_checkpoint, tmp_path):
    out, report = tmp_path / "r.csv", tmp_path / "report.html"
    args = ["scan", str(face_clip), str(noface_clip), "--weights", str(tiny_checkpoint)]
    args += ["--out", str(out), "--no-progress"]
    res = CliRunner().invoke(main, [*args, "--report", str(report)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "report.html"]
    page = report.read_text(encoding="utf-8")
    cards = Cards(page).cards
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert [c["path"] for c, _ in cards] == [r["path"] for r in rows]  # ok, then no_face
    assert page.count("data:image/jpeg;base64,") == 1
    assert f"2 videos from {out}" in page and "dfscan-report-" not in page  # not the scratch file
    res = CliRunner().invoke(main, [*args, "--report", str(report), "--resume"])
    assert res.exit_code == 2 and "needs --details" in res.output
    res = CliRunner().invoke(main, [*args, "--overwrite", "--report", str(out)])
    assert res.exit_code == 2 and "same file" in res.output
    res = CliRunner().invoke(main, [*args, "--overwrite", "--report", str(report)])
    assert res.exit_code == 0, res.output  # replaced along with --out
    details = tmp_path / "d.jsonl"
    res = CliRunner().invoke(
        main, [*args, "--overwrite", "--report", str(report), "--details", str(details)]
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "d.crops").glob("*.jpg"))) == 1


def write_details(path: Path, *entries: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    return path


def test_only_strips_in_the_crops_folder_are_inlined(tmp_path, caplog):
    """A details file from someone else must not make the report carry a local file (an SSH
    key) to whoever it is shared with: an absolute path, '..', a name the scan never writes
    or a link out of the crops folder shows the person without pictures, with a warning."""
    secret = tmp_path / "id_rsa"
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    details = tmp_path / "scan" / "r.jsonl"
    crops = details.parent / "r.crops"
    crops.mkdir(parents=True)
    strip = crops_strip(np.full((FRAMES, THUMB_SIZE, THUMB_SIZE, 3), 90, np.uint8))
    (crops / f"{A}-p1.jpg").write_bytes(strip)
    (crops / "notes.jpg").write_bytes(secret.read_bytes())  # in the folder, not a strip's name
    os.symlink(secret, crops / f"{B}-p1.jpg")  # a strip's name, linking out
    hostile = [
        str(secret),
        "../id_rsa",
        "r.crops/../../id_rsa",
        f"r.crops/{B}-p1.jpg",
        "r.crops/notes.jpg",
        f"r.crops/{A}-p1.jpg/../../../id_rsa",
        f"other.crops/{A}-p1.jpg",
        f"r.crops/{A}-p1.jpg\n",
        ["r.crops", f"{A}-p1.jpg"],
    ]
    entries = [video("good.mp4", people=[person(1, 0.9, f"r.crops/{A}-p1.jpg")])]
    entries += [video(f"bad{i}.mp4", people=[person(1, 0.1, c)]) for i, c in enumerate(hostile)]
    with caplog.at_level(logging.WARNING, logger="scanner.html"):
        page, summary = render(write_details(details, *entries))
    assert summary.startswith(f"{len(entries)} videos")
    uris = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    assert [base64.b64decode(u) for u in uris] == [strip]  # the real strip only
    assert base64.b64encode(secret.read_bytes())[:24].decode() not in page
    assert page.count("no crop") == len(hostile) * FRAMES
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == len(hostile)
    renamed = details.with_name("renamed.jsonl")  # its crops still in r.crops/ beside it
    renamed.write_bytes(details.read_bytes())
    page, _ = render(renamed)
    uris = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    assert [base64.b64decode(u) for u in uris] == [strip]


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and its text, as a browser parses it."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)> x}body{color:red'


def test_every_text_of_a_crafted_details_file_stays_text(tmp_path):
    """The page's policy allows inline script (its filters), so a tag or attribute a details
    file smuggles in would run: every text field lands escaped, labels become class names
    only as letters and digits."""
    one = person(1, 0.9, None) | {"label": XSS}
    entries = [
        video(XSS, people=[one], label=XSS, message=XSS, model=XSS, identity=XSS),
        video("two.mp4", people=[person(1, 0.2, None), person(2, 0.7, None) | {"label": XSS}]),
    ]
    page, _ = render(write_details(tmp_path / "r.jsonl", *entries))
    parsed = Tags(page)
    assert [t for t, _ in parsed.tags].count("script") == 1  # the page's own
    assert "img" not in [t for t, _ in parsed.tags]
    assert not [a for _, attrs in parsed.tags for a in attrs if a.startswith("on")]
    for _, attrs in parsed.tags:
        for name in attrs.get("class", "").split():
            assert re.fullmatch(r"[A-Za-z0-9_-]+", name), name
    text = "".join(parsed.text)
    assert text.count(XSS) >= 5  # path, label... shown as they are
    assert "color:red" not in page.split("</style>")[0]  # nothing added to the style sheet
    assert {c["path"] for c, _ in Cards(page).cards} == {XSS, "two.mp4"}


BAD_FIELDS = [
    ("status", XSS),  # none a scan writes
    ("person", XSS),
    ("width", XSS),
    ("height", "360<b>"),
    ("frames_sampled", XSS),
    ("faces_left_unscored", "2<script>"),
    ("score", "0.9<script>"),
    ("threshold", float("nan")),
    ("fps", "25<b>"),
    ("identity", ["<b>"]),
    ("people", XSS),
    ("people[1].person", "<script>alert(1)</script>"),
    ("people[1].frame_indices", [XSS]),
    ("people[1].attention", ["0.5<b>"]),
    ("people[1].times_s", [XSS]),
    ("people[1].score", True),
    ("people[1].label", 1),
    ("duration_s", 10**400),  # no float: an OverflowError, not a report
    ("people[1].person", -(10**400)),
]


@pytest.mark.parametrize(
    ("field", "value"), BAD_FIELDS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_FIELDS)]
)
def test_a_field_not_of_its_type_is_a_report_error(field, value, tmp_path):
    """Numbers are shown as the numbers a scan writes, so one that is not (markup in a
    width, a person named by a script) makes the report fail with where, not a page."""
    entry = video("a.mp4", people=[person(1, 0.9, None)])
    if field.startswith("people[1]."):
        entry["people"][0][field.split(".")[1]] = value
    else:
        entry[field] = value
    details = write_details(tmp_path / "r.jsonl", video("fine.mp4"), entry)
    with pytest.raises(ReportError, match=rf"line 2 .*{re.escape(field)}"):
        render(details)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", str(details), "--out", str(out)])
    assert res.exit_code == 1 and field in res.output and not out.exists(), res.output


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=WHY_NOT)


@needs_chromium
def test_a_browser_shows_every_card_without_console_errors(report, tmp_path):
    page = open_page(report)
    assert page.console == [], page.console
    cards = Cards(page.dom)
    assert cards.body.get("data-ready") == "1"  # the inline script ran to its end
    assert len(cards.cards) == 4 and not any(hidden for _, hidden in cards.cards)
    shot = screenshot(report, tmp_path / "report.png", 1000, 900)
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (900, 1000) and image.std() > 20  # not a blank page


@needs_chromium
def test_filters_and_order_work_in_the_browser(report):
    page = open_page(report, "status=ok&verdict=FAKE&sort=path")
    assert page.console == [], page.console
    cards = Cards(page.dom).cards
    shown = [c["path"] for c, hidden in cards if not hidden]
    assert shown == ["clips/<two> & people.mp4", "clips/gone.mp4"]
    assert [c["path"] for c, _ in cards] == sorted(c["path"] for c, _ in cards)
    assert "2 of 4 videos shown" in page.dom
    unscored = Cards(open_page(report, "verdict=unscored").dom).cards
    assert [c["path"] for c, hidden in unscored if not hidden] == ["clips/wall.mp4"]


def test_a_score_far_out_of_range_is_drawn_at_the_histogram_s_end(tmp_path):
    details = write_details(
        tmp_path / "r.jsonl", video("huge.mp4", people=[person(1, 1e308, None)])
    )
    page, summary = render(details)
    assert summary.startswith("1 video (ok 1)") and "huge.mp4" in page


def test_a_score_beside_the_threshold_is_told_apart_and_binned_on_its_side(tmp_path):
    """0.4996 (REAL) and 0.5 (FAKE) against a threshold of 0.5: the cards show enough digits
    to tell them apart, and the histogram bins a score on an edge above it, with the
    threshold's side it is on."""
    near = person(1, 0.4996, None)
    details = write_details(
        tmp_path / "r.jsonl",
        video("near.mp4", people=[near]),
        video("at.mp4", people=[person(1, 0.5, None)]),
    )
    page, summary = render(details)
    assert "score 0.4996 (threshold 0.5000" in page and "score 0.500 (threshold 0.500" in page
    assert "</span> 0.4996 <span" in page  # the person's heading too
    bars = re.findall(r"<title>(\d+) videos? scored ([\d.]+) to ([\d.]+)</title>", page)
    assert bars == [("1", "0.45", "0.50"), ("1", "0.50", "0.55")]
    assert summary == "2 videos (ok 2): FAKE 1, REAL 1"


def test_the_score_bar_is_inside_the_heading_paragraph(tmp_path):
    """The meter is phrasing content (a span): a block inside <p class="head"> would close
    the paragraph early in a browser and leave a stray empty one."""
    details = write_details(tmp_path / "r.jsonl", video("a.mp4", people=[person(1, 0.7, None)]))
    page, _ = render(details)
    head = re.search(r'<p class="head">(.*?)</p>', page).group(1)
    assert 'class="meter"' in head and "<div" not in head


def scored(path: str, fps: float = 25.0, colour: int = 0) -> VideoResult:
    """An ok result of one person seen in two frames, crops of one colour."""
    face = PersonResult(
        person=1,
        score=0.7,
        label="FAKE",
        indices=(0, 5),
        boxes=((0.0, 0.0, 10.0, 10.0),) * 2,
        detected=(True, True),
        attention=(0.5, 0.5),
        thumbnails=np.full((2, THUMB_SIZE, THUMB_SIZE, 3), colour, np.uint8),
    )
    return VideoResult(
        path=path,
        status="ok",
        threshold=0.5,
        model="test@abc",
        backend="torch",
        device="cpu",
        seconds=1.0,
        score=0.7,
        label="FAKE",
        people=(face,),
        person=1,
        fps=fps,
    )


def test_a_video_without_a_frame_rate_still_makes_a_report(tmp_path):
    """OpenCV's NaN frame rate of a broken file (the scan now reads it as none declared; a
    result made through the API may still carry it): the details line has no frame times,
    not NaN ones the report would refuse."""
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    with ResultWriter(out, details) as writer:
        writer.write(scored("v.mp4", fps=float("nan")))
    entry = json.loads(details.read_text(encoding="utf-8"))
    assert entry["people"][0]["times_s"] is None
    page, summary = render(details)
    assert summary.startswith("1 video (ok 1)")


def test_a_scan_resumed_from_another_folder_keeps_each_videos_crops(tmp_path, monkeypatch):
    """Two videos both named clip.mp4 relative to the folder each run started in: the
    resumed run's crops do not replace the first run's (the strips are named after the
    file, not the text naming it)."""
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    for day, colour in (("day1", 40), ("day2", 220)):
        (tmp_path / day).mkdir()
        (tmp_path / day / "clip.mp4").write_bytes(b"")
        monkeypatch.chdir(tmp_path / day)
        with ResultWriter(out, details, append=day == "day2") as writer:
            writer.write(scored("clip.mp4", colour=colour))
    entries = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    strips = [tmp_path / e["people"][0]["crops"] for e in entries]
    assert len(set(strips)) == 2
    means = [cv2.imread(str(s)).mean() for s in strips]
    assert abs(means[0] - 40) < 5 and abs(means[1] - 220) < 5
