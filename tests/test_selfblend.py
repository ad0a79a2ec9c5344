"""Self-blended images (Shiohara & Yamasaki 2022) over clips, on the astronaut's face."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from training.selfblend import (
    BLEND_RATIOS,
    HULL_TYPES,
    SBI,
    SelfBlendConfig,
    deform_mask,
    five_point_mask,
    landmark_mask,
    self_blend,
)

from conftest import ASTRONAUT_FRAMES as T
from conftest import ASTRONAUT_MARGIN


@pytest.fixture(scope="module")
def fitter():
    from training.landmarks import Landmarks68, LandmarksUnavailable

    try:
        return Landmarks68(ASTRONAUT_MARGIN)
    except LandmarksUnavailable as e:
        pytest.skip(f"dlib's 68-point model is not installed ({e})")


@pytest.fixture(scope="module")
def dense_clip(clip, fitter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    crops, five = clip
    return crops, five, fitter.clip(crops)


def _at(mask: np.ndarray, point: np.ndarray) -> float:
    x, y = (int(round(float(v))) for v in point)
    return float(mask[y, x])


def test_68_points_agree_with_mtcnn(face, fitter) -> None:
    from training.landmarks import LEFT_EYE, RIGHT_EYE, plausible

    crop, five = face
    dense = fitter(crop)
    assert dense.shape == (68, 2) and np.isfinite(dense).all()
    assert ((dense > 0) & (dense < crop.shape[0])).all()
    d = np.hypot(*(five[1] - five[0]))
    # eye centres within a fifth of the inter-ocular distance of MTCNN's eye points
    assert np.hypot(*(dense[RIGHT_EYE].mean(0) - five[0])) < 0.2 * d
    assert np.hypot(*(dense[LEFT_EYE].mean(0) - five[1])) < 0.2 * d
    assert plausible(dense, five)
    assert not plausible(dense + (0.5 * d, 0), five)  # a fit beside the face is refused
    assert not plausible(np.full_like(dense, np.nan), five)


@pytest.mark.parametrize("hull_type", HULL_TYPES)
def test_landmark_masks_cover_the_inner_face(face, fitter, hull_type) -> None:
    crop, five = face
    dense = fitter(crop)
    mask = landmark_mask(crop.shape[:2], dense, hull_type)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert _at(mask, five[2]) == 1  # nose tip
    assert not mask[:20, :20].any()  # the crop's corner is background
    full = landmark_mask(crop.shape[:2], dense, "facehull")
    if hull_type == "extended":
        assert mask.sum() > landmark_mask(crop.shape[:2], dense, "dfl_full").sum()
    elif hull_type != "facehull":
        assert (mask <= full).all()  # part hulls lie inside the whole-face hull


def test_components_take_a_subset_of_the_parts(face, fitter) -> None:
    crop, _ = face
    dense = fitter(crop)
    some = landmark_mask(crop.shape[:2], dense, "components", np.array([1, 1, 0, 0, 0, 0, 0, 0]))
    every = landmark_mask(crop.shape[:2], dense, "components")
    assert 0 < some.sum() < every.sum()
    assert (some <= every).all()


def test_deform_mask_keeps_a_soft_core(face) -> None:
    crop, five = face
    hard = five_point_mask(crop.shape[:2], five).astype(np.float32)
    for seed in range(5):
        soft = deform_mask(hard, np.random.default_rng(seed))
        assert soft.shape == hard.shape and soft.dtype == np.float32
        assert soft.max() == pytest.approx(1.0, abs=1e-3) and soft.min() >= 0
        assert _at(soft, five[2]) > 0.5  # the face centre stays blended
        edge = (soft > 0.05) & (soft < 0.95)
        assert edge.sum() > 0.05 * (soft > 0.05).sum()  # a soft edge, not a hard cut
    assert not deform_mask(np.zeros_like(hard), np.random.default_rng(0)).any()


def test_real_and_fake_differ_only_inside_the_mask(dense_clip) -> None:
    crops, five, dense = dense_clip
    before = crops.copy()
    targets_changed = 0
    for seed in range(8):
        real, fake, masks = self_blend(crops, five, np.random.default_rng(seed), dense=dense)
        assert real.shape == fake.shape == crops.shape and fake.dtype == np.uint8
        assert masks.shape == crops.shape[:3] and 0 <= masks.min() and masks.max() <= 1
        outside = masks < 1 / 512  # weight too small to move a uint8 level
        np.testing.assert_array_equal(fake[outside], real[outside])
        for t in range(T):
            strong = masks[t] > 0.5 * masks[t].max()
            assert masks[t].max() > 0.1 and _at(masks[t], five[t][2]) > 0
            assert (fake[t][strong] != real[t][strong]).any(axis=1).mean() > 0.2
        targets_changed += not np.array_equal(real, crops)
    np.testing.assert_array_equal(crops, before)
    # the augmentation falls on the target side about half the time
    assert 1 <= targets_changed <= 7


def test_blend_ratio_is_drawn_from_sbi_set(dense_clip) -> None:
    crops, five, dense = dense_clip
    config = dataclasses.replace(SBI, jitter_ratio=0.0)
    peaks = set()
    for seed in range(24):
        _, _, masks = self_blend(
            crops[:1], five[:1], np.random.default_rng(seed), config, dense[:1]
        )
        peaks.add(round(float(masks.max()), 2))
    assert peaks <= set(BLEND_RATIOS) and len(peaks) >= 3


def test_blends_drift_smoothly_over_time(face, fitter) -> None:
    crop, five = face
    crops, lms = np.stack([crop] * T), np.stack([five] * T)
    dense = np.stack([fitter(crop)] * T)
    _, fake, masks = self_blend(crops, lms, np.random.default_rng(11), dense=dense)
    assert len({hash(f.tobytes()) for f in fake}) == T  # every frame blended a little differently
    step = np.abs(np.diff(masks, axis=0)).mean(axis=(1, 2))
    _, _, other = self_blend(crops, lms, np.random.default_rng(12), dense=dense)
    assert step.mean() < np.abs(masks - other).mean()  # drift, not a fresh blend each frame


def test_five_point_fallback(dense_clip) -> None:
    crops, five, dense = dense_clip
    only_five = dataclasses.replace(SBI, dense_landmarks=False)
    a = self_blend(crops, five, np.random.default_rng(3), only_five, dense)
    b = self_blend(crops, five, np.random.default_rng(3), only_five, None)
    np.testing.assert_array_equal(a[1], b[1])  # dense points ignored when switched off
    # an implausible 68-point fit (beside the face) falls back to the five points
    c = self_blend(crops, five, np.random.default_rng(3), SBI, dense + (80, 0))
    d = self_blend(crops, five, np.random.default_rng(3), SBI, None)
    np.testing.assert_array_equal(c[2], d[2])


def test_deterministic_and_validated(dense_clip) -> None:
    crops, five, dense = dense_clip
    a = self_blend(crops, five, np.random.default_rng(3), dense=dense)
    b = self_blend(crops, five, np.random.default_rng(3), dense=dense)
    c = self_blend(crops, five, np.random.default_rng(4), dense=dense)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    with pytest.raises(ValueError):
        self_blend(crops, five[:3], np.random.default_rng(0))
    with pytest.raises(ValueError):
        self_blend(crops.astype(np.float32), five, np.random.default_rng(0))
    with pytest.raises(ValueError):
        SelfBlendConfig(hull_types=("nose",))
    with pytest.raises(ValueError):
        SelfBlendConfig(ratios=(0.0, 1.5))


def test_frames_without_landmarks_stay_real(dense_clip) -> None:
    crops, five, dense = dense_clip
    five = five.copy()
    five[4] = np.nan
    real, fake, masks = self_blend(crops, five, np.random.default_rng(0), dense=dense)
    np.testing.assert_array_equal(fake[4], crops[4])
    np.testing.assert_array_equal(real[4], crops[4])
    assert not masks[4].any() and masks[5].any()


@pytest.mark.parametrize("kind", ["mouth", "restore"])
def test_rerender_changes_only_the_rendered_region(dense_clip, kind) -> None:
    from training.selfblend import RerenderConfig, lower_face_mask, rerender

    crops, five, dense = dense_clip
    real, fake, masks = rerender(
        crops, five, np.random.default_rng(2), RerenderConfig(kinds=(kind,)), dense
    )
    np.testing.assert_array_equal(real, crops)
    outside = masks < 1 / 512
    np.testing.assert_array_equal(fake[outside], crops[outside])
    assert (np.abs(fake.astype(int) - crops.astype(int)).sum(axis=-1)[masks > 0.5] > 0).mean() > 0.3
    if kind == "mouth":  # below the eyes, over the mouth
        eyes_y = five[:, :2, 1].mean()
        assert not masks[:, : int(eyes_y) - 5].any()
        assert all(_at(masks[t], five[t][3:].mean(axis=0)) > 0.5 for t in range(T))
        lower = lower_face_mask(crops.shape[1:3], five[0], None)
        assert _at(lower, five[0][3:].mean(axis=0)) == 1
    # the seam is drawn afresh every frame: neighbouring masks differ
    assert np.abs(np.diff(masks, axis=0)).mean(axis=(1, 2)).min() > 0


def test_pseudo_fake_mixes_the_kinds(dense_clip) -> None:
    from training.selfblend import pseudo_fake

    crops, five, dense = dense_clip
    reals_kept = [
        np.array_equal(
            pseudo_fake(crops, five, np.random.default_rng(s), SBI, dense, 1.0)[0], crops
        )
        for s in range(4)
    ]
    assert all(reals_kept)  # re-rendering never touches the real side
    a = pseudo_fake(crops, five, np.random.default_rng(0), SBI, dense, 0.0)
    b = self_blend(crops, five, np.random.default_rng(0), SBI, dense)
    np.testing.assert_array_equal(a[1], b[1])  # rerender_prob 0: plain self-blending


def test_align_face_undoes_a_similarity(face) -> None:
    import cv2

    from training.selfblend import align_face

    crop, five = face
    m = cv2.getRotationMatrix2D((112.0, 112.0), 8.0, 0.9)
    m[:, 2] += (6.0, -4.0)
    moved = cv2.warpAffine(crop, m, crop.shape[1::-1], borderMode=cv2.BORDER_REFLECT101)
    moved_points = five @ m[:, :2].T + m[:, 2]
    back = align_face(moved, moved_points, five)
    centre = (slice(70, 160), slice(70, 160))
    error = np.abs(back[centre].astype(int) - crop[centre]).mean()
    assert error < 0.2 * np.abs(moved[centre].astype(int) - crop[centre]).mean()
    assert align_face(crop, np.zeros((5, 2)), five) is None  # points that fit no similarity


def test_similarity_is_the_least_squares_fit_over_every_point() -> None:
    from training.selfblend import similarity

    rng = np.random.default_rng(0)
    src = rng.uniform(60, 160, (5, 2))
    angle, scale, shift = 0.2, 1.1, np.array([4.0, -7.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift + rng.normal(0, 6, src.shape)  # two faces never agree exactly
    # the same fit by linear least squares in (a, b, tx, ty):
    # x' = a x - b y + tx, y' = b x + a y + ty
    rows = np.concatenate(
        [
            np.stack([src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)], 1),
            np.stack([src[:, 1], src[:, 0], np.zeros(5), np.ones(5)], 1),
        ]
    )
    a, b, tx, ty = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
    np.testing.assert_allclose(similarity(src, dst), [[a, -b, tx], [b, a, ty]], atol=1e-9)
    exact = similarity(src, src @ rot.T + shift)
    np.testing.assert_allclose(exact, np.hstack([rot, shift[:, None]]), atol=1e-9)
    assert similarity(np.ones((5, 2)), dst) is None


def test_match_colour_takes_the_targets_colour_inside_the_region(face) -> None:
    import cv2

    from training.selfblend import match_colour

    crop, five = face
    tinted = np.clip(crop * np.array([0.6, 1.0, 1.3]) + 20, 0, 255).astype(np.uint8)
    region = five_point_mask(crop.shape[:2], five).astype(np.float32)
    matched = np.clip(np.rint(match_colour(tinted, crop, region)), 0, 255).astype(np.uint8)
    inside = region > 0.5

    def lab_mean(img):
        return cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)[inside].mean(0)

    before = np.abs(lab_mean(tinted) - lab_mean(crop)).max()
    assert np.abs(lab_mean(matched) - lab_mean(crop)).max() < 0.1 * before
    np.testing.assert_array_equal(match_colour(tinted, crop, 0 * region), tinted)


def test_a_donor_face_is_blended_with_the_same_draws(dense_clip) -> None:
    """With another clip as donor, a blend keeps every draw of the self-blend (the same
    mask) and only its source changes: the donor's pattern, aligned, shows inside the mask."""
    import cv2

    from training.selfblend import pseudo_fake

    crops, five, dense = dense_clip
    ys, xs = np.mgrid[: crops.shape[1], : crops.shape[2]]
    stripes = (40 * np.sign(np.sin(xs / 2.0)))[..., None]  # 4 px stripes, kept by the colour match
    shift = np.float32([[1, 0, 9], [0, 1, -5]])
    donor = np.stack(
        [
            cv2.warpAffine(
                np.clip(c + stripes, 0, 255).astype(np.uint8),
                shift,
                c.shape[1::-1],
                borderMode=cv2.BORDER_REFLECT101,
            )
            for c in crops
        ]
    )
    moved = (five + (9, -5), dense + (9, -5))
    still = dataclasses.replace(  # no misalignment, so that the stripes stay where they were
        SBI, translate=(0.0, 0.0), scale=(1.0, 1.0), jitter_translate=0.0, jitter_scale=0.0
    )
    own = self_blend(crops, five, np.random.default_rng(5), still, dense)
    swap = self_blend(crops, five, np.random.default_rng(5), still, dense, (donor, *moved))
    np.testing.assert_array_equal(own[2], swap[2])  # the same mask, ratio and drift
    np.testing.assert_array_equal(own[0], swap[0])
    strong = swap[2] > 0.5
    residual = swap[1].astype(np.float32) - own[1]
    sign = np.broadcast_to(np.sign(np.sin(xs / 2.0)), strong.shape)
    assert (residual.mean(-1)[strong] * sign[strong]).mean() > 5  # the stripes, in place
    assert np.abs(residual[~(swap[2] > 1 / 512)]).max() == 0
    with pytest.raises(ValueError):
        self_blend(crops, five, np.random.default_rng(5), dense=dense, donor=(donor[:3], *moved))
    with pytest.raises(ValueError):
        pseudo_fake(crops, five, np.random.default_rng(0), SBI, dense, swap_prob=1.0)
    # swap_prob 1 with a donor that finds no one: a self-blend, the donor asked once
    asked = []
    none = pseudo_fake(
        crops,
        five,
        np.random.default_rng(0),
        SBI,
        dense,
        swap_prob=1.0,
        donor=lambda rng: asked.append(rng) and None,
    )
    assert len(asked) == 1 and none[1].shape == crops.shape


