"""Tests for training.metrics (AUC, ROC, calibration, summaries) and training.plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from training.metrics import (
    Calibration,
    GroupMetrics,
    NonFinite,
    accuracy,
    auc_interval,
    calibrate_threshold,
    format_table,
    mean_std,
    roc_auc,
    roc_curve,
    summarise,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Reference AUC by brute force over all (fake, real) pairs, ties counting one half."""
    fake = scores[labels == 1][:, None]
    real = scores[labels == 0][None, :]
    return float(((fake > real) + 0.5 * (fake == real)).mean())


def fpr_tpr_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    pred = scores >= threshold
    return float(pred[labels == 0].mean()), float(pred[labels == 1].mean())


# --- roc_auc -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        ([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.8, 0.9, 0.1, 0.2], 0.0),
        # One tied (fake, real) pair out of four counts one half: (3 + 0.5) / 4.
        ([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9], 0.875),
        # Fakes 0.3, 0.7 against reals 0.3, 0.3, 0.9: 0.5 + 0.5 + 0 + 1 + 1 + 0 = 3 of 6.
        ([1, 0, 0, 1, 0], [0.3, 0.3, 0.3, 0.7, 0.9], 0.5),
    ],
)
def test_roc_auc_hand_computed(labels: list[int], scores: list[float], expected: float) -> None:
    assert roc_auc(np.array(labels), np.array(scores)) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_single_class_is_nan() -> None:
    assert math.isnan(roc_auc(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9])))
    assert math.isnan(roc_auc(np.array([0, 0]), np.array([0.2, 0.5])))
    assert math.isnan(roc_auc(np.array([], dtype=int), np.array([])))


def test_roc_auc_matches_pairwise_with_heavy_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.integers(0, 2, 200)
        labels[:2] = (0, 1)
        scores = rng.integers(0, 7, 200) / 6.0  # only 7 distinct values: many ties
        assert roc_auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)


def test_roc_auc_accepts_bool_labels_and_rejects_bad_input() -> None:
    assert roc_auc(np.array([False, True]), np.array([0.2, 0.9])) == 1.0
    with pytest.raises(ValueError):
        roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(NonFinite):  # a diverged model, not bad input
        roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError):
        roc_auc(np.array([0, 1, 1]), np.array([0.1, 0.2]))


# --- roc_curve -----------------------------------------------------------------------------


def test_roc_curve_hand_computed() -> None:
    fpr, tpr, thr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])


def test_roc_curve_one_point_per_distinct_score_and_matches_auc() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 300)
    scores = np.round(np.clip(rng.normal(0.4 + 0.25 * labels, 0.2), 0, 1), 2)  # with ties
    fpr, tpr, thr = roc_curve(labels, scores)

    assert thr[0] == np.inf
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    np.testing.assert_array_equal(thr[1:], np.unique(scores)[::-1])
    assert np.all(np.diff(thr) < 0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # Each point is the rates at "score >= threshold".
    for i in range(1, len(thr)):
        assert (fpr[i], tpr[i]) == pytest.approx(fpr_tpr_at(labels, scores, thr[i]))
    # Trapezoids over the tie-collapsed curve give exactly the tie-aware AUC.
    trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    assert trapezoid == pytest.approx(roc_auc(labels, scores), abs=1e-12)
    assert trapezoid == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)


def test_roc_curve_single_class_rate_is_nan() -> None:
    fpr, tpr, thr = roc_curve(np.array([1, 1]), np.array([0.3, 0.6]))
    assert np.isnan(fpr).all()
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0])
    assert len(thr) == 3


# --- accuracy ------------------------------------------------------------------------------


def test_accuracy_uses_greater_or_equal() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.2, 0.5, 0.5, 0.9])
    # At 0.5 the real at 0.5 is flagged fake (wrong) and the fake at 0.5 is caught (right).
    assert accuracy(labels, scores, 0.5) == 0.75
    assert accuracy(labels, scores, 0.51) == 0.75
    assert accuracy(labels, scores, 0.0) == 0.5
    assert accuracy(labels, scores, 1.0) == 0.5
    assert accuracy(labels, scores, 0.3) == 0.75
    # A fake scoring exactly the threshold counts as caught.
    assert accuracy(np.array([0, 1, 1]), np.array([0.2, 0.5, 0.9]), 0.5) == 1.0
    assert math.isnan(accuracy(np.array([], dtype=int), np.array([]), 0.5))


