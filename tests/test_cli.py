"""The `dfscan` command end to end through click's test runner, on real bad inputs."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from scanner.cli import main

from helpers import (
    HOSTILE_STATUSES,
    face_frames,
    rotate_mp4,
    write_avi,
    write_clip,
    write_hostile_files,
)


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory, face_image, face_clip, noface_clip):
    d = write_hostile_files(tmp_path_factory.mktemp("videos"), face_image, face_clip, noface_clip)
    stored = [np.ascontiguousarray(np.rot90(f)) for f in face_frames(face_image, 20)]
    rotate_mp4(write_clip(d / "rotated.mp4", stored), 90)
    big = cv2.resize(face_image, (2160, 2160))
    frame = np.zeros((2160, 3840, 3), np.uint8)
    frame[:, 840:3000] = big
    write_clip(d / "uhd_4k.mp4", [np.roll(frame, 4 * i, axis=1) for i in range(16)])
    return d


EXPECTED = HOSTILE_STATUSES | {"rotated.mp4": "ok", "uhd_4k.mp4": "ok"}


@pytest.fixture(scope="module")
def scanned(video_dir, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "results.csv"
    details = out.with_suffix(".jsonl")
    args = ["scan", str(video_dir), str(video_dir), "--weights", str(tiny_checkpoint)]
    args += ["--out", str(out), "--details", str(details), "--batch-size", "3", "--no-progress"]
    result = CliRunner().invoke(main, args)
    return result, out, details


def test_every_input_gets_the_right_status(scanned, video_dir):
    result, out, _ = scanned
    assert result.exit_code == 3, result.output  # some inputs failed to decode
    rows = rows_of(out)
    got = {os.path.relpath(r["path"], video_dir): r["status"] for r in rows}
    assert got == EXPECTED  # each file once, although the directory was given twice


def test_scores_only_for_scored_videos(scanned):
    _, out, _ = scanned
    for r in rows_of(out):
        if r["status"] == "ok":
            assert 0.0 <= float(r["score"]) <= 1.0
            assert r["label"] == ("FAKE" if float(r["score"]) >= 0.5 else "REAL")
            assert r["frames_sampled"] == "15" and int(r["frames_with_face"]) >= 5
            assert r["model"].startswith("test-test_efficientnet@")
            # --backend auto on the CPU: the checkpoint's graph, exported once, on onnxruntime
            assert (r["backend"], r["device"]) == ("onnx", "cpu")
        else:
            assert r["score"] == "" and r["label"] == "" and r["message"]


def test_video_properties_are_reported(scanned):
    _, out, _ = scanned
    rows = {os.path.basename(r["path"]): r for r in rows_of(out)}
    assert (rows["portrait.mp4"]["width"], rows["portrait.mp4"]["height"]) == ("240", "360")
    assert (rows["rotated.mp4"]["width"], rows["rotated.mp4"]["height"]) == ("320", "240")
    assert (rows["uhd_4k.mp4"]["width"], rows["uhd_4k.mp4"]["height"]) == ("3840", "2160")
    assert rows["short.mp4"]["fps"] == "25" and rows["short.mp4"]["duration_s"] == "0.4"


def test_details_hold_frames_boxes_and_attention(scanned):
    _, out, details = scanned
    lines = [json.loads(x) for x in details.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(EXPECTED)
    ok = [x for x in lines if x["status"] == "ok"]
    for x in ok:
        assert len(x["people"]) == 1 and x["person"] == 1  # one face in each clip
        (face,) = x["people"]
        assert len(face["frame_indices"]) == 15 and len(face["face_boxes"]) == 15
        assert len(face["times_s"]) == 15 and face["times_s"][0] >= 0
        assert sum(face["attention"]) == pytest.approx(1.0, abs=1e-4)
        assert face["score"] == x["score"] and face["label"] == x["label"]
        crops = details.parent / face["crops"]
        assert crops.parent.name == details.stem + ".crops" and crops.stat().st_size > 1000
    assert all(x["people"] == [] and x["person"] is None for x in lines if x["status"] != "ok")


def test_scores_are_reproducible(video_dir, tiny_checkpoint, tmp_path):
    clip = video_dir / "with spaces" / "ünïcode" / "face clip.mp4"
    scores = []
    for name in ("a.csv", "b.csv"):
        out = tmp_path / name
        res = CliRunner().invoke(
            main, ["scan", str(clip), "--weights", str(tiny_checkpoint), "--out", str(out)]
        )
        assert res.exit_code == 0, res.output
        scores.append(rows_of(out)[0]["score"])
    assert scores[0] == scores[1] != ""


@pytest.mark.parametrize("sampling", ["uniform", "keyframe", "subsequence", "sequential"])
def test_every_table4_sampling_scans(sampling, face_clip, tiny_checkpoint, tmp_path):
    out, details = tmp_path / "s.csv", tmp_path / "s.jsonl"
    args = ["scan", str(face_clip), "--weights", str(tiny_checkpoint), "--out", str(out)]
    args += ["--details", str(details), "--sampling", sampling, "--no-progress"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert rows_of(out)[0]["status"] == "ok"
    idx = json.loads(details.read_text(encoding="utf-8"))["people"][0]["frame_indices"]
    steps = np.diff(idx).tolist()
    assert len(idx) == 15 and min(steps) >= 1
    if sampling == "sequential":
        assert steps == [1] * 14
    if sampling == "subsequence":
        assert steps.count(1) == 12  # three runs of five
    if sampling == "uniform":
        assert idx == np.linspace(0, 39, 15).round().astype(int).tolist()


def test_resume_skips_finished_videos(video_dir, tiny_checkpoint, tmp_path):
    out = tmp_path / "r.csv"
    base = ["--weights", str(tiny_checkpoint), "--out", str(out), "--no-progress"]
    first = CliRunner().invoke(main, ["scan", str(video_dir / "portrait.mp4"), *base])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, ["scan", str(video_dir / "portrait.mp4"), *base])
    assert again.exit_code == 2 and "--resume" in again.output
    more = [str(video_dir / "portrait.mp4"), str(video_dir / "short.mp4")]
    resumed = CliRunner().invoke(main, ["scan", *more, *base, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    rows = rows_of(out)
    assert [os.path.basename(r["path"]) for r in rows] == ["portrait.mp4", "short.mp4"]


def test_threshold_override(video_dir, tiny_checkpoint, tmp_path):
    out = tmp_path / "r.csv"
    clip = str(video_dir / "portrait.mp4")
    res = CliRunner().invoke(
        main,
        ["scan", clip, "--weights", str(tiny_checkpoint), "--out", str(out), "--threshold", "0"],
    )
    assert res.exit_code == 0, res.output
    row = rows_of(out)[0]
    assert float(row["threshold"]) == 0 and row["label"] == "FAKE"


def test_without_weights_or_default_model_says_what_to_do(video_dir, tmp_path, monkeypatch):
    import scanner.models

    monkeypatch.setattr(scanner.models, "default_weights", lambda: None)
    res = CliRunner().invoke(main, ["scan", str(video_dir), "--out", str(tmp_path / "r.csv")])
    assert res.exit_code == 2
    assert "--weights" in res.output and "no default model" in res.output


def test_bad_checkpoint_is_a_clear_error(video_dir, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("garbage")
    res = CliRunner().invoke(
        main, ["scan", str(video_dir), "--weights", str(bad), "--out", str(tmp_path / "r.csv")]
    )
    assert res.exit_code == 1
    assert "cannot read checkpoint" in res.output


def test_bad_arguments(video_dir, tiny_checkpoint, tmp_path):
    base = ["scan", str(video_dir), "--weights", str(tiny_checkpoint)]
    out = ["--out", str(tmp_path / "r.csv")]
    assert CliRunner().invoke(main, [*base, *out, "--device", "tpu"]).exit_code == 2
    assert CliRunner().invoke(main, [*base, *out, "--threshold", "1.5"]).exit_code == 2
    missing = CliRunner().invoke(main, ["scan", str(tmp_path / "nope"), *out])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_empty_directory(tiny_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(
        main,
        [
            "scan",
            str(tmp_path / "empty"),
            "--weights",
            str(tiny_checkpoint),
            "--out",
            str(tmp_path / "r.csv"),
        ],
    )
    assert res.exit_code == 1 and "no video files" in res.output


# What `dfscan --help` and `dfscan scan --help` must not import: the packages above the scanner
# and the heavy libraries that only running a command needs.
NOT_FOR_HELP = ("export", "benchmarks", "training", "torch", "onnx", "onnxruntime", "cv2", "timm")


@pytest.mark.parametrize("args", [["--help"], ["scan", "--help"]])
def test_help_imports_no_runtime_and_no_upper_package(args):
    """In a fresh interpreter, as the installed command runs: help is click alone."""
    probe = (
        "import sys\n"
        "from scanner.cli import main\n"
        "try:\n"
        f"    main({args!r}, prog_name='dfscan')\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "top = {name.split('.')[0] for name in sys.modules}\n"
        f"print('imported:', *sorted(top & {set(NOT_FOR_HELP)!r}))\n"
    )
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("imported:"), res.stdout[-300:]
    assert "Usage: dfscan" in res.stdout


def test_help_lists_lazy_commands_with_their_own_first_line():
    from scanner.cli import LAZY_COMMANDS

    res = CliRunner().invoke(main, ["--help"], terminal_width=200)
    assert res.exit_code == 0
    for name in ("scan", "report", "export", "bench"):
        assert f"  {name}  " in res.output
    for name, (_, line) in LAZY_COMMANDS.items():
        command = main.get_command(None, name)
        assert command.name == name and command.help.split("\n")[0] == line


def test_samples_flag_scans_the_bundled_clips(tiny_checkpoint, tmp_path):
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(
        main, ["scan", "--samples", "--weights", str(tiny_checkpoint), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    names = sorted(os.path.basename(r["path"]) for r in rows_of(out))
    assert names == ["real_retalking_5.mp4", "selfblend_retalking_5.mp4"]
    assert all(r["status"] == "ok" for r in rows_of(out))


def test_no_inputs_is_a_usage_error(tiny_checkpoint, tmp_path):
    res = CliRunner().invoke(
        main, ["scan", "--weights", str(tiny_checkpoint), "--out", str(tmp_path / "r.csv")]
    )
    assert res.exit_code == 2 and "--samples" in res.output


def scan_args(inputs, weights, out, *more):
    return ["scan", *map(str, inputs), "--weights", str(weights), "--out", str(out), *more]


def test_resume_from_another_folder_warns_of_relative_paths(
    face_clip, tiny_checkpoint, tmp_path, monkeypatch
):
    """Rows keep paths as found: a run given a relative path and resumed in another folder
    cannot match them; it says so instead of silently scanning the videos again."""
    first, other = tmp_path / "first", tmp_path / "other"
    for d in (first / "videos", other):
        d.mkdir(parents=True)
    shutil.copy(face_clip, first / "videos" / "a.mp4")
    out = tmp_path / "r.csv"
    monkeypatch.chdir(first)
    assert CliRunner().invoke(main, scan_args(["videos"], tiny_checkpoint, out)).exit_code == 0
    monkeypatch.chdir(other)
    res = CliRunner().invoke(main, scan_args(["../first/videos"], tiny_checkpoint, out, "--resume"))
    assert "1 kept rows name relative paths not found" in res.output
    assert "videos/a.mp4" in res.output and "resume there" in res.output


def test_resume_exits_3_while_rows_kept_from_the_earlier_run_failed(
    video_dir, tiny_checkpoint, tmp_path
):
    """Exit 0 means every video has a row and none failed: a resumed run whose own videos
    all pass still exits 3 when the rows it kept hold a failure, and says which."""
    out = tmp_path / "r.csv"
    base = ["--weights", str(tiny_checkpoint), "--out", str(out), "--no-progress"]
    first = CliRunner().invoke(main, ["scan", str(video_dir / "truncated.mp4"), *base])
    assert first.exit_code == 3, first.output
    more = [str(video_dir / "truncated.mp4"), str(video_dir / "portrait.mp4")]
    resumed = CliRunner().invoke(main, ["scan", *more, *base, "--resume"])
    assert resumed.exit_code == 3 and "earlier run: decode_error 1" in resumed.output
    assert [r["status"] for r in rows_of(out)] == ["decode_error", "ok"]
    again = CliRunner().invoke(main, ["scan", str(video_dir / "portrait.mp4"), *base, "--resume"])
    assert again.exit_code == 3  # nothing left to scan; the kept failure stands


@pytest.mark.parametrize("cut", ["in the score", "in the path", "in the details line"])
def test_resume_redoes_a_half_written_last_row(cut, video_dir, tiny_checkpoint, tmp_path):
    """A kill mid-write leaves the last CSV row (or its details line) cut short: resume drops
    the fragment and scans that video again instead of keeping it or gluing a row onto it."""
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    clips = [video_dir / "short.mp4", video_dir / "portrait.mp4"]
    args = scan_args(clips, tiny_checkpoint, out, "--details", str(details), "--no-progress")
    assert CliRunner().invoke(main, args).exit_code == 0
    whole, whole_details = out.read_bytes(), details.read_bytes()
    last = whole.rindex(b"\n", 0, len(whole) - 2) + 1  # where the portrait's row starts
    first_detail = whole_details.index(b"\n") + 1
    if cut == "in the score":  # "0.4" of "0.490684"
        score = rows_of(out)[-1]["score"].encode()
        out.write_bytes(whole[: whole.index(b"," + score + b",", last) + 4])
        details.write_bytes(whole_details[:first_detail])  # its line was never written
    elif cut == "in the path":
        out.write_bytes(whole[: last + len(str(clips[1])) // 2])
        details.write_bytes(whole_details[:first_detail])
    else:  # the row is whole, its details line is not
        details.write_bytes(whole_details[: first_detail + 40])

    res = CliRunner().invoke(main, [*args, "--resume"])
    assert res.exit_code == 0, res.output

    def stable(rows):  # everything but the wall time
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    out.with_suffix(".whole").write_bytes(whole)
    assert stable(rows_of(out)) == stable(rows_of(out.with_suffix(".whole")))
    assert out.read_bytes().count(b"\n") == whole.count(b"\n")
    lines = [json.loads(x) for x in details.read_text(encoding="utf-8").splitlines()]
    assert lines == [json.loads(x) for x in whole_details.decode().splitlines()]


def test_out_and_details_must_be_different_files(video_dir, tiny_checkpoint, tmp_path, monkeypatch):
    """However the one file is spelt: the same string, relative, through '..', a link to it, a
    hard link."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.csv"
    (tmp_path / "sub").mkdir()
    os.symlink(out, tmp_path / "link.csv")  # dangling until r.csv exists
    spellings = [str(out), "r.csv", str(tmp_path / "sub" / ".." / "r.csv"), "link.csv"]
    for details in spellings:
        args = scan_args([video_dir / "short.mp4"], tiny_checkpoint, out, "--details", details)
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, (details, res.output)
        assert "same file" in res.output and not out.exists()
    out.write_text("")
    os.link(out, tmp_path / "hard.csv")
    args = scan_args([video_dir / "short.mp4"], tiny_checkpoint, out, "--details", "hard.csv")
    res = CliRunner().invoke(main, [*args, "--overwrite"])
    assert res.exit_code == 2 and "same file" in res.output and out.read_text() == ""


