"""Two-stage training (backbone frame by frame, then the head on cached features), tiny data."""

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from scanner.checkpoint import load_checkpoint
from scanner.cli import main as dfscan
from training.two_stage import (
    FEATURES,
    FRAME_STATE,
    StageConfig,
    cap_per_identity,
    climb,
    descend,
    main,
    read_configs,
    trainable_parameters,
)


def _config(tmp_path, data_dir, cache_dir, **extra) -> str:
    cfg = {
        "data": str(data_dir),
        "out": str(tmp_path / "run"),
        "cache": str(cache_dir),
        "backbone": "test_efficientnet",
        "proj_channels": 8,
        "hidden_channels": 8,
        "cache_frames": 16,
        "workers": 0,
        "preprocess_workers": 1,
        "split": [0.6, 0.2, 0.2],
        "max_steps": 3,
        "frame_pairs": 2,
        "feature_frames": 8,
        "feature_variants": 2,
        "head_epochs": 2,
        "head_batch": 4,
        "val_clips": 2,
        "jpeg_prob": 0.5,
    } | extra
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory, real_folder, cache):
    tmp = tmp_path_factory.mktemp("two_stage")
    recipe = _config(tmp, real_folder, cache)
    assert main(["--config", recipe]) == 0
    return tmp / "run", recipe


def test_writes_a_calibrated_checkpoint(run) -> None:
    out, _ = run
    loaded = load_checkpoint(out / "model.safetensors")
    assert loaded.meta.model.backbone == "test_efficientnet"
    assert 0.0 < loaded.meta.threshold < 1.0
    cal = loaded.meta.calibration
    assert cal["split"] == "val" and cal["n_real"] > 0
    summary = json.loads((out / "two_stage.json").read_text())
    assert summary["frame_stage"]["steps"] == 3
    assert len(summary["head_stage"]["history"]) == 2
    assert set(summary["timing"]) == {"frame_stage_s", "feature_cache_s", "head_stage_s"}
    train, val, test = (set(summary["splits"][k]) for k in ("train", "val", "test"))
    assert train and val and not (train & val) and not (train & test) and not (val & test)


def test_checkpoint_scans(run, real_folder, tmp_path) -> None:
    out, _ = run
    video = sorted((real_folder / "real").glob("*.mp4"))[0]
    csv_path = tmp_path / "r.csv"
    result = CliRunner().invoke(
        dfscan,
        ["scan", str(video), "--weights", str(out / "model.safetensors"), "--out", str(csv_path)],
    )
    assert result.exit_code == 0, result.output
    row = csv_path.read_text().splitlines()[1]
    assert ",ok," in row


def test_resume_skips_finished_stages(run, caplog) -> None:
    out, recipe = run
    before = torch.load(out / FRAME_STATE, weights_only=True)["step"]
    stamp = (out / FEATURES).stat().st_mtime_ns
    caplog.set_level("INFO")
    assert main(["--config", recipe, "--resume"]) == 0
    assert torch.load(out / FRAME_STATE, weights_only=True)["step"] == before
    assert (out / FEATURES).stat().st_mtime_ns == stamp  # the feature cache was read, not redone
    assert "feature cache: read" in caplog.text


def test_a_new_run_into_a_used_folder_computes_its_own_features(run, caplog) -> None:
    """Without --resume the frame stage trains again, so the feature maps of the run before
    (another backbone) are not read back."""
    out, recipe = run
    stamp = (out / FEATURES).stat().st_mtime_ns
    caplog.set_level("INFO")
    assert main(["--config", recipe]) == 0
    assert (out / FEATURES).stat().st_mtime_ns != stamp
    assert "feature cache: read" not in caplog.text


def test_config_split_and_unknown_keys(tmp_path, real_folder, cache) -> None:
    recipe = Path(_config(tmp_path, real_folder, cache, head_epochs=7))
    cfg, st = read_configs(recipe, {"frame_lr": 0.01})
    assert cfg.backbone == "test_efficientnet" and cfg.split == (0.6, 0.2, 0.2)
    assert (st.head_epochs, st.frame_lr, st.feature_variants) == (7, 0.01, 2)
    assert st.max_per_identity == StageConfig().max_per_identity
    with pytest.raises(ValueError, match="unknown config keys"):
        read_configs(None, {"frame_lrr": 0.01})
    _, st = read_configs(None, {"degrade_kinds": "rescale, lowres_codec,lowres_codec"})
    assert st.kinds == ("rescale", "lowres_codec", "lowres_codec")
    with pytest.raises(ValueError, match="degrade_kinds"):
        read_configs(None, {"degrade_kinds": "rescale,sepia"})


