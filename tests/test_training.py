"""Preprocess -> train -> calibrated checkpoint -> `dfscan scan`, on tiny synthetic data."""

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
from click.testing import CliRunner

from scanner.checkpoint import load_checkpoint
from scanner.cli import main as dfscan
from scanner.contract import Preprocessing
from training.datasets import load_dataset
from training.preprocess import load_track, preprocess, read_index
from training.train import (
    FIELD_HELP,
    FLAG_GROUPS,
    TrainConfig,
    build_parser,
    load_config,
    main,
    parse_config,
)

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


def tiny_run(data, out, cache, epochs):
    """Arguments of a quick training run of the test backbone on a tiny data set."""
    split = ["--split", "0.5", "0.25", "0.25"]
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--epochs",
        str(epochs),
        *split,
        *TINY,
    ]


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


def test_preprocess_tries_a_failed_extraction_again(tmp_path, face_image):
    """An exception of the run (out of memory, a killed worker) is recorded as "error" and
    the video extracted on the next run; a video's own fault (too short) is not redone."""
    real = tmp_path / "data" / "real"
    real.mkdir(parents=True)
    write_clip(real / "face.mp4", face_frames(face_image, 20))
    write_clip(real / "short.mp4", face_frames(face_image, 8))
    items = load_dataset(tmp_path / "data")
    contract = Preprocessing.for_backbone("test_efficientnet")
    cache = tmp_path / "cache"
    first = preprocess(items, cache, contract, frames=16, workers=1, progress=False)
    assert sorted(e.status for e in first) == ["ok", "too_short"]
    # As a run whose worker ran out of memory on face.mp4 would have left the index:
    lines = (cache / "index.jsonl").read_text().splitlines()
    failed = [json.loads(x) for x in lines]
    for e in failed:
        if e["status"] == "ok":
            e.update(status="error", file="", frames=0, message="MemoryError: simulated")
    (cache / "index.jsonl").write_text("".join(json.dumps(e) + "\n" for e in failed))
    again = preprocess(items, cache, contract, frames=16, workers=1, progress=False)
    assert sorted(e.status for e in again) == ["ok", "too_short"]
    lines = (cache / "index.jsonl").read_text().splitlines()
    assert len(lines) == 3  # face.mp4 extracted again; the short video not


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


def test_preprocess_caches_runs_of_consecutive_frames_for_subsequence(
    cache, real_folder, tmp_path, caplog
):
    """A model that scans runs of consecutive frames (subsequence) gets a cache of such runs,
    laid out as clip_positions reads them; a cache of equally spaced frames is refused for
    it (and the other way round)."""
    from scanner.video import SUBSEQUENCES
    from training.data import clip_positions

    items = load_dataset(real_folder)[:2]
    runs = Preprocessing.for_backbone("test_efficientnet", sampling="subsequence")
    made = tmp_path / "runs"
    preprocess(items, made, runs, frames=15, workers=1, progress=False)
    settings = json.loads((made / "preprocess.json").read_text())
    assert settings["sampling"] == "subsequence"
    for e in read_index(made):
        indices = load_track(made, e)["indices"]
        assert len(indices) == 15
        for part in np.array_split(indices, SUBSEQUENCES):  # each run consecutive
            assert np.diff(part).tolist() == [1] * (len(part) - 1)
        assert np.diff(indices).max() > 1  # three runs spread over the video, not one
        rng = np.random.default_rng(0)
        for _ in range(5):
            picked = indices[clip_positions(len(indices), 15, "subsequence", rng)]
            assert picked.tolist() == indices.tolist()  # 15 of 15: the runs themselves
    with pytest.raises(ValueError, match="sampling"):
        preprocess(items, cache, runs, frames=16, workers=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="training.preprocess"):  # drawn by seed 0
        preprocess(items, made, runs, frames=15, workers=1, seed=1, progress=False)
    assert "whose starts seed 0 drew, not seed 1" in caplog.text
    with pytest.raises(ValueError, match="sampling"):
        preprocess(
            items,
            made,
            Preprocessing.for_backbone("test_efficientnet"),
            frames=15,
            workers=1,
            progress=False,
        )
    # Packed for another machine, the runs stay whole or the pack is refused.
    from training.cache_pack import pack

    with pytest.raises(ValueError, match="consecutive"):
        pack(made, tmp_path / "thin.npz", frames=10)
    assert pack(made, tmp_path / "whole.npz", frames=32) > 0


