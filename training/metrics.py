"""Evaluation metrics for video-level deepfake scores: ROC AUC, ROC curve, accuracy, threshold
calibration at a target false-positive rate, per-group summaries and k-fold mean/std.

Conventions shared by every function here:

* ``labels`` is a 1-D array of length N with 0 = real and 1 = fake (bools are accepted);
* ``scores`` is a 1-D float array of length N, higher meaning "more likely fake" (the model's
  fake probability, so normally within [0, 1]), and must be finite;
* a video is predicted fake when ``score >= threshold``.

Pure numpy: no torch, no file or console I/O, so the functions can be used from the trainer,
the CLI and notebooks alike. Inputs are never modified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "Calibration",
    "GroupMetrics",
    "NonFinite",
    "accuracy",
    "calibrate_threshold",
    "format_table",
    "mean_std",
    "require_finite",
    "roc_auc",
    "roc_curve",
    "summarise",
]


class NonFinite(ArithmeticError):
    """A loss or scores that are NaN or infinite: training diverged (a learning rate too
    high, broken inputs) or the model is broken. Not a flag to correct, so not a ValueError:
    the entry points report it as such (``training.cli``)."""


def require_finite(loss: float, where: str) -> float:
    """``loss`` if it is finite, else NonFinite saying ``where`` (e.g. "frame stage, step 40")."""
    if not math.isfinite(loss):
        raise NonFinite(f"the loss is {loss} ({where}): training diverged")
    return loss


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (int64 labels in {0, 1}, float64 scores), both shape (N,)."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        # A NaN score would silently count as "real" under >= and corrupt every rate.
        raise NonFinite(f"{int((~np.isfinite(s)).sum())} of {s.size} scores are not finite")
    return y.astype(np.int64), s


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (shape (N,)), tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # rank of the last member of each tie block
    mean_rank = ends - (counts - 1) / 2.0
    return mean_rank[inverse.reshape(-1)]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, i.e. P(score of a random fake > score of a random real), with
    ties counted as one half (Mann-Whitney U from average ranks).

    Returns ``nan`` when fewer than two classes are present (AUC is undefined there).
    """
    y, s = _check(labels, scores)
    n_fake = int(y.sum())
    n_real = int(y.size - n_fake)
    if n_fake == 0 or n_real == 0:
        return float("nan")
    rank_sum = float(_average_ranks(s)[y == 1].sum())
    u = rank_sum - n_fake * (n_fake + 1) / 2.0
    return u / (n_fake * n_real)


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve as ``(fpr, tpr, thresholds)``, each of shape (D + 1,) for D distinct scores.

    ``thresholds`` is strictly decreasing: ``+inf`` first (nothing predicted fake, the point
    (0, 0)), then every distinct score from highest to lowest; the last point is (1, 1).
    ``fpr[i]`` / ``tpr[i]`` are the fractions of reals / fakes with ``score >= thresholds[i]``.
    A rate whose class is absent is all ``nan``.
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    # Last index of each run of equal scores: tied videos cross the threshold together, so the
    # curve gets one point per distinct score rather than a staircase inside a tie.
    last = np.flatnonzero(np.r_[s_desc[1:] != s_desc[:-1], True]) if s.size else np.array([], int)
    tp = np.r_[0, np.cumsum(y_desc)[last]].astype(np.float64)
    fp = np.r_[0, np.cumsum(1 - y_desc)[last]].astype(np.float64)
    n_fake, n_real = tp[-1], fp[-1]
    tpr = tp / n_fake if n_fake > 0 else np.full_like(tp, np.nan)
    fpr = fp / n_real if n_real > 0 else np.full_like(fp, np.nan)
    thresholds = np.r_[np.inf, s_desc[last]]
    return fpr, tpr, thresholds


def accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Fraction of videos classified correctly, predicting fake when ``score >= threshold``.

    Returns ``nan`` for empty input.
    """
    y, s = _check(labels, scores)
    if y.size == 0:
        return float("nan")
    return float(np.mean((s >= threshold).astype(np.int64) == y))


@dataclass(frozen=True)
class Calibration:
    """A decision threshold chosen on validation data, and how it performed there.

    ``achieved_fpr`` (reals flagged as fake), ``tpr`` (fakes caught) and ``accuracy`` are
    measured on the same validation scores at ``threshold``; expect them to drift on new data.
    """

    method: str
    target_fpr: float
    threshold: float
    achieved_fpr: float
    tpr: float
    accuracy: float
    n_real: int
    n_fake: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of the fields (for checkpoints and reports)."""
        return asdict(self)


