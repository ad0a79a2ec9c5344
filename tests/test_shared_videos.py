"""Scan the team's shared clips end to end (random weights: checks the path, not verdicts)."""

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import main

from helpers import SHARED_VIDEOS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SHARED_VIDEOS.is_dir(),
        reason=f"shared clips not found at {SHARED_VIDEOS} (set DFSCAN_SHARED_VIDEOS)",
    ),
]


def test_scan_shared_videos(tiny_checkpoint, tmp_path):
    out = tmp_path / "shared.csv"
    res = CliRunner().invoke(
        main,
        [
            "scan",
            str(SHARED_VIDEOS),
            "--weights",
            str(tiny_checkpoint),
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    with open(out, newline="", encoding="utf-8") as f:
        rows = {Path(r["path"]).relative_to(SHARED_VIDEOS).as_posix(): r for r in csv.DictReader(f)}
    manifest = SHARED_VIDEOS.parent / "manifest.csv"
    with open(manifest, newline="", encoding="utf-8") as f:
        expected = {r["path"].removeprefix("videos/"): r["label"] for r in csv.DictReader(f)}
    assert set(rows) == set(expected)
    for name, label in expected.items():
        row = rows[name]
        if label == "NOFACE":
            assert row["status"] == "no_face", name
            assert row["score"] == ""
        else:
            assert row["status"] == "ok", (name, row["message"])
            assert 0.0 <= float(row["score"]) <= 1.0
            assert int(row["frames_with_face"]) >= 5
    # The one multi-shot clip: its random sample straddles cuts, so the clip is sampled again
    # inside the tracked face's shot; the single-shot clips are sampled once.
    refocused = sorted(n for n, r in rows.items() if r["message"].startswith("shot cut"))
    assert refocused == ["real/hamilton_stage.mp4"]