# --- calibrate_threshold -------------------------------------------------------------------


def constructed_validation() -> tuple[np.ndarray, np.ndarray]:
    """100 reals at 0.00..0.99 and 50 fakes at 0.505..0.995, interleaved with the top reals."""
    real = np.arange(100) / 100.0
    fake = 0.505 + np.arange(50) / 100.0
    labels = np.r_[np.zeros(100, int), np.ones(50, int)]
    return labels, np.r_[real, fake]


def test_calibration_meets_target_fpr_exactly() -> None:
    labels, scores = constructed_validation()
    cal = calibrate_threshold(labels, scores, target_fpr=0.05)

    assert isinstance(cal, Calibration)
    assert cal.method == "target_fpr"
    assert cal.target_fpr == 0.05
    assert (cal.n_real, cal.n_fake) == (100, 50)
    # Reals 0.95..0.99 (five of them) may be flagged; the threshold lies midway between the
    # real at 0.94 and the fake at 0.945 above it, not on a validation score.
    assert cal.threshold == pytest.approx((0.94 + 0.945) / 2.0)
    assert cal.achieved_fpr == 0.05
    assert cal.tpr == pytest.approx(6 / 50)  # fakes 0.945, 0.955, ..., 0.995
    assert cal.accuracy == pytest.approx((95 + 6) / 150)
    assert (cal.achieved_fpr, cal.tpr) == pytest.approx(fpr_tpr_at(labels, scores, cal.threshold))
    assert cal.accuracy == pytest.approx(accuracy(labels, scores, cal.threshold))

    # Any lower threshold takes in the next score down (the real at 0.94) and breaks the bound.
    next_lower = scores[scores < cal.threshold].max()
    assert fpr_tpr_at(labels, scores, next_lower)[0] > 0.05


def test_calibration_maximises_tpr_under_the_bound() -> None:
    rng = np.random.default_rng(11)
    for target in (0.0, 0.01, 0.05, 0.1, 0.3):
        labels = rng.integers(0, 2, 400)
        labels[:2] = (0, 1)
        scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1), 3)
        cal = calibrate_threshold(labels, scores, target_fpr=target)
        fpr, tpr, _ = roc_curve(labels, scores)
        assert cal.achieved_fpr <= target
        # The best operating point the validation data allows within the bound.
        assert cal.tpr == pytest.approx(tpr[fpr <= target].max())
        assert not np.any(scores == cal.threshold)  # never sits on a validation score
        assert 0.0 <= cal.threshold <= 1.0


def test_calibration_zero_fpr_goes_just_above_max_real() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.4, 0.6])  # the top fake ties the top real
    cal = calibrate_threshold(labels, scores, target_fpr=0.0)
    assert cal.achieved_fpr == 0.0
    assert cal.tpr == 0.0
    assert 0.6 < cal.threshold < 0.6 + 1e-9


def test_calibration_clamps_to_unit_interval_and_reports_what_it_got() -> None:
    labels = np.array([0, 0, 1])
    scores = np.array([0.2, 1.0, 1.0])
    cal = calibrate_threshold(labels, scores, target_fpr=0.0)
    # Nothing above a real at 1.0 fits in [0, 1]; the honest achieved FPR exceeds the target.
    assert cal.threshold == 1.0
    assert (cal.achieved_fpr, cal.tpr) == (0.5, 1.0)


def test_calibration_separable_scores_split_in_the_middle() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.3, 0.7, 0.9])
    cal = calibrate_threshold(labels, scores, target_fpr=0.05)
    assert cal.threshold == pytest.approx(0.5)
    assert (cal.achieved_fpr, cal.tpr, cal.accuracy) == (0.0, 1.0, 1.0)


def test_calibration_errors() -> None:
    with pytest.raises(ValueError, match="real and fake"):
        calibrate_threshold(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9]))
    with pytest.raises(ValueError, match="real and fake"):
        calibrate_threshold(np.array([0, 0]), np.array([0.2, 0.5]))
    labels, scores = constructed_validation()
    for bad in (-0.01, 1.0, 1.5):
        with pytest.raises(ValueError, match="target_fpr"):
            calibrate_threshold(labels, scores, target_fpr=bad)


