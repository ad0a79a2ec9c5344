"""The shipped default model: loads, scores on CPU, matches its card and a golden score."""

import csv
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.checkpoint import load_checkpoint
from scanner.cli import main
from scanner.files import file_sha256
from scanner.models import default_weights, samples_dir

WEIGHTS = default_weights()
pytestmark = pytest.mark.skipif(
    WEIGHTS is None, reason="no default model in this build (scanner/models/default.safetensors)"
)

# P(fake) of the shipped model for the synthetic `face_clip` fixture (seed 0). A change here
# means preprocessing or weights changed: if that was intended, update it and the model card.
GOLDEN_SCORE = 0.316551
GOLDEN_TOLERANCE = 2e-3


def test_loads_and_is_calibrated():
    ckpt = load_checkpoint(WEIGHTS)
    cal = ckpt.meta.calibration
    assert cal["method"] == "target_fpr" and ckpt.meta.threshold == pytest.approx(cal["threshold"])
    assert ckpt.meta.preprocessing.num_frames == 15 and ckpt.meta.preprocessing.crop_size == 224
    command = ckpt.meta.provenance.command
    assert command.startswith(("python -m training.train", "python -m training.two_stage"))


def test_model_card_names_the_file_sha256():
    card = (WEIGHTS.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    digests = re.findall(r"`([0-9a-f]{64})`", card)
    assert digests == [file_sha256(WEIGHTS)]
    assert "Limits" in card and "FaceForensics++" in card


def test_scans_without_weights_flag(face_clip, tmp_path):
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, ["scan", str(face_clip), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader(open(out)))
    assert row["status"] == "ok" and row["model"].startswith(load_checkpoint(WEIGHTS).meta.name)
    score = float(row["score"])
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(GOLDEN_SCORE, abs=GOLDEN_TOLERANCE)


def test_samples_are_scored(tmp_path):
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, ["scan", "--samples", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == len(list(samples_dir().glob("*.mp4"))) == 2
    assert all(r["status"] == "ok" for r in rows)
    labels = {Path(r["path"]).name: r["label"] for r in rows}
    # the bundled pair: a real clip and the same clip self-blended (make demo shows both)
    assert labels == {"real_retalking_5.mp4": "REAL", "selfblend_retalking_5.mp4": "FAKE"}
