"""Preprocess -> train -> calibrated checkpoint -> `dfscan scan`, on tiny synthetic data."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from scanner.checkpoint import load_checkpoint
from scanner.cli import main as dfscan
from scanner.contract import Preprocessing
from training.datasets import load_dataset
from training.preprocess import load_track, preprocess, read_index
from training.train import TrainConfig, load_config, main, parse_config

from helpers import face_frames, write_clip

TINY = [
    "--backbone",
    "test_efficientnet",
    "--proj-channels",
    "8",
    "--hidden-channels",
    "8",
    "--batch-size",
    "2",
    "--workers",
    "0",
    "--preprocess-workers",
    "1",
    "--cache-frames",
    "16",
]


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory, face_image):
    """Eight real 'identities': the portrait tinted and placed differently in each."""
    root = tmp_path_factory.mktemp("data")
    (root / "real").mkdir()
    for k in range(8):
        tint = np.array([1.0 - 0.05 * k, 1.0, 0.8 + 0.05 * k])
        face = np.clip(face_image * tint, 0, 255).astype(np.uint8)
        frames = face_frames(face, 20, size=(320 + 16 * k, 240))
        write_clip(root / "real" / f"person{k}.mp4", frames)
    return root


@pytest.fixture(scope="module")
def cache(real_folder, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    items = load_dataset(real_folder)
    preprocess(
        items,
        cache,
        Preprocessing.for_backbone("test_efficientnet"),
        frames=16,
        workers=1,
        progress=False,
    )
    return cache


def test_preprocess_caches_face_tracks(cache, real_folder):
    entries = read_index(cache)
    assert len(entries) == 8 and all(e.status == "ok" and e.frames == 16 for e in entries)
    track = load_track(cache, entries[0])
    assert track["crops"].shape == (16, 224, 224, 3) and track["crops"].dtype == np.uint8
    assert track["landmarks"].shape == (16, 5, 2)
    assert track["indices"].tolist() == np.linspace(0, 19, 16).round().astype(int).tolist()
    # eyes above the mouth, inside the crop: the landmarks follow the crop
    lm = track["landmarks"]
    assert (lm[:, :2, 1] < lm[:, 3:, 1]).all() and ((lm > 0) & (lm < 224)).all()


def test_preprocess_resumes_without_redoing(cache, real_folder):
    before = (cache / "index.jsonl").read_text()
    items = load_dataset(real_folder)
    preprocess(
        items,
        cache,
        Preprocessing.for_backbone("test_efficientnet"),
        frames=16,
        workers=1,
        progress=False,
    )
    assert (cache / "index.jsonl").read_text() == before
    with pytest.raises(ValueError, match="other settings"):
        preprocess(
            items,
            cache,
            Preprocessing.for_backbone("test_efficientnet", margin=0.5),
            frames=16,
            workers=1,
            progress=False,
        )


def test_preprocess_records_failures(tmp_path, face_image):
    (tmp_path / "data" / "real").mkdir(parents=True)
    (tmp_path / "data" / "real" / "broken.mp4").write_text("not a video")
    write_clip(tmp_path / "data" / "real" / "short.mp4", face_frames(face_image, 8))
    entries = preprocess(
        load_dataset(tmp_path / "data"),
        tmp_path / "cache",
        Preprocessing.for_backbone("test_efficientnet"),
        frames=16,
        workers=1,
        progress=False,
    )
    assert sorted(e.status for e in entries) == ["not_video", "too_short"]


def test_preprocess_caches_only_the_face_shot(tmp_path, face_image):
    """A cut to a wall: the cache holds frames of the face's shot only, sampled again there,
    and a face shot shorter than the cache depth is too short."""
    real = tmp_path / "data" / "real"
    real.mkdir(parents=True)
    wall = np.full((240, 320, 3), (20, 60, 160), np.uint8)
    write_clip(real / "long_shot.mp4", face_frames(face_image, 40) + [wall] * 30)
    write_clip(real / "short_shot.mp4", face_frames(face_image, 10) + [wall] * 10)
    contract = Preprocessing.for_backbone("test_efficientnet")
    entries = preprocess(
        load_dataset(tmp_path / "data"),
        tmp_path / "cache",
        contract,
        frames=16,
        workers=1,
        progress=False,
    )
    by_name = {e.path.rsplit("/", 1)[-1]: e for e in entries}
    long_shot = by_name["long_shot.mp4"]
    assert long_shot.status == "ok" and long_shot.frames == 16
    track = load_track(tmp_path / "cache", long_shot)
    assert track["indices"].max() < 40 and track["detected"].all()
    short = by_name["short_shot.mp4"]
    assert short.status == "too_short" and "shot is too short" in short.message


def test_config_file_flags_and_validation(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"data": "x", "epochs": 3, "blur": False}))
    cfg, resume = parse_config(["--config", str(cfg_file), "--epochs", "5", "--no-removal"])
    assert (cfg.epochs, cfg.blur, cfg.removal, cfg.data, resume) == (5, False, False, "x", False)
    assert cfg.augment.variations == ("wavelet",)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ValueError, match="unknown keys.*valid keys"):
        load_config(bad)
    with pytest.raises(ValueError, match="split"):
        TrainConfig(data="x", split=(0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def trained(real_folder, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = [
        "--data",
        str(real_folder),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--epochs",
        "2",
        "--split",
        "0.5",
        "0.25",
        "0.25",
        *TINY,
    ]
    assert main(args) == 0
    return out


def test_training_writes_a_calibrated_checkpoint(trained):
    for name in (
        "model.safetensors",
        "best.safetensors",
        "last.safetensors",
        "state.pt",
        "metrics.csv",
        "curves.png",
        "config.json",
        "test_metrics.json",
        "roc.png",
    ):
        assert (trained / name).is_file(), name
    ckpt = load_checkpoint(trained / "model.safetensors")
    cal = ckpt.meta.calibration
    assert cal["method"] == "target_fpr" and cal["target_fpr"] == 0.05
    assert cal["achieved_fpr"] <= 0.05
    assert ckpt.meta.threshold == pytest.approx(cal["threshold"])
    assert "self-blend on" in ckpt.meta.provenance.training_data
    assert ckpt.meta.provenance.command.startswith("python -m training.train")
    assert ckpt.meta.preprocessing == Preprocessing.for_backbone("test_efficientnet")
    rows = list(csv.DictReader(open(trained / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)
    test = json.loads((trained / "test_metrics.json").read_text())
    groups = {g["group"] for g in test["groups"]}
    assert {"all", "real", "self-blend"} <= groups


def test_trained_checkpoint_scans(trained, real_folder, tmp_path):
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(
        dfscan,
        [
            "scan",
            str(real_folder),
            "--weights",
            str(trained / "model.safetensors"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    threshold = load_checkpoint(trained / "model.safetensors").meta.threshold
    assert all(float(r["threshold"]) == pytest.approx(threshold, abs=1e-6) for r in rows)


def test_resume_continues_from_saved_step(real_folder, cache, tmp_path):
    base = [
        "--data",
        str(real_folder),
        "--out",
        str(tmp_path),
        "--cache",
        str(cache),
        "--split",
        "0.5",
        "0.25",
        "0.25",
        "--max-steps",
        "2",
        *TINY,
    ]
    assert main([*base, "--epochs", "1"]) == 0
    first = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["step"] for r in first] == ["2"]
    assert main([*base, "--epochs", "2", "--resume"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "2"), ("1", "4")]
    assert rows[0] == first[0]  # the first epoch was not redone


def test_cross_validation(real_folder, cache, tmp_path):
    args = [
        "--data",
        str(real_folder),
        "--out",
        str(tmp_path),
        "--cache",
        str(cache),
        "--folds",
        "2",
        "--epochs",
        "1",
        "--max-steps",
        "1",
        *TINY,
    ]
    assert main(args) == 0
    summary = json.loads((tmp_path / "folds.json").read_text())
    assert summary["folds"] == 2 and len(summary["auc"]) == 2
    assert (tmp_path / "fold0" / "model.safetensors").is_file()
    assert (tmp_path / "fold1" / "model.safetensors").is_file()


@pytest.mark.slow
def test_distributed_training_with_torchrun(real_folder, cache, tmp_path):
    """Two CPU processes (gloo) through torchrun: the multi-GPU path, minus the GPUs."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "training.train",
        "--data",
        str(real_folder),
        "--out",
        str(tmp_path),
        "--cache",
        str(cache),
        "--epochs",
        "1",
        "--split",
        "0.5",
        "0.25",
        "0.25",
        "--device",
        "cpu",
        *TINY,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_checkpoint(tmp_path / "model.safetensors").meta.threshold >= 0
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 1