def test_calibration_to_dict_and_frozen() -> None:
    labels, scores = constructed_validation()
    cal = calibrate_threshold(labels, scores)
    d = cal.to_dict()
    assert set(d) == {
        "method",
        "target_fpr",
        "threshold",
        "achieved_fpr",
        "tpr",
        "accuracy",
        "n_real",
        "n_fake",
    }
    assert d["threshold"] == cal.threshold and d["n_real"] == 100
    assert type(d["n_real"]) is int and type(d["threshold"]) is float
    with pytest.raises(AttributeError):
        cal.threshold = 0.5  # type: ignore[misc]


# --- summarise / format_table / mean_std ---------------------------------------------------


def test_summarise_per_group_rows() -> None:
    labels = np.array([0, 1, 0, 1, 1, 1, 0])
    scores = np.array([0.2, 0.8, 0.6, 0.4, 0.9, 0.55, 0.1])
    groups = ["ffpp", "ffpp", "ffpp", "ffpp", "celebdf", "celebdf", "dfdc"]
    rows = summarise(labels, scores, groups, threshold=0.5)

    assert [r.group for r in rows] == ["all", "celebdf", "dfdc", "ffpp"]
    assert all(isinstance(r, GroupMetrics) for r in rows)
    every, celebdf, dfdc, ffpp = rows
    assert (every.n, every.n_real, every.n_fake) == (7, 3, 4)
    assert every.accuracy == pytest.approx(5 / 7)  # wrong: real 0.6, fake 0.4
    assert every.auc == pytest.approx(pairwise_auc(labels, scores))
    assert (celebdf.n, celebdf.n_real, celebdf.n_fake) == (2, 0, 2)
    # a one-class group is ranked against every video of the other class
    assert celebdf.accuracy == 1.0
    assert celebdf.auc == pytest.approx(5 / 6)  # 0.9 beats 0.2, 0.6, 0.1; 0.55 beats two
    assert (dfdc.n, dfdc.n_real, dfdc.n_fake) == (1, 1, 0)
    assert dfdc.accuracy == 1.0
    assert dfdc.auc == pytest.approx(1.0)  # 0.1 below every fake
    assert (ffpp.n, ffpp.n_real, ffpp.n_fake) == (4, 2, 2)
    assert ffpp.accuracy == 0.5
    assert ffpp.auc == pytest.approx(0.75)  # 0.8 beats both reals, 0.4 beats 0.2 only


def test_summarise_rejects_misaligned_groups() -> None:
    with pytest.raises(ValueError):
        summarise(np.array([0, 1]), np.array([0.1, 0.9]), ["a"], threshold=0.5)
    with pytest.raises(ValueError, match="named 'all'"):  # it would pass for the overall row
        summarise(np.array([0, 1]), np.array([0.1, 0.9]), ["all", "x"], threshold=0.5)


def test_format_table_lists_groups_and_values() -> None:
    labels = np.array([0, 1, 0, 1, 1])
    scores = np.array([0.2, 0.8, 0.6, 0.4, 0.9])
    groups = ["FaceForensics++", "FaceForensics++", "FaceForensics++", "FaceForensics++", "dfdc"]
    rows = summarise(labels, scores, groups, threshold=0.5)
    table = format_table(rows)
    lines = table.splitlines()

    assert lines[0].split() == ["group", "n", "real", "fake", "acc", "%", "AUC", "95%", "CI"]
    body = lines[2:]
    assert [line.split()[0] for line in body] == ["all", "FaceForensics++", "dfdc"]
    assert len({len(line) for line in lines[:1] + body}) == 1  # fixed width
    ffpp = body[1].split()
    assert ffpp[1:6] == ["4", "2", "2", "50.00", "0.7500"]
    low, high = (float(x) for x in ffpp[6].split("-"))
    assert low <= 0.75 <= high
    assert body[2].split()[-2] == "1.0000"  # dfdc's only fake against all real videos
    assert body[2].split()[-3] == "100.00"
    assert body[2].split()[-1] == "1.00-1.00"


def test_mean_std() -> None:
    mean, std = mean_std([0.8, 0.9, float("nan"), 1.0])
    assert mean == pytest.approx(0.9)
    assert std == pytest.approx(0.1)  # sample std (ddof=1) of 0.8, 0.9, 1.0
    assert mean_std([0.7]) == (0.7, 0.0)
    assert mean_std([0.7, float("nan")]) == (0.7, 0.0)
    for empty in ([], [float("nan")]):
        m, s = mean_std(empty)
        assert math.isnan(m) and math.isnan(s)