def test_clip_positions_take_runs_inside_the_cached_runs():
    """subsequence: the clip's three runs of consecutive positions each lie inside the cached
    run of the same rank, starting anywhere in it; other methods are sample_indices'."""
    from scanner.video import sample_indices
    from training.data import clip_positions

    rng = np.random.default_rng(1)
    parts = np.array_split(np.arange(64), 3)
    starts = set()
    for _ in range(50):
        pos = clip_positions(64, 15, "subsequence", rng)
        for run, part in zip(np.array_split(pos, 3), parts):
            assert len(run) == 5 and np.diff(run).tolist() == [1] * 4
            assert part[0] <= run[0] and run[-1] <= part[-1]
        starts.add(int(pos[0]))
    assert len(starts) > 5
    for method in ("random", "uniform"):
        a = clip_positions(64, 15, method, np.random.default_rng(3))
        np.testing.assert_array_equal(a, sample_indices(64, 15, method, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="cannot hold"):
        clip_positions(12, 15, "subsequence", rng)


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


def test_crop_size_is_the_caches_and_the_checkpoints(real_folder, tmp_path, capsys):
    """--crop-size (Lite2's own 260, say) makes the cache's crops that size, training on it
    stores it in the checkpoint's contract, and a cache of another size is refused."""
    from training import preprocess as preprocess_cli

    cache = tmp_path / "cache96"
    base = ["--data", str(real_folder), "--cache", str(cache), "--frames", "16"]
    assert (
        preprocess_cli.main(
            [
                *base,
                "--crop-size",
                "96",
                "--backbone",
                "test_efficientnet",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    entries = read_index(cache)
    assert load_track(cache, entries[0])["crops"].shape == (16, 96, 96, 3)
    out = tmp_path / "run"
    args = tiny_run(real_folder, out, cache, epochs=1)
    assert main([*args, "--crop-size", "96"]) == 0
    assert load_checkpoint(out / "model.safetensors").meta.preprocessing.crop_size == 96
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "other")]) != 0  # the 224 default: refused
    assert "other settings" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(real_folder, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = tiny_run(real_folder, out, cache, epochs=2)
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
    # The state holds the epoch's weights: a run killed after writing last.safetensors of a
    # later epoch, before its state, resumes from weights and progress of one epoch.
    import torch

    state = torch.load(tmp_path / "state.pt", weights_only=True)
    last = load_checkpoint(tmp_path / "last.safetensors").model.state_dict()
    assert state["model"].keys() == last.keys()
    assert all(torch.equal(state["model"][k], last[k]) for k in last)
    (tmp_path / "last.safetensors").write_bytes(b"cut short")
    assert main([*base, "--epochs", "2", "--resume"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "2"), ("1", "4")]
    assert rows[0] == first[0]  # the first epoch was not redone


def test_an_epoch_without_a_finite_loss_stops_the_run_with_status_1(
    real_folder, cache, tmp_path, capsys, monkeypatch
):
    import torch.nn.functional as F

    monkeypatch.setattr(F, "cross_entropy", lambda logits, y: (logits * float("nan")).sum())
    base = ["--data", str(real_folder), "--out", str(tmp_path), "--cache", str(cache)]
    base += ["--split", "0.5", "0.25", "0.25", "--max-steps", "2", *TINY]
    assert main([*base, "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "Traceback" not in err


def test_a_run_that_stopped_early_trains_no_more_when_resumed(real_folder, cache, tmp_path):
    import torch

    base = ["--data", str(real_folder), "--out", str(tmp_path), "--cache", str(cache)]
    base += ["--split", "0.5", "0.25", "0.25", "--max-steps", "2", *TINY]
    assert main([*base, "--epochs", "1"]) == 0
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    state["bad_epochs"] = 10**6  # as after an early stop
    torch.save(state, tmp_path / "state.pt")
    assert main([*base, "--epochs", "3", "--resume"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0"]


def test_every_epoch_draws_its_own_clips_in_loader_workers():
    """set_epoch reaches the loader's worker processes each epoch: clips, self-blends and
    augmentations are drawn per (seed, epoch, video), so a resumed run draws as an
    uninterrupted one."""
    import torch

    from training.train import _loader

    class EpochEcho(torch.utils.data.Dataset):
        epoch = 0

        def set_epoch(self, epoch):  # noqa: ANN001, ANN202
            self.epoch = epoch

        def __len__(self):  # noqa: ANN204
            return 2

        def __getitem__(self, i):  # noqa: ANN001, ANN204
            return self.epoch

    ds = EpochEcho()
    loader = _loader(ds, TrainConfig(workers=1, batch_size=2))
    seen = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        seen.append(next(iter(loader)).tolist())
    assert seen == [[0, 0], [1, 1], [2, 2]]


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
    # each fold's validation AUC is the one its calibrated checkpoint records (a number)
    recorded = [
        load_checkpoint(tmp_path / f"fold{k}" / "model.safetensors").meta.calibration["val_auc"]
        for k in range(2)
    ]
    assert summary["val_auc"] == recorded and all(np.isfinite(recorded))


@pytest.mark.slow
def test_distributed_training_with_torchrun(real_folder, cache, tmp_path):
    """Two CPU processes (gloo) through torchrun: the multi-GPU path, minus the GPUs."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port of its own
        "--nproc_per_node",
        "2",
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
    assert (report["sampling"], report["frame_seed"]) == ("random", 0)  # the checkpoint's
    again = tmp_path / "again.json"
    args[args.index(str(out))] = str(again)
    assert evaluate([*args, "--sampling", "sequential", "--frame-seed", "3"]) == 0
    report = json.loads(again.read_text())
    assert (report["sampling"], report["frame_seed"]) == ("sequential", 3)
    assert len(report["videos"]) == 9


# ---------------------------------------------------------------------------------------------
# A newcomer's own small dataset, flags' help and one-line failures


def test_every_flag_has_help_in_its_group():
    """Each TrainConfig field has a sentence of help in a known group (a new field without one
    fails here), --help shows it, and the paper's ablations are named where flags reproduce
    them."""
    names = [f.name for f in fields(TrainConfig)]
    missing = [n for n in names if n not in FIELD_HELP or not FIELD_HELP[n].help.strip()]
    assert not missing, f"TrainConfig fields without help in FIELD_HELP: {missing}"
    assert not set(FIELD_HELP) - set(names), "FIELD_HELP names fields TrainConfig lacks"
    for name in names:
        entry = FIELD_HELP[name]
        assert entry.group in FLAG_GROUPS, (name, entry.group)
        assert entry.help.rstrip().endswith("."), name
    parser = build_parser()
    groups = {g.title: g for g in parser._action_groups}
    assert list(FLAG_GROUPS) == [t for t in groups if t in FLAG_GROUPS]
    assert {"data", "model", "input variations", "optimisation", "calibration", "output"} <= set(
        FLAG_GROUPS
    )
    for action in parser._actions:
        assert action.help and len(action.help) > 20, action.option_strings
    text = parser.format_help()
    for name in names:
        assert "--" + name.replace("_", "-") in text
    assert "0.3333333333333333" not in text and "(default 0" not in text
    cited = {
        "attention": "Table 3",
        "sampling": "Table 4",
        "blur": "Table 6",
        "wavelet": "Table 6",
        "warp": "Table 6",
        "removal": "Table 6",
        "folds": "§4.8",
        "split": "80:10:10",
        "manipulated_ratio": "§3.1.2",
    }
    for name, where in cited.items():
        assert where in FIELD_HELP[name].help, name
    assert "1:2" in FIELD_HELP["manipulated_ratio"].help


def test_help_runs_as_a_command():
    res = subprocess.run(
        [sys.executable, "-m", "training.train", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0
    for heading in ("data:", "model:", "input variations:", "optimisation:", "calibration:"):
        assert heading in res.stdout
    assert "--eval-clips N" in res.stdout and "--self-blend {auto,on,off}" in res.stdout


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


def test_small_dataset_of_ones_own_trains_and_scans(people, tmp_path):
    """real/a..c + fake/x..z at the default 80:10:10: every split gets both classes, the run
    calibrates on real and fake validation videos and `dfscan scan --weights` loads the model
    (unstratified, validation held one real identity and calibration failed)."""
    out = tmp_path / "run"
    args = ["--data", str(people), "--out", str(out), "--epochs", "1", "--max-steps", "1", *TINY]
    assert main(args) == 0
    ckpt = load_checkpoint(out / "model.safetensors")
    cal = ckpt.meta.calibration
    assert cal["n_real"] == 2 and cal["split"] == "val"
    assert "self-blend off" in ckpt.meta.provenance.training_data
    test = json.loads((out / "test_metrics.json").read_text())
    assert {v["label"] for v in test["videos"]} == {0, 1}
    assert {"real", "fake"} <= {g["group"] for g in test["groups"]}
    res = CliRunner().invoke(
        dfscan,
        [
            "scan",
            str(people / "real" / "a"),
            str(people / "fake" / "x"),
            "--weights",
            str(out / "model.safetensors"),
            "--out",
            str(tmp_path / "scan.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "scan.csv")))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}


def test_impossible_split_is_one_line_before_any_work(people, tmp_path):
    """Two real identities cannot give train, val and test one each: exit 2 with one line that
    names the split, the class and the fix, before the run folder or the cache exists."""
    data = tmp_path / "data"
    for person in ("real/a", "real/b", "fake/x", "fake/y", "fake/z"):
        shutil.copytree(people / person, data / person)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train", "--data", str(data), "--out", str(out), *TINY]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert errors == [res.stderr.splitlines()[-1]]
    assert errors[0].startswith(
        "python -m training.train: error: the test split has no real videos"
    )
    assert "2 identities with real videos (a, b)" in errors[0]
    assert "--split 0.9 0.1 0 (no test split)" in errors[0]
    assert not out.exists()


def test_impossible_folds_and_traceback_with_verbose(people, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", str(people), "--out", str(out), *TINY, "--folds", "4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("python -m training.train: error: fold ")
    assert "has no " in last and "--folds 3" in last and "Traceback" not in err
    assert main([*args, "-v"]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing data", "dataset path does not exist"),
        ("empty dataset", "no videos found"),
        ("unknown layout", "no known dataset layout"),
        ("unwritable out", "cannot write to --out"),
        ("cache of other settings", "made with other settings"),
        ("unknown config key", "unknown keys ['epoch']"),
        ("no --data", "--data is required"),
        ("missing backbone weights", "--backbone-weights"),
    ],
)
def test_expected_failures_are_one_line(case, message, people, tmp_path, capsys):
    args = ["--out", str(tmp_path / "run"), *TINY]
    data = ["--data", str(people)]
    if case == "missing data":
        args += ["--data", str(tmp_path / "nowhere")]
    elif case == "empty dataset":
        (tmp_path / "empty" / "real").mkdir(parents=True)
        (tmp_path / "empty" / "real" / "notes.txt").write_text("no videos here")
        args += ["--data", str(tmp_path / "empty")]
    elif case == "unknown layout":
        shutil.copytree(people / "real" / "a", tmp_path / "clips" / "videos")
        args += ["--data", str(tmp_path / "clips")]
    elif case == "unwritable out":
        (tmp_path / "file").write_text("")
        args += [*data, "--out", str(tmp_path / "file" / "run")]
    elif case == "cache of other settings":
        cache = tmp_path / "cache"
        cache.mkdir()
        contract = Preprocessing.for_backbone("test_efficientnet").to_dict()
        (cache / "preprocess.json").write_text(
            json.dumps({"frames": 8, "seed": 0, "contract": contract})
        )
        args += [*data, "--cache", str(cache)]
    elif case == "unknown config key":
        (tmp_path / "c.json").write_text(json.dumps({"epoch": 3}))
        args += [*data, "--config", str(tmp_path / "c.json")]
    elif case == "missing backbone weights":
        args += [*data, "--backbone-weights", str(tmp_path / "none.safetensors")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("python -m training.train: error: ") and message in last, err


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
