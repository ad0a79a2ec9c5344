"""Training-time variations and self-blended fakes, on a real face (skimage's astronaut)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from training.augment import (
    REGION_SCALE_RANGE,
    REGIONS,
    AugmentConfig,
    affine_warp,
    augment_clip,
    gaussian_blur,
    region_mask,
    remove_region,
    wavelet_denoise,
)

from conftest import ASTRONAUT_CROP, ASTRONAUT_FRAMES

SIZE, T = ASTRONAUT_CROP, ASTRONAUT_FRAMES


def _laplacian_var(img: np.ndarray) -> float:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def _at(mask: np.ndarray, point: np.ndarray) -> bool | float:
    x, y = (int(round(float(v))) for v in point)
    return mask[y, x]


def _changed_frames(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero((a != b).reshape(len(a), -1).any(axis=1))


# --------------------------------------------------------------------------- fixtures sanity


def test_clip_fixture_is_a_face_track(clip) -> None:
    crops, lms = clip
    assert crops.shape == (T, SIZE, SIZE, 3) and crops.dtype == np.uint8
    assert lms.shape == (T, 5, 2)
    assert ((lms > 0) & (lms < SIZE)).all()
    assert len(_changed_frames(crops[1:], crops[:-1])) == T - 1  # frames are not copies


# --------------------------------------------------------------------------- blur


def test_gaussian_blur_lowers_high_frequency_energy(face) -> None:
    img, _ = face
    before = img.copy()
    for seed in range(5):
        out = gaussian_blur(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert _laplacian_var(out) < 0.7 * _laplacian_var(img)
        assert np.abs(out.astype(int) - img).mean() < 10  # blurred, not destroyed
    np.testing.assert_array_equal(img, before)


def test_gaussian_blur_kernel_is_5x5() -> None:
    impulse = np.zeros((21, 21, 3), np.uint8)
    impulse[10, 10] = 255
    out = gaussian_blur(impulse, np.random.default_rng(0))
    ys, xs = np.nonzero(out.any(axis=2))
    assert ys.min() == 8 and ys.max() == 12 and xs.min() == 8 and xs.max() == 12
    assert out[10, 10, 0] < 255 and out[10, 12, 0] > 0


# --------------------------------------------------------------------------- wavelet


@pytest.mark.parametrize("wavelet", ["haar", "db4"])
def test_wavelet_denoise_removes_added_noise(face, wavelet: str) -> None:
    clean, _ = face
    noise = np.random.default_rng(99).normal(0.0, 15.0, clean.shape)
    noisy = np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)
    before = noisy.copy()
    for seed in range(6):
        out = wavelet_denoise(noisy, np.random.default_rng(seed), wavelets=(wavelet,))
        assert out.shape == noisy.shape and out.dtype == np.uint8
        assert _mse(out, clean) < 0.75 * _mse(noisy, clean)
    np.testing.assert_array_equal(noisy, before)


def test_wavelet_denoise_keeps_a_clean_face_and_odd_shapes(face) -> None:
    img, _ = face
    for seed in range(4):
        out = wavelet_denoise(img, np.random.default_rng(seed))
        # A clean face is smoothed a little (the noise floor), not wiped out.
        assert 0.05 < _mse(out, img) < 20
    odd = np.ascontiguousarray(img[:101, :77])
    out = wavelet_denoise(odd, np.random.default_rng(0), wavelets=("db4",))
    assert out.shape == odd.shape


# --------------------------------------------------------------------------- warp


def test_affine_warp_keeps_shape_and_the_face(face) -> None:
    img, _ = face
    before = img.copy()
    for seed in range(5):
        out = affine_warp(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert not np.array_equal(out, img)
        # A small warp back to the original size: the face stays where it was.
        corr = np.corrcoef(out.astype(float).ravel(), img.astype(float).ravel())[0, 1]
        assert corr > 0.7
    np.testing.assert_array_equal(img, before)
    odd = np.ascontiguousarray(img[:99, :131])
    assert affine_warp(odd, np.random.default_rng(0)).shape == odd.shape


# --------------------------------------------------------------------------- region removal


def test_region_masks_lie_around_their_landmarks(face) -> None:
    img, lm = face
    le, re, nose, lmouth, rmouth = lm
    masks = {r: region_mask(img.shape, lm, r) for r in REGIONS}
    for m in masks.values():
        assert m.shape == img.shape[:2] and m.dtype == bool
        assert 0.005 < m.mean() < 0.12
    eyes, nose_m, mouth = masks["eyes"], masks["nose"], masks["mouth"]
    assert _at(eyes, le) and _at(eyes, re)
    assert not any(_at(eyes, p) for p in (nose, lmouth, rmouth))
    assert _at(nose_m, nose)
    assert not any(_at(nose_m, p) for p in (le, re, lmouth, rmouth))
    assert _at(mouth, lmouth) and _at(mouth, rmouth)
    assert not any(_at(mouth, p) for p in (le, re, nose))
    assert not (eyes & mouth).any()
    # Two eye ellipses, not a band across the nose bridge.
    mid = (le + re) / 2
    assert not _at(eyes, mid)


def test_region_mask_follows_the_landmarks(face) -> None:
    img, lm = face
    for region in REGIONS:
        m = region_mask(img.shape, lm, region)
        shifted = region_mask(img.shape, lm + np.float32([12, 7]), region)
        expected = np.zeros_like(m)
        expected[7:, 12:] = m[:-7, :-12]
        assert (shifted != expected).sum() <= 0.01 * m.sum()
        bigger = region_mask(img.shape, lm, region, scale=1.5)
        assert (m & ~bigger).sum() == 0 and bigger.sum() > 1.8 * m.sum()


@pytest.mark.parametrize("region", REGIONS)
def test_remove_region_blanks_exactly_the_mask(face, region: str) -> None:
    img, lm = face
    before = img.copy()
    out = remove_region(img, lm, region)
    mask = region_mask(img.shape, lm, region)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[mask] == 0).all()
    np.testing.assert_array_equal(out[~mask], img[~mask])
    assert (img[mask] != 0).any()  # the test blanks something that was not black already
    np.testing.assert_array_equal(img, before)


def test_remove_region_with_rng_jitters_the_size(face) -> None:
    img, lm = face
    lo, hi = REGION_SCALE_RANGE
    sizes = set()
    for seed in range(6):
        out = remove_region(img, lm, "mouth", np.random.default_rng(seed))
        inner = region_mask(img.shape, lm, "mouth", lo)
        outer = region_mask(img.shape, lm, "mouth", hi)
        assert (out[inner] == 0).all()
        np.testing.assert_array_equal(out[~outer], img[~outer])
        sizes.add(int((out != img).any(axis=2).sum()))
    assert len(sizes) > 1


def test_region_mask_rejects_unknown_regions(face) -> None:
    img, lm = face
    with pytest.raises(ValueError):
        region_mask(img.shape, lm, "ears")
    assert not region_mask(img.shape, np.full((5, 2), np.nan), "eyes").any()


# --------------------------------------------------------------------------- augment_clip


def test_augment_clip_with_everything_off_is_identity(clip) -> None:
    crops, lms = clip
    off = AugmentConfig(blur=False, wavelet=False, warp=False, removal=False)
    out = augment_clip(crops, lms, off, np.random.default_rng(0))
    np.testing.assert_array_equal(out, crops)
    assert out is not crops
    none = AugmentConfig(manipulated_ratio=0.0)
    np.testing.assert_array_equal(augment_clip(crops, lms, none, np.random.default_rng(0)), crops)


def test_augment_clip_changes_a_third_of_the_frames(clip) -> None:
    crops, lms = clip
    before = crops.copy()
    seen: set[int] = set()
    for seed in range(12):
        out = augment_clip(crops, lms, AugmentConfig(), np.random.default_rng(seed))
        assert out.shape == crops.shape and out.dtype == np.uint8
        changed = _changed_frames(out, crops)
        assert 4 <= len(changed) <= 6  # 15 / 3 = 5
        untouched = np.setdiff1d(np.arange(T), changed)
        np.testing.assert_array_equal(out[untouched], crops[untouched])
        seen.update(changed.tolist())
    assert len(seen) >= 12  # a random subset, not fixed positions
    np.testing.assert_array_equal(crops, before)


def test_augment_clip_ratio_is_kept_on_average(clip) -> None:
    crops, lms = clip
    counts = [
        len(_changed_frames(augment_clip(crops[:14], lms[:14], AugmentConfig(), rng), crops[:14]))
        for rng in (np.random.default_rng(s) for s in range(60))
    ]
    assert set(counts) <= {4, 5}
    assert abs(np.mean(counts) - 14 / 3) < 0.3
    everything = AugmentConfig(manipulated_ratio=1.0)
    out = augment_clip(crops, lms, everything, np.random.default_rng(0))
    assert len(_changed_frames(out, crops)) == T


def test_augment_clip_blur_only_ablation_blurs(clip) -> None:
    crops, lms = clip
    cfg = AugmentConfig(wavelet=False, warp=False, removal=False)
    out = augment_clip(crops, lms, cfg, np.random.default_rng(3))
    changed = _changed_frames(out, crops)
    assert len(changed) == 5
    for t in changed:
        assert _laplacian_var(out[t]) < 0.7 * _laplacian_var(crops[t])


def test_augment_clip_removal_only_ablation_blanks_a_region(clip) -> None:
    crops, lms = clip
    cfg = AugmentConfig(blur=False, wavelet=False, warp=False)
    regions_seen = set()
    for seed in range(6):
        out = augment_clip(crops, lms, cfg, np.random.default_rng(seed))
        changed = _changed_frames(out, crops)
        assert len(changed) == 5
        for t in changed:
            diff = (out[t] != crops[t]).any(axis=2)
            assert (out[t][diff] == 0).all()
            outer = {
                r: region_mask(crops[t].shape, lms[t], r, REGION_SCALE_RANGE[1]) for r in REGIONS
            }
            inside = [r for r, m in outer.items() if not (diff & ~m).any()]
            assert inside, "changed pixels outside every region"
            regions_seen.add(inside[0])
    assert regions_seen == set(REGIONS)


def test_augment_clip_wavelet_and_warp_switches(clip) -> None:
    crops, lms = clip
    wavelet_only = AugmentConfig(blur=False, warp=False, removal=False)
    assert wavelet_only.variations == ("wavelet",)
    out = augment_clip(crops, lms, wavelet_only, np.random.default_rng(0))
    assert 1 <= len(_changed_frames(out, crops)) <= 5
    warp_only = AugmentConfig(blur=False, wavelet=False, removal=False)
    assert warp_only.variations == ("warp",)
    out = augment_clip(crops, lms, warp_only, np.random.default_rng(0))
    assert len(_changed_frames(out, crops)) == 5
    assert AugmentConfig().variations == ("blur", "wavelet", "removal")


def test_augment_clip_is_deterministic(clip) -> None:
    crops, lms = clip
    a = augment_clip(crops, lms, AugmentConfig(), np.random.default_rng(7))
    b = augment_clip(crops, lms, AugmentConfig(), np.random.default_rng(7))
    c = augment_clip(crops, lms, AugmentConfig(), np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fn", [gaussian_blur, wavelet_denoise, affine_warp])
def test_variations_are_deterministic(face, fn) -> None:
    img, _ = face
    a = fn(img, np.random.default_rng(5))
    np.testing.assert_array_equal(a, fn(img, np.random.default_rng(5)))
    assert not np.array_equal(a, fn(img, np.random.default_rng(6)))


def test_config_validation(clip) -> None:
    crops, lms = clip
    with pytest.raises(ValueError):
        AugmentConfig(manipulated_ratio=1.5)
    with pytest.raises(ValueError):
        augment_clip(crops.astype(np.float32), lms, AugmentConfig(), np.random.default_rng(0))


def test_jpeg_clip_compresses_every_frame_alike(clip) -> None:
    from training.augment import jpeg_clip

    crops, _ = clip
    out = jpeg_clip(crops, np.random.default_rng(0), (30, 30))
    assert out.shape == crops.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - crops.astype(int)).mean(axis=(1, 2, 3))
    assert (err > 0.5).all() and (err < 15).all()
    np.testing.assert_array_equal(out, jpeg_clip(crops, np.random.default_rng(0), (30, 30)))
    with pytest.raises(ValueError):
        jpeg_clip(crops, np.random.default_rng(0), (0, 120))


def test_degrade_clip_treats_every_frame_alike() -> None:
    from training.augment import DEFAULT_DEGRADATIONS, DEGRADATIONS, degrade_clip

    rng = np.random.default_rng(0)
    frame = cv2.resize(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), (224, 224))
    clip = np.stack([frame, frame, frame])
    seen = set()
    for seed in range(24):
        out = degrade_clip(clip, np.random.default_rng(seed))
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert not np.array_equal(out, clip)
        np.testing.assert_array_equal(out, degrade_clip(clip, np.random.default_rng(seed)))
        same = np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
        noisy = np.abs(out.astype(int) - clip).mean(axis=(1, 2, 3))
        # one draw for the clip: identical frames stay identical, except fresh noise per frame
        # at one strength
        assert same or (noisy.max() - noisy.min() < 0.5)
        seen.add("noise" if not same else "other")
    assert seen == {"noise", "other"} and set(DEFAULT_DEGRADATIONS) < set(DEGRADATIONS)
    noiseless = tuple(k for k in DEGRADATIONS if k != "noise")
    for seed in range(4):
        out = degrade_clip(clip, np.random.default_rng(seed), noiseless)
        np.testing.assert_array_equal(out[0], out[1])
    with pytest.raises(ValueError, match="degradations"):
        degrade_clip(clip, rng, ("rescale", "sepia"))


def test_lowres_codec_enlarges_the_codec_blocks() -> None:
    """lowres_codec compresses at the small size, so its blocks come out enlarged: the clip
    loses more fine detail than rescaling alone at the same draw, and stays one draw a clip."""
    from training.augment import degrade_clip

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    clip = np.stack([frame, frame])
    out = degrade_clip(clip, np.random.default_rng(3), ("lowres_codec",))
    rescaled = degrade_clip(clip, np.random.default_rng(3), ("rescale",))
    assert out.shape == clip.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], out[1])

    def fine(x: np.ndarray) -> float:  # energy of the finest detail
        x = x.astype(np.float32)
        return float(np.abs(x - cv2.GaussianBlur(x, (0, 0), 1.0)).mean())

    assert fine(out[0]) < fine(frame) / 2
    assert not np.array_equal(out, rescaled)


def test_smooth_flattens_skin_texture_and_keeps_edges() -> None:
    """smooth (a beauty filter): fine texture inside a flat region is smoothed away while an
    edge between two regions stays as sharp as it was; one draw for the whole clip."""
    from training.augment import degrade_clip

    rng = np.random.default_rng(2)
    frame = np.full((224, 224, 3), 80, np.float32)
    frame[:, 112:] = 200  # an edge down the middle
    frame += rng.normal(0, 4, frame.shape)  # skin-like fine texture
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    clip = np.stack([frame, frame])
    out = degrade_clip(clip, np.random.default_rng(0), ("smooth",))
    assert out.shape == clip.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], out[1])
    flat = (slice(20, 200), slice(10, 100))
    assert out[0][flat].std() < frame[flat].std() / 2
    step = out[0][:, 114].astype(int).mean() - out[0][:, 109].astype(int).mean()
    assert step > 0.9 * (200 - 80)


def test_h264_smears_fine_detail_and_keeps_the_clip_shape() -> None:
    """h264: the clip goes through a real H.264 encoder at a low rate and back: the same
    shape and type, far less fine detail, one draw for the clip, every frame coded alike
    wherever it stands (a real frame and its pseudo-fake are coded together), and not the
    same as JPEG's lowres_codec."""
    pytest.importorskip("av", reason="PyAV (the train extra) encodes H.264")
    from training.augment import degrade_clip, h264_clip

    rng = np.random.default_rng(4)
    base = cv2.resize(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8), (224, 224))
    frame = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    clip = np.stack([frame] * 4)
    out = degrade_clip(clip, np.random.default_rng(0), ("h264",))
    assert out.shape == clip.shape and out.dtype == np.uint8

    def fine(x: np.ndarray) -> float:
        x = x.astype(np.float32)
        return float(np.abs(x - cv2.GaussianBlur(x, (0, 0), 1.0)).mean())

    assert fine(out[0]) < 0.7 * fine(frame)
    np.testing.assert_array_equal(out[0], out[-1])
    other = np.ascontiguousarray(frame[::-1])
    pair = h264_clip(np.stack([frame, other]), 35, (224, 224))
    swapped = h264_clip(np.stack([other, frame]), 35, (224, 224))
    np.testing.assert_array_equal(pair, swapped[::-1])
    assert not np.array_equal(out, degrade_clip(clip, np.random.default_rng(0), ("lowres_codec",)))
    # a higher quantiser keeps less
    kept = [np.abs(h264_clip(clip, qp, (224, 224)).astype(int) - clip).mean() for qp in (18, 45)]
    assert kept[0] < kept[1]