# --- plots ---------------------------------------------------------------------------------


def test_plot_curves_writes_png_and_skips_nan(tmp_path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    from training.plots import plot_curves

    assert matplotlib.get_backend().lower() == "agg"
    history = [
        {"epoch": 1, "train_loss": 0.7, "val_loss": 0.69, "val_accuracy": 0.55, "val_auc": 0.6},
        {"epoch": 2, "train_loss": 0.5, "val_loss": float("nan"), "val_accuracy": float("nan")},
        {"epoch": 3, "train_loss": 0.4, "val_loss": 0.45, "val_accuracy": 0.8, "val_auc": 0.88},
    ]
    figures_before = plt.get_fignums()
    out = plot_curves(history, tmp_path / "runs" / "curves.png")

    assert out == tmp_path / "runs" / "curves.png"
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert plt.get_fignums() == figures_before  # figure closed

    # Only NaN validation values, or nothing at all, still gives a picture.
    sparse = [{"epoch": 1, "train_loss": 0.7, "val_auc": float("nan")}]
    assert plot_curves(sparse, tmp_path / "sparse.png").read_bytes().startswith(PNG_SIGNATURE)
    assert plot_curves([], tmp_path / "empty.png").read_bytes().startswith(PNG_SIGNATURE)
    assert plt.get_fignums() == figures_before


def test_plot_roc_writes_png(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from training.plots import plot_roc

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 100)
    scores = np.clip(rng.normal(0.4 + 0.3 * labels, 0.2), 0, 1)
    figures_before = plt.get_fignums()
    out = plot_roc(labels, scores, tmp_path / "roc.png", title="val ROC")

    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    # A single class has no curve (AUC n/a) but must not fail.
    single = plot_roc(np.ones(5, int), np.linspace(0, 1, 5), tmp_path / "single.png")
    assert single.read_bytes().startswith(PNG_SIGNATURE)
    assert plt.get_fignums() == figures_before


def test_auc_interval_brackets_the_auc_and_narrows_with_more_videos() -> None:
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.r_[np.zeros(n), np.ones(n)].astype(int)
        return y, rng.normal(0.0, 1.0, 2 * n) + 0.8 * y  # overlapping classes

    y, s = sample(20)
    low, high = auc_interval(y, s)
    assert low < roc_auc(y, s) < high and 0.0 <= low and high <= 1.0
    assert auc_interval(y, s) == (low, high)  # seeded: the same interval again
    y2, s2 = sample(400)
    low2, high2 = auc_interval(y2, s2, resamples=500)
    assert high2 - low2 < (high - low) / 2
    separated = np.r_[np.zeros(5), np.ones(5)].astype(int)
    assert auc_interval(separated, separated + 0.1) == (1.0, 1.0)
    assert all(np.isnan(auc_interval(np.zeros(4, int), np.arange(4.0))))
    row = summarise(y, s, ["g"] * len(y), 0.5)[0]
    assert (row.auc_low, row.auc_high) == (low, high)


def test_auc_interval_by_units_resamples_whole_videos() -> None:
    """Four clips of each of 10 real and 10 fake videos, the clips of a video alike: drawn
    video by video the interval is that of 20 videos (clip by clip, far too narrow, as of 80
    independent ones); one unit per score gives the interval of independent scores."""
    rng = np.random.default_rng(1)
    video = np.r_[rng.normal(0, 1, 10), rng.normal(0.8, 1, 10)]
    y = np.repeat(np.r_[np.zeros(10), np.ones(10)].astype(int), 4)
    s = np.repeat(video, 4) + rng.normal(0, 0.01, 80)
    units = [f"v{i}" for i in np.repeat(np.arange(20), 4)]
    by_clip = auc_interval(y, s)
    by_video = auc_interval(y, s, units=units)
    per_video = auc_interval(np.r_[np.zeros(10), np.ones(10)].astype(int), video)
    width = lambda interval: interval[1] - interval[0]  # noqa: E731
    assert width(by_video) > 1.5 * width(by_clip)
    assert width(by_video) == pytest.approx(width(per_video), abs=0.08)
    singles = auc_interval(y, s, units=[str(i) for i in range(80)])
    assert width(singles) == pytest.approx(width(by_clip), abs=0.03)
    rows = summarise(y, s, ["g"] * 80, 0.5, units=units)
    assert (rows[0].auc_low, rows[0].auc_high) == by_video