@pytest.mark.parametrize("bad", ["--details", "--out"])
def test_an_unwritable_output_creates_no_other(bad, video_dir, tiny_checkpoint, tmp_path):
    """Every output is checked before any is created, so a failed start leaves nothing that
    the next run would need --overwrite for."""
    (tmp_path / "a_file").write_text("in the way")
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    unwritable = tmp_path / "a_file" / "inside.txt"  # its folder is a file
    paths = {"--out": out, "--details": details, bad: unwritable}
    clip = [video_dir / "short.mp4"]
    args = scan_args(clip, tiny_checkpoint, paths["--out"], "--details", str(paths["--details"]))
    res = CliRunner().invoke(main, args)
    assert not out.exists() and not details.exists()  # no header-only CSV left behind
    assert res.exit_code == 1 and "a_file" in res.output and "not a directory" in res.output
    res = CliRunner().invoke(main, scan_args(clip, tiny_checkpoint, out, "--details", str(details)))
    assert res.exit_code == 0, res.output


def test_an_existing_details_file_needs_overwrite(video_dir, tiny_checkpoint, tmp_path):
    """As --out and --report: a fresh run would empty it and its crops."""
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    details.write_text("an earlier run's details\n")
    args = scan_args([video_dir / "short.mp4"], tiny_checkpoint, out, "--details", str(details))
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "--details" in res.output and "--overwrite" in res.output
    assert details.read_text() == "an earlier run's details\n" and not out.exists()
    res = CliRunner().invoke(main, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads(details.read_text().splitlines()[0])["path"].endswith("short.mp4")


@pytest.mark.parametrize(
    "outputs",
    [
        {"--details": "r.crops"},  # its crops folder is r.crops: itself
        {"--details": "r.jsonl", "--out": "r.crops"},
        {"--details": "r.jsonl", "--report": "r.crops"},
        {"--details": "sub/../r.jsonl", "--out": "r.crops"},
    ],
    ids=["details", "out", "report", "spelt otherwise"],
)
def test_an_output_named_as_the_crops_folder_is_refused(
    outputs, face_clip, tiny_checkpoint, tmp_path, monkeypatch
):
    """The crops folder is made on the first scored video: a file of its name would end the
    scan after one row with FileExistsError. Refused up front, nothing written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    out = outputs.get("--out", "r.csv")
    more = [str(x) for option, path in outputs.items() if option != "--out" for x in (option, path)]
    res = CliRunner().invoke(main, scan_args([face_clip], tiny_checkpoint, out, *more))
    assert res.exit_code == 2, res.output
    assert "r.crops" in res.output and "face crops" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no output begun


def test_resume_finds_a_video_whose_name_starts_with_a_quote(
    face_clip, tiny_checkpoint, tmp_path, monkeypatch
):
    """Named relatively, ``'=1+1.mp4`` is a CSV cell that starts with a quote: written with
    a second quote, read back as itself, so --resume skips it instead of adding a row."""
    monkeypatch.chdir(tmp_path)
    name = "'=1+1.mp4"
    (tmp_path / name).write_bytes(face_clip.read_bytes())
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    args = scan_args([name], tiny_checkpoint, out, "--details", str(details), "--no-progress")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    (row,) = rows_of(out)
    assert row["path"] == "'" + name and row["status"] == "ok"
    before, before_details = out.read_bytes(), details.read_bytes()
    res = CliRunner().invoke(main, [*args, "--resume"])
    assert res.exit_code == 0 and "nothing to do" in res.output, res.output
    assert out.read_bytes() == before and details.read_bytes() == before_details


def test_ctrl_c_before_the_first_video_exits_130(video_dir, tiny_checkpoint, tmp_path, monkeypatch):
    """Loading the model (and exporting its graph on first use) takes seconds: Ctrl-C there
    is an interruption too, not click's "Aborted!" with 1."""
    import scanner.api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scanner.api, "load_backend", interrupted)
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, scan_args([video_dir / "short.mp4"], tiny_checkpoint, out))
    assert res.exit_code == 130 and "interrupted" in res.output
    assert not out.exists()