def test_evaluate_reports_per_group(trained, real_folder, tmp_path, face_image, capsys):
    from training.evaluate import main as evaluate

    data = tmp_path / "data"
    (data / "fake").mkdir(parents=True)
    (data / "real").symlink_to(real_folder / "real")
    swapped = np.ascontiguousarray(face_image[:, ::-1])  # a stand-in "fake" video
    write_clip(data / "fake" / "f0.mp4", face_frames(swapped, 20))
    write_clip(data / "fake" / "nothing.mp4", [np.full((240, 320, 3), 50, np.uint8)] * 20)
    out = tmp_path / "eval.json"
    args = [
        "--weights",
        str(trained / "model.safetensors"),
        "--data",
        str(data),
        "--json",
        str(out),
        "--workers",
        "1",
    ]
    assert evaluate(args) == 0
    report = json.loads(out.read_text())
    groups = {g["group"]: g for g in report["groups"]}
    assert groups["all"]["n"] == 9 and groups["real"]["n"] == 8 and groups["fake"]["n"] == 1
    assert 0.0 <= groups["all"]["auc"] <= 1.0
    assert [u["status"] for u in report["unscored"]] == ["no_face"]
    assert "real" in capsys.readouterr().out


def write_people(root, face_image, reals="abc", fakes="xyz", clips=2):
    """The README's folders layout: real/<person>/ and fake/<person>/, ``clips`` videos each.
    A "fake" is the mirrored portrait; every person has their own tint and frame size."""
    for kind, people in (("real", reals), ("fake", fakes)):
        for k, person in enumerate(people):
            base = face_image if kind == "real" else np.ascontiguousarray(face_image[:, ::-1])
            for c in range(clips):
                tint = np.array([1.0 - 0.05 * k, 1.0, 0.8 + 0.05 * k + 0.02 * c])
                face = np.clip(base * tint, 0, 255).astype(np.uint8)
                folder = root / kind / person
                folder.mkdir(parents=True, exist_ok=True)
                write_clip(folder / f"clip{c}.mp4", face_frames(face, 16, size=(320 + 16 * k, 240)))
    return root