def calibrate_threshold(
    labels: np.ndarray, scores: np.ndarray, target_fpr: float = 0.05
) -> Calibration:
    """Pick the threshold that catches the most fakes while flagging at most ``target_fpr`` of
    the real videos in this validation set.

    Candidates are the midpoints between consecutive distinct sorted scores (of both classes)
    and, when no score lies above the highest real score, a value just above it, so some
    candidate always meets the bound. Midpoints keep the rule from sitting exactly on a
    validation score, where the smallest shift in a new video's score would flip its label.
    Because the TPR can only fall as the threshold rises, the smallest candidate meeting the
    bound maximises the TPR. The result is clamped to [0, 1], the range of a probability;
    should the highest real score be 1.0 the clamp can push ``achieved_fpr`` above the target,
    and the recorded value then says so.

    Raises ``ValueError`` without at least one real and one fake video, or when ``target_fpr``
    is outside [0, 1).
    """
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must lie in [0, 1), got {target_fpr}")
    y, s = _check(labels, scores)
    real = np.sort(s[y == 0])
    fake = np.sort(s[y == 1])
    if real.size == 0 or fake.size == 0:
        raise ValueError(
            f"calibration needs real and fake videos, got {real.size} real and {fake.size} fake"
        )

    distinct = np.unique(s)
    candidates = (distinct[:-1] + distinct[1:]) / 2.0
    if real[-1] == distinct[-1]:
        # No score above the top real, hence no midpoint there: only this meets a zero FPR. Were
        # it always a candidate it would undercut the midpoint above the top real.
        candidates = np.r_[candidates, np.nextafter(real[-1], np.inf)]
    # Measure each candidate's FPR directly instead of inferring it from its position: the
    # midpoint of two adjacent floats rounds onto one of them.
    fpr = (real.size - np.searchsorted(real, candidates, side="left")) / real.size
    threshold = float(candidates[np.flatnonzero(fpr <= target_fpr)[0]])
    threshold = min(max(threshold, 0.0), 1.0)

    n_fp = int(real.size - np.searchsorted(real, threshold, side="left"))
    n_tp = int(fake.size - np.searchsorted(fake, threshold, side="left"))
    return Calibration(
        method="target_fpr",
        target_fpr=float(target_fpr),
        threshold=threshold,
        achieved_fpr=n_fp / real.size,
        tpr=n_tp / fake.size,
        accuracy=accuracy(y, s, threshold),
        n_real=int(real.size),
        n_fake=int(fake.size),
    )


@dataclass(frozen=True)
class GroupMetrics:
    """Metrics for one subset of videos (e.g. one dataset or manipulation method).

    ``accuracy`` is a fraction in [0, 1] at the threshold given to :func:`summarise`; ``auc``
    is ``nan`` when the group holds a single class.
    """

    group: str
    n: int
    n_real: int
    n_fake: int
    accuracy: float
    auc: float
    auc_low: float = float("nan")  # 95 % bootstrap interval of auc (auc_interval)
    auc_high: float = float("nan")