def test_resume_reads_the_runs_own_config_and_unused_keys_warn(run, tmp_path, caplog) -> None:
    out, _ = run
    saved = json.loads((out / "config.json").read_text())
    cfg, st = read_configs(None, {"out": str(out)}, resume=True)
    assert cfg.backbone == saved["backbone"] == "test_efficientnet"
    assert st.head_epochs == saved["head_epochs"] != StageConfig().head_epochs
    caplog.set_level("WARNING")
    read_configs(None, {"epochs": 5, "lr": 3e-4})  # lr as its default: no warning for it
    assert "two-stage training does not use epochs (training.train's)" in caplog.text
    read_configs(None, {"feature_frames": 8})
    assert "feature_frames (8) < num_frames (15): the head's clips repeat frames" in caplog.text
    listed = tmp_path / "list.yaml"
    listed.write_text("- backbone\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        read_configs(listed, {})


def test_every_stage_key_has_help_and_errors_are_one_line(tmp_path, capsys) -> None:
    from dataclasses import fields

    from training.two_stage import STAGE_HELP

    assert {f.name for f in fields(StageConfig)} == set(STAGE_HELP)
    assert main(["--set", "frame_lrr", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[-1]] and "unknown config keys ['frame_lrr']" in err[-1]
    assert main(["--set", "data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "error:" in capsys.readouterr().err


def test_a_diverged_run_stops_with_one_line_and_status_1(
    tmp_path, real_folder, cache, capsys, monkeypatch
) -> None:
    """A loss that is NaN (a learning rate too high, broken inputs) stops the run at once,
    saying where, with exit status 1: not a flag error (2), not a traceback, not a model
    trained on through NaN."""
    import torch.nn.functional as F

    def nan_loss(logits, y):  # noqa: ANN001, ANN202
        return (logits * float("nan")).sum()

    monkeypatch.setattr(F, "cross_entropy", nan_loss)
    assert main(["--config", _config(tmp_path, real_folder, cache)]) == 1
    err = capsys.readouterr().err
    assert "error: the loss is nan (frame stage, step 1): training diverged" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_non_finite_scores_are_not_a_flag_error() -> None:
    from training.metrics import NonFinite, roc_auc

    with pytest.raises(NonFinite, match="1 of 3 scores are not finite"):
        roc_auc([0, 1, 1], [0.1, float("nan"), 0.9])
    assert not issubclass(NonFinite, ValueError)  # the entry points' exit status 2


def test_cap_per_identity_keeps_at_most_n(real_folder) -> None:
    from training.datasets import load_dataset

    items = load_dataset(real_folder)
    extra = [
        dataclasses.replace(items[0], path=items[0].path.with_name(f"same{k}.mp4"), source="same")
        for k in range(3)
    ]
    capped = cap_per_identity(items + extra, 2, seed=0)
    assert sum(it.source == "same" for it in capped) == 2
    assert [it for it in capped if it.source != "same"] == items
    assert cap_per_identity(items + extra, 0, 0) == items + extra


def test_cap_per_identity_draws_the_same_videos_in_any_order(real_folder) -> None:
    """The GPU script lists videos in the cache's order, the CPU run in path order: the
    same seed keeps the same videos of each person either way."""
    from training.datasets import load_dataset

    items = load_dataset(real_folder)
    extra = [
        dataclasses.replace(items[0], path=items[0].path.with_name(f"same{k}.mp4"), source="same")
        for k in range(6)
    ]
    kept = {it.path for it in cap_per_identity(items + extra, 2, seed=3)}
    for order in (list(reversed(items + extra)), extra[3:] + items + extra[:3]):
        capped = cap_per_identity(order, 2, seed=3)
        assert {it.path for it in capped} == kept
        assert capped == [it for it in order if it.path in kept]  # their order kept


def test_trainable_parameters_freeze_early_stages() -> None:
    import timm

    net = timm.create_model("test_efficientnet", num_classes=0, global_pool="")
    params = trainable_parameters(net, 1)
    ids = {id(p) for p in params}
    assert all(id(p) in ids for p in net.blocks[-1].parameters())
    assert not any(p.requires_grad for p in net.blocks[0].parameters())
    assert not any(p.requires_grad for p in net.conv_stem.parameters())
    assert len(trainable_parameters(net, -1)) == len(list(net.parameters()))


def test_cache_pack_round_trip_trains_without_videos(tmp_path, real_folder, cache) -> None:
    """A packed cache, unpacked elsewhere, trains with no videos and no dlib at hand."""
    from training.cache_pack import pack, unpack
    from training.preprocess import load_track, read_index

    size = pack(cache, tmp_path / "c.pack", frames=16, quality=90, data=real_folder)
    assert 0 < size < sum(f.stat().st_size for f in cache.glob("*.npz"))
    n = unpack(tmp_path / "c.pack", tmp_path / "cache2")
    before = {e.path: e for e in read_index(cache)}
    after = {e.path: e for e in read_index(tmp_path / "cache2")}
    assert n == len(before) and set(after) == set(before)
    for path, e in after.items():
        assert e.status == before[path].status
        if e.status != "ok":
            continue
        old, new = load_track(cache, before[path]), load_track(tmp_path / "cache2", e)
        assert e.frames == len(new["crops"]) == 16
        assert new["crops"].shape[1:] == old["crops"].shape[1:]
        assert new["dense"].shape == (16, 68, 2)  # the 68 points travel with the crops
        # JPEG at quality 90: close to the cached crops
        j = new["indices"]
        k = [list(old["indices"]).index(i) for i in j]
        err = abs(new["crops"].astype(int) - old["crops"][k].astype(int)).mean()
        assert err < 4
    recipe = _config(tmp_path, real_folder, tmp_path / "cache2", data="", cache_frames=16)
    assert main(["--config", recipe]) == 0
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_without_data_the_settings_of_a_dataset_are_said_to_be_unused(cache, caplog) -> None:
    """With ``data ""`` the cache's index is the dataset: a layout or quality given is not
    applied, and the run says so instead of dropping it silently."""
    import types

    from training.two_stage import dataset_items

    cfg = types.SimpleNamespace(data="", layout="ffpp", quality="c23", cache_dir=cache)
    with caplog.at_level(logging.WARNING, logger="training.two_stage"):
        items = dataset_items(cfg)
    assert items and "layout 'ffpp', quality 'c23' is not used" in caplog.text
    caplog.clear()
    dataset_items(types.SimpleNamespace(data="", layout="auto", quality="", cache_dir=cache))
    assert "not used" not in caplog.text


def test_frame_pairs_reenact_from_another_frame(cache) -> None:
    """reenact_prob 1: every pair is a cached frame and that frame re-animated from another
    frame of its track (training.reenact), which changes the face and keeps the corners."""
    import numpy as np

    from training.data import TrackStore
    from training.preprocess import load_track, read_index
    from training.selfblend import SBI
    from training.two_stage import FramePairs

    entries = [e for e in read_index(cache) if e.status == "ok"]
    pairs = FramePairs(
        TrackStore(cache, dense=False), entries, SBI, 0.0, 0, StageConfig(reenact_prob=1.0)
    )
    changed = 0
    for i in range(0, len(pairs), max(1, len(pairs) // 6)):
        entry, j = pairs.index[i]
        pair = pairs[i].numpy()
        frame = load_track(cache, entry)["crops"][j]
        assert np.array_equal(pair[0], frame) or np.array_equal(pair[0], frame[:, ::-1])
        diff = np.abs(pair[1].astype(int) - pair[0].astype(int)).sum(-1)
        changed += diff.mean() > 0.5
    assert changed >= 3


def test_frame_pairs_degrade_real_and_fake_alike(cache) -> None:
    """degrade_prob 1: the real side of a pair is degraded as well as its pseudo-fake (the
    same draws up to the degradation, so the plain pair is the degraded pair's original)."""
    import numpy as np

    from training.data import TrackStore
    from training.preprocess import read_index
    from training.selfblend import SBI
    from training.two_stage import FramePairs

    entries = [e for e in read_index(cache) if e.status == "ok"]
    store = TrackStore(cache, dense=False)
    plain = FramePairs(store, entries, SBI, 0.0, 0)
    degraded = FramePairs(store, entries, SBI, 0.0, 0, StageConfig(degrade_prob=1.0))
    for i in range(0, len(plain), max(1, len(plain) // 4)):
        before, after = plain[i].numpy(), degraded[i].numpy()
        for side in (0, 1):  # real, fake
            assert not np.array_equal(before[side], after[side])
            assert np.abs(before[side].astype(int) - after[side]).mean() < 40


def test_frame_pairs_jitter_real_and_fake_alike(cache) -> None:
    """jitter_prob 1: both sides of a pair are reframed by one draw, so where the pseudo-fake
    left the frame alone (a corner) they stay equal."""
    import numpy as np

    from training.data import TrackStore
    from training.preprocess import read_index
    from training.selfblend import SBI
    from training.two_stage import FramePairs

    entries = [e for e in read_index(cache) if e.status == "ok"]
    store = TrackStore(cache, dense=False)
    plain = FramePairs(store, entries, SBI, 0.0, 0)
    jittered = FramePairs(store, entries, SBI, 0.0, 0, StageConfig(jitter_prob=1.0))
    corner = (slice(0, 8), slice(0, 8))
    for i in range(0, len(plain), max(1, len(plain) // 4)):
        real, fake = jittered[i].numpy()
        assert not np.array_equal(real, plain[i].numpy()[0])
        np.testing.assert_array_equal(real[corner], fake[corner])


def test_degrade_plan_draws_before_or_after_and_nothing_without_before() -> None:
    """degrade_before 0 draws nothing (old runs draw as they did); otherwise a clip is degraded
    at most once, before its pseudo-fake is made or after it."""
    import numpy as np

    from training.two_stage import degrade_plan

    rng = np.random.default_rng(0)
    assert degrade_plan(rng, 0.6, 0.0) is None
    assert rng.random() == np.random.default_rng(0).random()
    assert degrade_plan(rng, 1.0, 1.0) == (True, False)
    assert degrade_plan(rng, 0.0, 1.0) == (False, False)
    plans = [degrade_plan(np.random.default_rng(s), 1.0, 0.5) for s in range(40)]
    assert set(plans) == {(True, False), (False, True)}


def test_frame_pairs_degraded_before_the_fake_is_made(cache) -> None:
    """degrade_before 1: the frame is degraded first and its pseudo-fake made from it, so
    outside the blend the fake is the degraded real itself; degraded after (alike), each side
    gets noise of its own."""
    import numpy as np

    from training.data import TrackStore
    from training.preprocess import read_index
    from training.selfblend import SBI
    from training.two_stage import FramePairs

    entries = [e for e in read_index(cache) if e.status == "ok"]
    store = TrackStore(cache, dense=False)
    plain = FramePairs(store, entries, SBI, 0.0, 0)
    noisy = StageConfig(degrade_prob=1.0, degrade_kinds="noise")
    before = FramePairs(store, entries, SBI, 0.0, 0, dataclasses.replace(noisy, degrade_before=1.0))
    after = FramePairs(store, entries, SBI, 0.0, 0, noisy)
    corner = (slice(0, 12), slice(0, 12))
    for i in range(0, len(plain), max(1, len(plain) // 4)):
        real, fake = before[i].numpy()
        assert not np.array_equal(real, fake)
        assert not np.array_equal(real, plain[i].numpy()[0])  # degraded
        np.testing.assert_array_equal(fake[corner], real[corner])
        real, fake = after[i].numpy()
        assert not np.array_equal(fake[corner], real[corner])


def test_packages_as_default_with_a_card_from_its_record(run, real_folder, tmp_path) -> None:
    """package_default ships a two-stage run: the weights copied, the card's sha256, the
    development-set table computed from training.evaluate reports (flag counts at each
    report's threshold), splits counted by person; a report of the shipped weights is
    required."""
    from scanner.files import file_sha256
    from training.package_default import main as package

    out, _ = run
    weights = out / "model.safetensors"
    recipe = tmp_path / "videos.csv"
    lines = ["path,label,group,source"]
    for k, video in enumerate(sorted((real_folder / "real").glob("*.mp4"))):
        lines.append(f"{video},real,real,person{k // 2}")  # two clips per person
    recipe.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def report(model: str, path: Path, faceswap: float = 0.75) -> str:
        videos = [
            {"path": "r1", "group": "real", "label": 0, "score": 0.2},
            {"path": "r2", "group": "real", "label": 0, "score": 0.9},
            {"path": "f1", "group": "faceswap", "label": 1, "score": 0.95},
            {"path": "f2", "group": "lipsync", "label": 1, "score": 0.1},
        ]
        groups = [
            {"group": "all", "auc": 0.5},
            {"group": "faceswap", "auc": faceswap, "auc_low": 0.55, "auc_high": 0.9, "n": 1},
        ]
        body = {"model": model, "threshold": 0.5, "groups": groups, "videos": videos}
        path.write_text(json.dumps(body), encoding="utf-8")
        return str(path)

    dest = tmp_path / "models"
    dest.mkdir()
    args = ["--run", str(out), "--dest", str(dest), "--recipe", str(recipe)]
    args += ["--manifest", str(tmp_path / "none.csv"), "--train-manifest", str(tmp_path / "no.csv")]
    other = report("someone-else@000000000000", tmp_path / "other.json", faceswap=0.6)
    with pytest.raises(ValueError, match="no --dev-eval report is of"):
        package([*args, "--dev-eval", f"old={other}"])
    mine = report(load_checkpoint(weights).label, tmp_path / "mine.json")
    assert package([*args, "--dev-eval", f"old={other}", "--dev-eval", f"new=model={mine}"]) == 0
    shipped = dest / "default.safetensors"
    card = (dest / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert file_sha256(shipped) == file_sha256(weights) and f"`{file_sha256(shipped)}`" in card
    assert "| new=model | 0.500 | 0.000-1.000 | 0.750 | n/a | n/a | n/a | 1 / 2 | 1 / 2 |" in card
    summary = json.loads((out / "two_stage.json").read_text())
    for part, paths in summary["splits"].items():
        people = {int(Path(p).stem[-1]) // 2 for p in paths}
        assert f"  - {part}: {len(paths)} videos of {len(people)} people" in card
    assert "research and evaluation" in card and "Limits" in card
    # the first limit is written from the shipped model's own report, not the first one given
    assert "it ranks face swaps (0.750, 95 % interval 0.550-0.900, 1 fake) above" in " ".join(
        card.split()
    )


def test_generated_pseudo_fakes_train_their_autoencoder_once(cache, tmp_path, caplog) -> None:
    """generated_prob > 0: the run trains one autoencoder per generator kind on the training
    frames and keeps them; a resumed run reads them back (the same drawings); frame pairs then
    draw with them."""
    import numpy as np

    from training.data import TrackStore
    from training.fingerprint import FINGERPRINT, file_name
    from training.preprocess import read_index
    from training.selfblend import SBI
    from training.two_stage import FramePairs, fingerprint_generator

    entries = [e for e in read_index(cache) if e.status == "ok"]
    store = TrackStore(cache, dense=False)
    kinds = "transposed,restore-shuffle"
    cfg, st = read_configs(
        None, {"generated_prob": 1.0, "generator_steps": 3, "generator_kinds": kinds}
    )
    assert fingerprint_generator(cfg, StageConfig(), store, entries, tmp_path) is None
    first = fingerprint_generator(cfg, st, store, entries, tmp_path)
    assert (tmp_path / FINGERPRINT).is_file()
    assert (tmp_path / file_name("restore-shuffle")).is_file()
    record = json.loads((tmp_path / "fingerprint.json").read_text())
    assert sorted(record) == ["restore-shuffle", "transposed"]
    assert record["restore-shuffle"]["steps"] == 3
    with caplog.at_level("INFO", logger="training"):
        again = fingerprint_generator(cfg, st, store, entries, tmp_path)
    assert caplog.text.count("read from") == 2
    assert "outside this run's training split" not in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="training"):  # a run whose split holds fewer videos
        fingerprint_generator(cfg, st, store, entries[1:], tmp_path)
    assert caplog.text.count("trained on frames of 1 videos outside this run's training") == 2
    crops = store.frames(entries[0], np.array([0]))[0]
    for seed in range(4):  # the same generator drawn by the same rng, the same drawing
        np.testing.assert_array_equal(
            first(crops, np.random.default_rng(seed)), again(crops, np.random.default_rng(seed))
        )
    pairs = FramePairs(store, entries, SBI, 0.0, 0, StageConfig(generated_prob=1.0), first)
    real, fake = pairs[0].numpy()
    assert not np.array_equal(real, fake)
    # generated_lower confines the pasted drawings to the lower face: the top rows stay real
    _, lower = read_configs(None, {"generated_prob": 1.0, "generated_lower": 1.0})
    pairs = FramePairs(store, entries, SBI, 0.0, 0, lower, first)
    pasted = [p.numpy() for p in (pairs[i] for i in range(len(pairs)))]
    pasted = [(r, f) for r, f in pasted if not np.array_equal(r, f) and np.array_equal(r[0], f[0])]
    assert pasted and all(
        np.array_equal(r[: r.shape[0] // 3], f[: f.shape[0] // 3]) for r, f in pasted
    )


def test_card_settings_name_the_generated_pseudo_fakes() -> None:
    """The card's recipe line says how many autoencoders drew the generated pseudo-fakes, how
    many replaced the whole crop and where the others were pasted; a run without them says
    nothing of them."""
    from training.package_default import _stage_settings

    record = {"head_stage": {"history": [0.7, 0.8]}}
    base = {"frame_epochs": 0.5, "frame_pairs": 8, "feature_frames": 16, "feature_variants": 2}
    plain = _stage_settings(base, record)
    assert "autoencoder" not in plain and "best of 2 epochs" in plain
    one = _stage_settings(base | {"generated_prob": 0.6}, record)
    assert "redrawn by an autoencoder (transposed) in 0.6 of them" in one
    assert "lower face" not in one
    assert "(0.3 of those the whole crop)" in one  # a run from before the setting: its fixed share
    cfg = {"generated_prob": 0.6, "generator_kinds": "transposed,shuffle", "generated_lower": 0.5}
    four = _stage_settings(base | cfg | {"generated_whole": 0.0}, record)
    assert "redrawn by 2 autoencoders (transposed, shuffle) in 0.6 of them" in four
    assert "(0 of those the whole crop; 0.5 of the others over the lower face only)" in four
    assert "reframed" not in four and "blurred alike" not in four
    matched = _stage_settings(base | cfg | {"generated_match": 1.0}, record)
    assert (
        "(0.3 of those the whole crop, 1 of these beside their real clip blurred alike;" in matched
    )
    assert "2 pseudo-fake variants per video" in four
    three = _stage_settings(base | {"real_variants": 3}, record)
    assert "2 pseudo-fake variants and 3 real versions per video" in three
    assert "reframed and recoloured alike with probability 0.5" in _stage_settings(
        base | {"jitter_prob": 0.5}, record
    )
    assert "frame stage from ImageNet weights: 0.5 passes" in plain
    soup = _stage_settings(base | {"frame_soup": 3, "seed": 0}, record)
    assert (
        "3 frame stages (seeds 0-2) from ImageNet weights, their weights averaged, each: " in soup
    )


def test_generated_match_adds_blurred_real_versions(tmp_path, real_folder, cache, monkeypatch):
    """generated_match 1 with every pseudo-fake a whole-crop redraw by a smoothing generator:
    each training video's feature cache holds, beside its real clip, one blurred real version
    per pseudo-fake variant; validation and test keep their one real clip."""
    import cv2
    import numpy as np

    import training.two_stage as two_stage

    def smoother(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in x])

    monkeypatch.setattr(two_stage, "fingerprint_generator", lambda *args: smoother)
    recipe = _config(
        tmp_path,
        real_folder,
        cache,
        generated_prob=1.0,
        generated_whole=1.0,
        generated_match=1.0,
        generator_steps=3,
        jpeg_prob=0.0,
    )
    assert main(["--config", recipe]) == 0
    feats = torch.load(tmp_path / "run" / FEATURES, map_location="cpu", weights_only=False)
    assert feats["train"] and all(len(vf.more_real) == 2 for vf in feats["train"])
    assert not any(torch.equal(m, vf.real) for vf in feats["train"] for m in vf.more_real)
    assert all(vf.more_real == [] for vf in feats["val"] + feats["test"])


def test_subsequence_sampling_trains_on_runs_and_scans_alike(tmp_path, real_folder):
    """sampling subsequence: the run caches runs of consecutive frames, reads every cached
    frame's features, and its model's contract samples runs of consecutive frames, so that
    dfscan scan samples as training did."""
    recipe = _config(
        tmp_path, real_folder, tmp_path / "runs_cache", sampling="subsequence", cache_frames=15
    )
    assert main(["--config", recipe]) == 0
    feats = torch.load(tmp_path / "run" / FEATURES, map_location="cpu", weights_only=False)
    videos = feats["train"] + feats["val"] + feats["test"]
    assert videos and all(len(vf.real) == vf.entry.frames == 15 for vf in videos)
    ck = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert ck.meta.preprocessing.sampling == "subsequence"


def test_real_variants_give_training_videos_more_real_versions(tmp_path, real_folder, cache):
    """real_variants 2: each training video gets a second real version with its own draws
    (degraded otherwise), validation and test keep one; the head draws among them; a feature
    cache written before the setting reads back with none."""
    import numpy as np

    from training.two_stage import VideoFeatures, _clip_batch

    # re-rendered pseudo-fakes leave their real clip as it is: no changed target side joins
    recipe = _config(
        tmp_path, real_folder, cache, real_variants=2, degrade_prob=1.0, rerender_prob=1.0
    )
    assert main(["--config", recipe]) == 0
    feats = torch.load(tmp_path / "run" / FEATURES, map_location="cpu", weights_only=False)
    assert feats["train"] and all(len(vf.more_real) == 1 for vf in feats["train"])
    assert not any(torch.equal(vf.more_real[0], vf.real) for vf in feats["train"])
    assert all(vf.more_real == [] for vf in feats["val"] + feats["test"])
    vf = feats["train"][0]
    n = len(vf.real)
    seen = set()
    for seed in range(16):
        clip = _clip_batch([vf], n, np.random.default_rng(seed), fake=False)[0]
        seen.add(0 if torch.equal(clip, vf.real.float()) else 1)
        if seen == {0, 1}:
            break
    assert seen == {0, 1}
    old = VideoFeatures.__new__(VideoFeatures)
    old.__setstate__({k: v for k, v in vars(vf).items() if k != "more_real"})
    assert old.more_real == [] and torch.equal(old.real, vf.real)
    with pytest.raises(ValueError, match="real_variants"):
        StageConfig(real_variants=0)


def _dev_report(**families: tuple[float, float, float]) -> dict:
    """A training.evaluate report's groups: family -> (AUC, interval low, interval high)."""
    groups = [{"group": "all", "auc": 0.6, "auc_low": 0.5, "auc_high": 0.7, "n": 9}]
    for family, (auc, low, high) in families.items():
        groups.append({"group": family, "auc": auc, "auc_low": low, "auc_high": high, "n": 3})
    return {"groups": groups}


def _limit(**families: tuple[float, float, float]) -> str:
    from training.package_default import transfer_limit_bullet

    return " ".join(transfer_limit_bullet(_dev_report(**families)).split())


def test_card_limit_places_each_family_by_its_interval() -> None:
    """The card's first limit names each manipulation family by where the model's own
    development report puts it: above real footage only when its whole 95 % interval lies
    above 0.5, below only when it lies under, otherwise not told from real footage; a family
    without a figure is said to be unmeasured."""
    text = _limit(
        faceswap=(0.86, 0.71, 0.96),
        reenactment=(0.3, 0.1, 0.49),
        lipsync=(0.54, 0.35, 0.72),
        other=(0.61, 0.17, 1.0),
    )
    assert text.startswith("- Self-blending teaches")
    assert "it ranks face swaps (0.860, 95 % interval 0.710-0.960, 3 fakes) above" in text
    assert (
        "it does not tell lip-sync and audio-driven heads (0.540, 95 % interval 0.350-0.720, "
        "3 fakes) and fully generated people (0.610, 95 % interval 0.170-1.000, 3 fakes) from "
        "real footage" in text
    )
    assert "it ranks reenactment (0.300, 95 % interval 0.100-0.490, 3 fakes) *below*" in text
    assert "says little" in text
    # the interval's ends decide, not the point estimate: 0.5 itself is chance
    edge = _limit(faceswap=(0.7, 0.5, 0.9), lipsync=(0.45, 0.2, 0.5))
    assert "ranks" not in edge and "does not tell face swaps" in edge and "and lip-sync" in edge
    good = _limit(faceswap=(0.9, 0.8, 1.0), lipsync=(0.7, 0.6, 0.8))
    assert "face swaps (0.900" in good and "and lip-sync" in good
    assert "does not tell" not in good and "below" not in good and "says little" not in good
    assert "reenactment and fully generated people not measured" in good
    nan = _limit(faceswap=(float("nan"), float("nan"), float("nan")), other=(0.9, 0.8, 1.0))
    assert "face swaps, reenactment and lip-sync and audio-driven heads not measured" in nan
    with pytest.raises(ValueError, match="no manipulation family"):
        _limit()


def test_donors_come_from_other_people_nearest_in_landmarks() -> None:
    """A donor clip is another identity's, the nearest of the candidates in five-point
    landmarks, as many frames as the clip; no donor where every video is the same person's."""
    import numpy as np

    from training.preprocess import CacheEntry
    from training.two_stage import Donors

    offsets = {"a1": 0.0, "a2": 1.0, "b": 30.0, "c": 4.0, "d": 60.0}
    entries = [CacheEntry(f"{k}.mp4", 0, "g", k[0], "train", "ok", f"{k}.npz", 10) for k in offsets]
    five = np.tile(np.arange(10, dtype=np.float32).reshape(5, 2), (3, 1, 1))

    class Store:
        def track(self, e):
            return {"landmarks": np.tile(five[0] + offsets[e.path[:-4]], (e.frames, 1, 1))}

        def frames(self, e, idx):
            return (
                np.full((len(idx), 4, 4, 3), len(e.path), np.uint8),
                self.track(e)["landmarks"][idx],
                None,
            )

    donors = Donors(Store(), entries, candidates=8)
    target, positions = entries[0], np.array([0, 4, 9])
    for seed in range(5):
        crops, points, dense = donors(target, positions, five, np.random.default_rng(seed))
        assert crops.shape[0] == 3 and dense is None
        np.testing.assert_allclose(points, five + offsets["c"])  # nearest of other people: c
    one = Donors(Store(), entries, candidates=1)
    picked = {
        one.pick(target, positions[:1], five[:1], np.random.default_rng(s))[0].source
        for s in range(30)
    }
    assert picked == {"b", "c", "d"}  # one candidate: any other person, never a1's a2
    assert Donors(Store(), entries[:2])(target, positions, five, np.random.default_rng(0)) is None
    # the clip's positions scaled to a donor track of another length; the same length preferred
    longer = dataclasses.replace(entries[2], frames=19)
    _, idx = Donors(Store(), [target, longer]).pick(
        target, positions, five, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(idx, [0, 8, 18])
    chosen, _ = Donors(Store(), [target, longer, entries[4]]).pick(
        target, positions, five, np.random.default_rng(0)
    )
    assert chosen is entries[4]  # farther in landmarks, but as many frames as the clip's
    with pytest.raises(ValueError, match="degrade_before"):
        StageConfig(swap_prob=0.5, degrade_before=0.5)
    with pytest.raises(ValueError, match="reference frame"):  # pasted undegraded, too
        StageConfig(reenact_prob=0.5, degrade_before=0.5)


def test_frame_pairs_swap_in_another_persons_face(cache) -> None:
    """swap_prob 1: every pair asks for a donor of another identity than its own video's,
    and its fake is blended from the donor's frame (equal to nothing of its own track)."""
    import numpy as np

    from training.data import TrackStore
    from training.preprocess import read_index
    from training.selfblend import SBI
    from training.two_stage import FramePairs

    entries = [e for e in read_index(cache) if e.status == "ok"]
    assert len({e.source for e in entries}) > 1
    swapped = FramePairs(
        TrackStore(cache, dense=False), entries, SBI, 0.0, 0, StageConfig(swap_prob=1.0)
    )
    asked, pick = [], swapped.donors.pick

    def recorded(target, positions, five, rng):
        picked = pick(target, positions, five, rng)
        asked.append((target, picked))
        return picked

    swapped.donors.pick = recorded
    for i in range(0, len(swapped), max(1, len(swapped) // 6)):
        entry, _ = swapped.index[i]
        real, fake = swapped[i].numpy()
        target, (donor, frames) = asked[-1]
        assert target == entry and donor.source != entry.source and len(frames) == 1
        assert not np.array_equal(real, fake)
    assert len(asked) >= 6


def test_swap_prob_blends_donors_of_the_same_split_in_both_stages(
    tmp_path, real_folder, cache, monkeypatch
) -> None:
    """swap_prob 1 through a whole run: the frame stage and the feature cache ask for donors,
    each another person's video of the clip's own split, as many frames as the clip."""
    from training.two_stage import Donors

    asked = []
    pick = Donors.pick

    def recorded(self, target, positions, five, rng):
        picked = pick(self, target, positions, five, rng)
        asked.append((self, target, len(positions), len(five), picked))
        return picked

    monkeypatch.setattr(Donors, "pick", recorded)
    recipe = _config(tmp_path, real_folder, cache, swap_prob=1.0)
    assert main(["--config", recipe]) == 0
    clips = [a for a in asked if a[2] > 1]  # the feature cache's clips; frame pairs ask for one
    assert any(a[4] for a in clips) and len(clips) < len(asked)
    assert len({id(a[0]) for a in clips}) == 3  # one donor list per split: train, val, test
    for donors, target, n, n_five, picked in asked:
        assert n == n_five
        if picked is None:  # a split of one person (the test split here): a self-blend
            assert {e.source for e in donors.entries} == {target.source}
            continue
        donor, frames = picked
        assert target in donors.entries and donor in donors.entries  # the same split
        assert donor.source != target.source and len(frames) == n


def test_average_states_is_the_mean_and_keeps_integer_counters() -> None:
    from training.two_stage import average_states

    a = {
        "w": torch.tensor([1.0, 2.0]),
        "n": torch.tensor(3),
        "h": torch.tensor([1.0], dtype=torch.float16),
    }
    b = {
        "w": torch.tensor([3.0, 6.0]),
        "n": torch.tensor(5),
        "h": torch.tensor([2.0], dtype=torch.float16),
    }
    mean = average_states([a, b])
    assert mean["w"].tolist() == [2.0, 4.0] and mean["n"].item() == 3
    assert mean["h"].dtype == torch.float16 and mean["h"].item() == 1.5
    with pytest.raises(ValueError, match="different keys"):
        average_states([a, {"w": a["w"]}])


def test_frame_soup_averages_its_members_and_resumes(tmp_path, real_folder, cache, caplog):
    """frame_soup 2: two frame stages from the same start (seeds 0 and 1), each in its own
    folder, then the head stage on their averaged backbone; a resumed run reads the soup."""
    from training.two_stage import SOUP_STATE, average_states

    recipe = _config(tmp_path, real_folder, cache, frame_soup=2, trainable_stages=1)
    assert main(["--config", recipe]) == 0
    out = tmp_path / "run"
    members = [torch.load(out / f"frame-{k}" / FRAME_STATE, weights_only=True) for k in (0, 1)]
    assert [m["step"] for m in members] == [3, 3]
    a, b = (m["model"] for m in members)
    trained = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert any(k.startswith("fc.") for k in trained) and any("backbone" in k for k in trained)
    soup = torch.load(out / SOUP_STATE, weights_only=True)
    want = average_states([a, b])
    assert all(torch.equal(soup["model"][k], want[k]) for k in want)
    model = load_checkpoint(out / "model.safetensors").model
    backbone = {
        k.removeprefix("backbone."): v for k, v in want.items() if k.startswith("backbone.")
    }
    for k, v in model.backbone.state_dict().items():  # the checkpoint holds it (fp16)
        assert torch.allclose(v.float(), backbone[k].float(), atol=1e-2), k
    summary = json.loads((out / "two_stage.json").read_text())
    assert len(summary["frame_stage"]["members"]) == 2
    assert 0.0 <= summary["frame_stage"]["soup_val_frame_auc"] <= 1.0
    caplog.clear()
    caplog.set_level("INFO")
    assert main(["--config", recipe, "--resume"]) == 0
    assert "frame soup: read back" in caplog.text and "frame soup: member" not in caplog.text


def test_sharpness_aware_step_takes_the_gradient_uphill_and_keeps_the_weights() -> None:
    """climb moves the weights rho (L2 over all of them) along the gradient; the gradient is
    then computed there; descend puts the weights back exactly, keeping that gradient."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    x = torch.randn(8, 4)
    params = list(net.parameters())
    before = [p.detach().clone() for p in params]
    net(x).pow(2).mean().backward()
    grads = [p.grad.clone() for p in params]
    moves = climb(params, 0.05)
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, before, strict=True)])
    assert step.norm().item() == pytest.approx(0.05, rel=1e-4)
    flat = torch.cat([g.flatten() for g in grads])
    assert torch.allclose(step, 0.05 * flat / flat.norm(), atol=1e-7)  # uphill, along the gradient
    for p in params:
        p.grad = None
    net(x).pow(2).mean().backward()
    uphill = [p.grad.clone() for p in params]
    descend(moves)
    assert all(torch.allclose(p, b, atol=1e-7) for p, b in zip(params, before, strict=True))
    assert all(torch.equal(p.grad, g) for p, g in zip(params, uphill, strict=True))
    assert not all(torch.allclose(u, g) for u, g in zip(uphill, grads, strict=True))
    assert climb([torch.nn.Parameter(torch.ones(2))], 0.05) == []  # no gradient: no move


def test_frame_stage_with_sharpness_aware_steps(tmp_path, real_folder, cache, caplog) -> None:
    """frame_sam_rho trains the frame stage with sharpness-aware steps (said in the log) into
    other weights than plain steps from the same seed; a radius of 1 or more is refused."""
    caplog.set_level("INFO")
    states = {}
    for rho in (0.0, 0.05):
        folder = tmp_path / f"rho{rho}"
        folder.mkdir()
        recipe = _config(folder, real_folder, cache, frame_sam_rho=rho, trainable_stages=1)
        assert main(["--config", recipe]) == 0
        states[rho] = torch.load(folder / "run" / FRAME_STATE, weights_only=True)["model"]
    assert "sharpness-aware (rho 0.05)" in caplog.text
    plain, sam = states[0.0], states[0.05]
    assert not torch.equal(plain["fc.weight"], sam["fc.weight"])
    with pytest.raises(ValueError, match="frame_sam_rho"):
        StageConfig(frame_sam_rho=1.0)


def test_the_self_blends_recoloured_targets_are_real_versions_for_the_head(
    tmp_path, real_folder, cache
):
    """Half of the self-blends recolour, blur or sharpen their target side whole (SBI's
    pairs): that target is a real version of the training video in the head's feature cache,
    so that a clip-wide change does not read as a fake; validation and test keep one real."""
    recipe = _config(tmp_path, real_folder, cache, feature_variants=4, jpeg_prob=0.0)
    assert main(["--config", recipe]) == 0
    feats = torch.load(tmp_path / "run" / FEATURES, map_location="cpu", weights_only=False)
    counts = [len(vf.more_real) for vf in feats["train"]]
    assert all(c <= 4 for c in counts) and 0 < sum(counts) < 4 * len(counts)  # some, not all
    assert not any(torch.equal(m, vf.real) for vf in feats["train"] for m in vf.more_real)
    assert all(vf.more_real == [] for vf in feats["val"] + feats["test"])


def test_end_to_end_real_clips_get_the_self_blends_whole_clip_changes(real_folder, cache):
    """ClipDataset: training's real clips beside self-blended ones are, about half of the
    time, the blend's recoloured target side (as SBI pairs them); validation's stay raw."""
    import numpy as np

    from training.data import ClipDataset, Sample
    from training.preprocess import read_index

    entries = read_index(cache)[:4]
    samples = [Sample(e, 0, False) for e in entries] + [Sample(e, 1, True) for e in entries]
    raw = ClipDataset(cache, samples, 4, "uniform", vary=False)
    paired = ClipDataset(cache, samples, 4, "uniform")
    assert paired.pairs_reals and not raw.pairs_reals
    changed = []
    for epoch in range(4):
        paired.set_epoch(epoch)
        changed += [not torch.equal(paired[i][0], raw[i][0]) for i in range(len(entries))]
    assert 0 < np.mean(changed) < 1


def test_the_cap_per_person_counts_spellings_of_one_person_together(real_folder) -> None:
    """'Alice' and 'alice ' are one person: two videos under each spelling, cap 2, keep 2."""
    from training.datasets import VideoItem

    items = [
        VideoItem(real_folder / f"{name}{k}.mp4", 0, "real", name)
        for name in ("Alice", "alice ")
        for k in range(2)
    ]
    assert len(cap_per_identity(items, 2, seed=0)) == 2