@pytest.fixture(scope="module")
def people(tmp_path_factory, face_image):
    """Three real and three fake identities, two clips each: the issue's small dataset."""
    return write_people(tmp_path_factory.mktemp("people"), face_image)


def test_preprocess_and_evaluate_fail_in_one_line(people, tiny_checkpoint, tmp_path, capsys):
    from training.evaluate import main as evaluate
    from training.preprocess import main as preprocess_main

    cache = tmp_path / "cache"
    cache.mkdir()
    contract = Preprocessing.for_backbone("test_efficientnet").to_dict()
    (cache / "preprocess.json").write_text(
        json.dumps({"frames": 8, "seed": 0, "contract": contract})
    )
    checks = [
        (preprocess_main, ["--data", str(tmp_path / "nowhere"), "--cache", str(cache)], "exist"),
        (
            preprocess_main,
            ["--data", str(people), "--cache", str(cache), "--frames", "16", "--workers", "1"],
            "other settings",
        ),
        (evaluate, ["--weights", str(tmp_path / "none"), "--data", str(people)], "none"),
        (
            evaluate,
            ["--weights", str(tiny_checkpoint), "--data", str(tmp_path / "nowhere")],
            "does not exist",
        ),
        (
            evaluate,
            [
                "--weights",
                str(tiny_checkpoint),
                "--data",
                str(people),
                "--json",
                str(cache / "preprocess.json" / "x.json"),
            ],
            "cannot write to --json",
        ),
    ]
    for run, args, message in checks:
        assert run(args) == 2, args
        err = capsys.readouterr().err
        last = err.splitlines()[-1]
        assert "Traceback" not in err and "error: " in last and message in last, err
    assert preprocess_main([*checks[0][1], "-v"]) == 2
    assert "Traceback" in capsys.readouterr().err