def auc_interval(
    labels: np.ndarray,
    scores: np.ndarray,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    units: Sequence[str] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`roc_auc`: real and fake videos are resampled
    with replacement, each class on its own (so every resample holds both), ``resamples``
    times. How far the AUC of this many videos could move on other videos of the same kind;
    ``(nan, nan)`` without both classes.

    ``units`` (aligned with ``labels``): what is resampled when scores are not independent,
    such as several clips of one video: each class's units are drawn whole, with all their
    scores (default: every score its own unit)."""
    y, s = _check(labels, scores)
    real, fake = s[y == 0], s[y == 1]
    if not real.size or not fake.size:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if units is not None:
        return _unit_interval(y, s, units, level, resamples, rng)
    both = np.r_[np.zeros(real.size), np.ones(fake.size)]
    aucs = [
        roc_auc(both, np.r_[rng.choice(real, real.size), rng.choice(fake, fake.size)])
        for _ in range(resamples)
    ]
    low, high = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _unit_interval(
    y: np.ndarray,
    s: np.ndarray,
    units: Sequence[str],
    level: float,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """``auc_interval`` drawing each class's units whole."""
    names = np.array([str(u) for u in units], dtype=object)
    if names.shape != y.shape:
        raise ValueError(f"units has {names.size} entries for {y.size} scores")
    members = []  # per class: the score indices of each of its units
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        _, first, inverse = np.unique(names[idx], return_index=True, return_inverse=True)
        members.append([idx[inverse == k] for k in range(first.size)])
    aucs = []
    for _ in range(resamples):
        drawn = [
            np.concatenate([group[i] for i in rng.integers(0, len(group), len(group))])
            for group in members
        ]
        both = np.r_[np.zeros(drawn[0].size), np.ones(drawn[1].size)]
        aucs.append(roc_auc(both, np.r_[s[drawn[0]], s[drawn[1]]]))
    low, high = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _group_row(
    name: str,
    y: np.ndarray,
    s: np.ndarray,
    threshold: float,
    units: np.ndarray | None = None,
) -> GroupMetrics:
    n_fake = int(y.sum())
    low, high = auc_interval(y, s, units=units)
    return GroupMetrics(
        group=name,
        n=int(y.size),
        n_real=int(y.size - n_fake),
        n_fake=n_fake,
        accuracy=accuracy(y, s, threshold),
        auc=roc_auc(y, s),
        auc_low=low,
        auc_high=high,
    )


def summarise(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: Sequence[str],
    threshold: float,
    units: Sequence[str] | None = None,
) -> list[GroupMetrics]:
    """One :class:`GroupMetrics` row for all videos (group ``"all"``) followed by one row per
    distinct name in ``groups`` (length N, aligned with ``labels``), sorted by name. No group
    may be called ``all``.

    A group of one class (a manipulation family's fakes, a folder of real clips) is ranked
    against every video of the other class: its AUC is that of its fakes against all the real
    videos (or of all the fakes against its real videos), its accuracy and counts its own.
    ``units``: what the AUC intervals resample whole (``auc_interval``), such as the video of
    each of several clips.
    """
    y, s = _check(labels, scores)
    names = np.array([str(x) for x in groups], dtype=object)
    if names.shape != y.shape:
        raise ValueError(f"groups has {names.size} entries for {y.size} videos")
    if "all" in names:
        raise ValueError("a group is named 'all', the name of the row of every video: rename it")
    whole = None if units is None else np.array([str(u) for u in units], dtype=object)
    if whole is not None and whole.shape != y.shape:
        raise ValueError(f"units has {whole.size} entries for {y.size} videos")
    rows = [_group_row("all", y, s, threshold, whole)]
    for name in sorted(set(names.tolist())):
        mask = names == name
        row = _group_row(name, y[mask], s[mask], threshold, None if whole is None else whole[mask])
        if row.n_real == 0 or row.n_fake == 0:
            other = y != y[mask][0]
            ranked = mask | other
            low, high = auc_interval(
                y[ranked], s[ranked], units=None if whole is None else whole[ranked]
            )
            row = replace(row, auc=roc_auc(y[ranked], s[ranked]), auc_low=low, auc_high=high)
        rows.append(row)
    return rows


def _fmt(value: float, spec: str) -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


def format_table(rows: list[GroupMetrics]) -> str:
    """Fixed-width text table of ``rows`` with columns group, n, real, fake, accuracy (in
    percent), AUC and its 95 % bootstrap interval; an undefined value shows as ``n/a``. No
    trailing newline.
    """
    width = max([len("group"), *(len(r.group) for r in rows)])
    header = (
        f"{'group':<{width}}  {'n':>6}  {'real':>6}  {'fake':>6}  {'acc %':>7}  {'AUC':>6}"
        f"  {'95% CI':>11}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        ci = "n/a" if math.isnan(r.auc_low) else f"{r.auc_low:.2f}-{r.auc_high:.2f}"
        lines.append(
            f"{r.group:<{width}}  {r.n:>6d}  {r.n_real:>6d}  {r.n_fake:>6d}  "
            f"{_fmt(100.0 * r.accuracy, '.2f'):>7}  {_fmt(r.auc, '.4f'):>6}  {ci:>11}"
        )
    return "\n".join(lines)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of ``values`` ignoring NaN, e.g. one AUC per
    fold. The std is 0.0 for a single value; both are ``nan`` when no value is left.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return float(np.mean(v)), std
