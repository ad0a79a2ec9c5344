"""Warp-reenacted pseudo-fakes (training.reenact) on the astronaut's face."""

from __future__ import annotations

import numpy as np
import pytest

from training.reenact import REGIONS, ReenactConfig, reenact, warp_to

from conftest import ASTRONAUT_MARGIN


@pytest.fixture(scope="module")
def dense_clip(clip):
    from training.landmarks import Landmarks68, LandmarksUnavailable

    try:
        fitter = Landmarks68(ASTRONAUT_MARGIN)
    except LandmarksUnavailable as e:
        pytest.skip(f"dlib's 68-point model is not installed ({e})")
    crops, five = clip
    return crops, five, fitter.clip(crops)


def test_warp_with_unmoved_points_is_the_identity() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    points = rng.uniform(40, 180, (68, 2)).astype(np.float32)
    np.testing.assert_allclose(warp_to(image, points, points, 20.0), image, atol=1e-3)


def test_warp_carries_the_reference_point_to_the_target() -> None:
    image = np.zeros((224, 224, 3), np.uint8)
    image[98:103, 58:63] = 255  # a dot at (60, 100)
    src = np.array([[60, 100], [160, 100], [110, 60], [110, 160]], np.float32)
    dst = src.copy()
    dst[0] = (70, 108)  # only the dot's point moves: a local, not a global, displacement
    out = warp_to(image, src, dst, 12.0)[..., 0]
    y, x = np.unravel_index(np.argmax(out), out.shape)
    assert abs(x - 70) <= 2 and abs(y - 108) <= 2
    assert out[100, 60] < 50  # gone from where it was


@pytest.mark.parametrize("region", REGIONS)
def test_fake_is_the_reference_warped_into_the_region(dense_clip, region) -> None:
    crops, five, dense = dense_clip
    cfg = ReenactConfig(regions=(region,), region_probs=(1.0,), render_prob=0.0, restore_prob=0.0)
    real, fake, masks = reenact(crops, five, np.random.default_rng(1), cfg, dense)
    np.testing.assert_array_equal(real, crops)
    assert fake.shape == crops.shape and fake.dtype == np.uint8
    outside = masks < 1 / 512
    np.testing.assert_array_equal(fake[outside], crops[outside])
    changed = np.abs(fake.astype(int) - crops.astype(int)).sum(-1) > 0
    if region == "full":
        assert (masks > 0.79).all()  # the whole crop is the animated reference
    else:
        eyes_y = int(five[:, :2, 1].min())
        if region == "lower":
            assert not masks[:, : eyes_y - 5].any()
        assert masks[:, 5:15, 5:15].max() < 1 / 512  # the corner is background
    assert changed[masks > 0.5].mean() > 0.3


def test_a_frame_warped_onto_itself_is_unchanged(dense_clip) -> None:
    crops, five, dense = dense_clip
    cfg = ReenactConfig(regions=("full",), region_probs=(1.0,), render_prob=0.0, ratio=(1, 1))
    ref = crops[0], five[0], dense[0]
    _, fake, _ = reenact(crops, five, np.random.default_rng(0), cfg, dense, reference=ref)
    assert np.abs(fake[0].astype(float) - crops[0]).mean() < 3


def test_deterministic_and_validated(dense_clip) -> None:
    crops, five, dense = dense_clip
    a = reenact(crops, five, np.random.default_rng(5), dense=dense)[1]
    b = reenact(crops, five, np.random.default_rng(5), dense=dense)[1]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        ReenactConfig(regions=("mouth",), region_probs=(1.0,))
    with pytest.raises(ValueError):
        ReenactConfig(render_scale=(0.0, 0.5))