def test_awkward_file_names_are_scanned(face_clip, tiny_checkpoint, tmp_path, monkeypatch):
    """A name that is not UTF-8 (Linux keeps any bytes: an archive from another system), and
    names FFmpeg would take for a protocol when given relative (``pipe:`` reads stdin, an ISO
    time fails to open): each gets its row, the results files keep the name's bytes, and
    --resume finds them done."""
    folder = tmp_path / "videos"
    folder.mkdir()
    names = [os.fsdecode(b"clip\xff.mp4"), "2023-01-01T10:00:00.mp4", "pipe:0.mp4"]
    for name in names:
        (folder / name).write_bytes(face_clip.read_bytes())
    monkeypatch.chdir(folder)
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    args = scan_args(["."], tiny_checkpoint, out, "--details", str(details), "--no-progress")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["path"]).name for r in rows) == sorted(names)
    assert {r["status"] for r in rows} == {"ok"}, rows
    assert len({r["score"] for r in rows}) == 1  # the same clip under three names
    before = out.read_bytes()
    res = CliRunner().invoke(main, [*args, "--resume"])
    assert res.exit_code == 0 and "nothing to do" in res.output, res.output
    assert out.read_bytes() == before
    report = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", str(details), "--out", str(report)])
    assert res.exit_code == 0, res.output
    assert "clip?.mp4" in report.read_text(encoding="utf-8")