def test_one_mask_source_for_the_whole_clip(dense_clip) -> None:
    """A frame whose 68-point fit is off (dlib on a blurred frame) borrows its neighbour's,
    moved with the face: its mask is a 68-point hull like its neighbours', not the far smaller
    five-point polygon; with most fits off, every frame takes the five points."""
    from training.landmarks import plausible, steady_dense

    crops, five, dense = dense_clip
    off = dense.copy()
    off[2] = off[2] + 40.0  # one fit far from MTCNN's five points
    assert not plausible(off[2], five[2])
    steady = steady_dense(off, five)
    assert steady is not None and plausible(steady[2], five[2])
    np.testing.assert_array_equal(steady[[0, 1, 3]], off[[0, 1, 3]])
    _, _, masks = self_blend(crops, five, np.random.default_rng(3), SBI, off)
    _, _, fives = self_blend(
        crops, five, np.random.default_rng(3), dataclasses.replace(SBI, dense_landmarks=False)
    )
    cover = (masks > 0).mean(axis=(1, 2))
    assert cover[2] > 0.7 * np.median(cover) and cover[2] > 1.5 * (fives[2] > 0).mean()
    mostly_off = dense + np.where(np.arange(len(dense)) % 4 == 0, 0.0, 40.0)[:, None, None]
    assert steady_dense(mostly_off, five) is None