def test_jitter_clip_reframes_every_frame_alike(clip) -> None:
    """One framing and colour draw for the whole clip: equal frames stay equal, a marked
    pixel moves with the draw, nothing at all changes with zero ranges, the same seed draws
    the same."""
    from training.augment import jitter_clip

    crops, _ = clip
    pair = np.stack([crops[0], crops[0]])
    for seed in range(6):
        out = jitter_clip(pair, np.random.default_rng(seed))
        assert out.shape == pair.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out[0], out[1])
        assert not np.array_equal(out[0], pair[0])
        np.testing.assert_array_equal(out, jitter_clip(pair, np.random.default_rng(seed)))
    still = jitter_clip(
        crops,
        np.random.default_rng(0),
        max_scale=0.0,
        max_translate=0.0,
        max_rotation_deg=0.0,
        max_colour=0.0,
    )
    np.testing.assert_array_equal(still, crops)
    dot = np.zeros((2, 64, 64, 3), np.uint8)
    dot[:, 20:24, 40:44] = 255
    moved = jitter_clip(dot, np.random.default_rng(3), max_colour=0.0)
    centres = [np.argwhere(f[..., 0] > 127).mean(axis=0) for f in moved]
    np.testing.assert_allclose(centres[0], centres[1])
    assert np.abs(centres[0] - (21.5, 41.5)).max() > 0.5


def test_a_palette_is_fitted_to_every_image_it_quantises() -> None:
    """The GIF degradation quantises a pair (a real frame and its pseudo-fake) with one
    palette fitted to both: an image of colours the first lacks is not quantised worse."""
    from training.augment import degrade_clip

    rng = np.random.default_rng(0)
    reds = np.zeros((64, 64, 3), np.uint8)
    reds[..., 0] = rng.integers(100, 256, (64, 64))
    blues = np.zeros((64, 64, 3), np.uint8)
    blues[..., 2] = rng.integers(100, 256, (64, 64))
    out = degrade_clip(np.stack([reds, blues]), np.random.default_rng(1), ("palette",))
    err = [np.abs(o.astype(int) - x).mean() for o, x in zip(out, (reds, blues))]
    assert err[1] < 2 * err[0] + 1, err