def test_resume_refuses_details_of_another_run(face_clip, tiny_checkpoint, tmp_path):
    """An earlier run without --details: its videos cannot be in the details file, and a
    report made from it would leave them out without a word."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(face_clip.read_bytes())
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    res = CliRunner().invoke(main, scan_args([folder], tiny_checkpoint, out, "--no-progress"))
    assert res.exit_code == 0, res.output
    args = scan_args([folder], tiny_checkpoint, out, "--details", str(details), "--resume")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "holds 0 videos" in res.output, res.output


def test_a_fresh_csv_starts_fresh_details(face_clip, tiny_checkpoint, tmp_path):
    """--resume with the CSV gone (or empty) scans every video again: the details file starts
    again too instead of holding each video twice."""
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    args = scan_args([face_clip], tiny_checkpoint, out, "--details", str(details))
    assert CliRunner().invoke(main, [*args, "--no-progress"]).exit_code == 0
    out.unlink()
    stale = tmp_path / "r.crops" / f"{'0' * 16}-p1.jpg"  # another run's crops
    stale.write_bytes(b"jpeg")
    res = CliRunner().invoke(main, [*args, "--no-progress", "--resume"])
    assert res.exit_code == 0, res.output
    assert len(rows_of(out)) == 1 and len(details.read_text().splitlines()) == 1
    assert not stale.exists() and len(list(stale.parent.iterdir())) == 1


def test_a_file_named_with_an_extension_that_is_not_utf8(face_clip, tiny_checkpoint, tmp_path):
    """Named on the command line (a folder scan lists known extensions only): opened through a
    link without the extension, FFmpeg finds the format from the content."""
    video = tmp_path / os.fsdecode(b"clip.m\xffv")
    video.write_bytes(face_clip.read_bytes())
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, scan_args([video], tiny_checkpoint, out, "--no-progress"))
    assert res.exit_code == 0, res.output
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as f:
        (row,) = csv.DictReader(f)
    assert row["status"] == "ok" and row["path"] == str(video)


def test_a_failed_device_stops_the_scan_and_keeps_its_rows(
    face_clip, tiny_checkpoint, tmp_path, monkeypatch
):
    """A GPU reset fails every call after it: the scan stops (exit 1) instead of writing an
    error row for every video left, which --resume would then skip."""
    from scanner.backends import DeviceFailure
    from scanner.scan import Scanner

    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (folder / name).write_bytes(face_clip.read_bytes())
    forward, calls = Scanner._forward, []

    def failing(self, clips):  # noqa: ANN001, ANN202
        calls.append(len(clips))
        if len(calls) > 1:
            raise DeviceFailure("onnxruntime on cuda:0: device reset")
        return forward(self, clips)

    monkeypatch.setattr(Scanner, "_forward", failing)
    out = tmp_path / "r.csv"
    args = scan_args([folder], tiny_checkpoint, out, "--batch-size", "1", "--workers", "1")
    res = CliRunner().invoke(main, [*args, "--no-progress"])
    assert res.exit_code == 1 and "device failed" in res.output and "--resume" in res.output
    assert [r["status"] for r in rows_of(out)] == ["ok"]
    monkeypatch.setattr(Scanner, "_forward", forward)
    res = CliRunner().invoke(main, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert [r["status"] for r in rows_of(out)] == ["ok"] * 3


def test_verbosity_options_are_accepted_after_scan_too(video_dir, tiny_checkpoint, tmp_path):
    clip = [video_dir / "short.mp4"]
    for where in ("group", "scan"):
        for flag, shown, hidden in (("-q", "WARNING", " INFO "), ("-v", " DEBUG ", None)):
            args = scan_args(clip, tiny_checkpoint, tmp_path / f"{where}{flag}.csv")
            args = [flag, *args] if where == "group" else [args[0], flag, *args[1:]]
            res = CliRunner().invoke(main, args)
            assert res.exit_code == 0, (where, flag, res.output)
            assert shown in res.output, (where, flag, res.output)
            assert hidden is None or hidden not in res.output, (where, flag, res.output)


def test_opencv_warnings_stay_off_stderr_unless_verbose(
    video_dir, tiny_checkpoint, tmp_path, capfd
):
    """OpenCV logs '[ WARN:0@0.6] global cap.cpp:212 open VIDEOIO(FFMPEG) ...' straight to
    file descriptor 2 for every file it cannot open."""
    clip = [video_dir / "notes.mp4"]
    res = CliRunner().invoke(main, scan_args(clip, tiny_checkpoint, tmp_path / "a.csv"))
    assert res.exit_code == 3, res.output
    assert "WARN" not in capfd.readouterr().err
    res = CliRunner().invoke(main, ["-v", *scan_args(clip, tiny_checkpoint, tmp_path / "b.csv")])
    assert res.exit_code == 3, res.output
    assert "VIDEOIO(FFMPEG)" in capfd.readouterr().err


def test_an_unreadable_file_is_an_error_row_found_or_named(
    video_dir, face_clip, tiny_checkpoint, tmp_path, monkeypatch
):
    """Found in a folder or named directly, a file the process may not read gets an error
    row saying so and the run goes on. Root reads anything, so the refusal is simulated:
    where dfscan opens the file, and in the readability check a non-root user would fail."""
    import builtins

    import scanner.video

    folder = tmp_path / "in"
    folder.mkdir()
    found, named = folder / "found.mp4", tmp_path / "named.mp4"
    for path in (found, named):
        path.write_bytes(face_clip.read_bytes())
    locked = {str(found), str(named)}

    def refuse(file, *args, **kw):
        if str(file) in locked:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kw)

    real_access = os.access
    monkeypatch.setattr(scanner.video, "open", refuse, raising=False)
    monkeypatch.setattr(os, "access", lambda p, m, **kw: str(p) not in locked and real_access(p, m))
    out = tmp_path / "r.csv"
    inputs = [folder, named, video_dir / "short.mp4"]
    res = CliRunner().invoke(main, scan_args(inputs, tiny_checkpoint, out, "--no-progress"))
    assert res.exit_code == 3, res.output
    rows = {os.path.basename(r["path"]): r for r in rows_of(out)}
    assert rows["short.mp4"]["status"] == "too_short"
    for name in ("found.mp4", "named.mp4"):
        assert rows[name]["status"] == "error"
        assert "permission denied" in rows[name]["message"].lower()


def test_a_video_cut_short_is_scored_and_says_what_decoded(face_image, tiny_checkpoint, tmp_path):
    whole = write_avi(tmp_path / "whole.avi", face_frames(face_image, 60))
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, scan_args([cut], tiny_checkpoint, out, "--no-progress"))
    assert res.exit_code == 0, res.output
    row = rows_of(out)[0]
    assert row["status"] == "ok" and row["score"] != ""
    assert "only 40 of 60 declared frames decode" in row["message"]
    assert row["duration_s"] == "2.4"  # the container's length, as the README says


def two_face_frames(face_image, n):
    """A large and a smaller copy of the portrait side by side, drifting a little."""
    big = cv2.resize(face_image, (200, 200))
    small = cv2.resize(face_image, (150, 150))
    frames = []
    for i in range(n):
        canvas = np.full((240, 480, 3), 90, np.uint8)
        x = 20 + i % 5
        canvas[20:220, x : x + 200] = big
        canvas[45:195, 300 - x // 2 : 450 - x // 2] = small
        frames.append(canvas)
    return frames


def test_a_second_face_is_a_second_person(face_image, face_clip, tiny_checkpoint, tmp_path):
    two = write_clip(tmp_path / "two_faces.mp4", two_face_frames(face_image, 40))
    out, details = tmp_path / "r.csv", tmp_path / "r.jsonl"
    args = scan_args([two, face_clip], tiny_checkpoint, out, "--details", str(details))
    res = CliRunner().invoke(main, [*args, "--no-progress"])
    assert res.exit_code == 0, res.output
    rows = {os.path.basename(r["path"]): r for r in rows_of(out)}
    row = rows["two_faces.mp4"]
    assert row["status"] == "ok" and row["score"] != "" and row["people"] == "2"
    assert "unscored" not in row["message"]
    detail = json.loads(details.read_text(encoding="utf-8").splitlines()[0])
    first, second = detail["people"]
    assert all(b[0] < 240 for b in first["face_boxes"])  # person 1: the larger, on the left
    assert all(b[0] > 240 for b in second["face_boxes"])
    scored = first if row["person"] == "1" else second
    assert float(row["score"]) == pytest.approx(scored["score"], abs=1e-6)
    assert scored["score"] == max(first["score"], second["score"])
    assert rows["face.mp4"]["people"] == "1" and "face" not in rows["face.mp4"]["message"]
    # Only faces beyond --max-people are left unscored, and the message says so.
    res = CliRunner().invoke(main, [*args, "--no-progress", "--overwrite", "--max-people", "1"])
    assert res.exit_code == 0, res.output
    row = rows_of(out)[0]
    assert row["people"] == "1" and row["person"] == "1"
    assert "1 more face seen" in row["message"] and "left unscored" in row["message"]
    assert all(
        b[0] < 240
        for b in json.loads(details.read_text().splitlines()[0])["people"][0]["face_boxes"]
    )


def test_a_lazy_command_whose_package_is_not_installed_says_where_it_runs(monkeypatch):
    monkeypatch.setitem(main.lazy, "export", ("dfscan_not_installed.cli:export", "Export."))
    res = CliRunner().invoke(main, ["export", "--help"])
    assert res.exit_code == 2
    assert "source checkout" in res.output and "dfscan_not_installed" in res.output


def test_python_api_gives_the_rows_of_the_command(video_dir, tiny_checkpoint, tmp_path):
    import scanner
    from scanner import ScanOptions, VideoResult, scan_paths
    from scanner.checkpoint import CheckpointError

    assert {"scan_paths", "ScanOptions", "VideoResult"} <= set(scanner.__all__)
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, scan_args([video_dir], tiny_checkpoint, out, "--device", "cpu"))
    assert res.exit_code == 3, res.output  # the folder holds broken files on purpose
    rows = rows_of(out)
    results = list(scan_paths([video_dir], ScanOptions(), weights=tiny_checkpoint, device="cpu"))
    assert all(isinstance(r, VideoResult) for r in results)
    assert [(r.path, r.status, r.label) for r in results] == [
        (row["path"], row["status"], row["label"] or None) for row in rows
    ]
    scores = [(r.score, row["score"]) for r, row in zip(results, rows) if r.status == "ok"]
    assert scores and all(float(csv_score) == pytest.approx(s, abs=1e-6) for s, csv_score in scores)
    with pytest.raises(CheckpointError):  # a bad model raises at the call, before any video
        scan_paths([video_dir], weights=tmp_path / "missing.safetensors")
    one = video_dir / "portrait.mp4"  # one path as a string: one video, not one per character
    (alone,) = scan_paths(str(one), weights=tiny_checkpoint, device="cpu")
    assert (alone.path, alone.status) == (str(one), "ok")
    gone = video_dir / "gone.mp4"  # a path that is not there raises, as the command refuses it
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        scan_paths([one, gone], weights=tiny_checkpoint, device="cpu")


def test_resume_over_a_folder_without_videos_is_no_videos_found(tiny_checkpoint, tmp_path):
    """--resume does not make an empty folder a finished scan: exit 1, as without it."""
    (tmp_path / "empty").mkdir()
    args = scan_args([tmp_path / "empty"], tiny_checkpoint, tmp_path / "r.csv", "--resume")
    res = CliRunner().invoke(main, [*args, "--no-progress"])
    assert res.exit_code == 1 and "no video files found" in res.output, res.output


def test_a_failure_after_the_model_scored_is_that_videos_error_row(
    video_dir, tiny_checkpoint, tmp_path, monkeypatch
):
    """Something failing while a scored video's row is made (its crops' thumbnails, say)
    gives that video an error row with the reason; the scan goes on (exit 3)."""
    from scanner.scan import Scanner

    def broken(self, *args):
        raise ValueError("thumbnail failed")

    monkeypatch.setattr(Scanner, "_person", broken)
    out = tmp_path / "r.csv"
    args = scan_args([video_dir / "portrait.mp4"], tiny_checkpoint, out, "--device", "cpu")
    res = CliRunner().invoke(main, [*args, "--no-progress", "--workers", "1"])
    assert res.exit_code == 3, res.output
    (row,) = rows_of(out)
    assert row["status"] == "error" and "ValueError: thumbnail failed" in row["message"]
