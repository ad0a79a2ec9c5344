"""Generated pseudo-fakes: the autoencoder trains, reproduces a face, and its drawing is pasted
over the face (or the whole crop) while the real clip is left as it was."""

import cv2
import numpy as np
import pytest
import torch

from training.fingerprint import (
    UPSAMPLINGS,
    FeatureDistance,
    GeneratorKind,
    Generators,
    UpsamplingAutoencoder,
    file_name,
    load_autoencoder,
    parse_kinds,
    regenerate,
    save_autoencoder,
    train_autoencoder,
)
from training.selfblend import generated, match_sharpness, pseudo_fake, sharpness


def _clip(n: int = 3, side: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Smooth synthetic frames and five landmarks around their centre."""
    rng = np.random.default_rng(0)
    base = rng.integers(40, 220, (8, 8, 3)).astype(np.uint8)
    frame = cv2.resize(base, (side, side), interpolation=cv2.INTER_CUBIC)
    five = np.array([[22, 26], [42, 26], [32, 36], [24, 46], [40, 46]], np.float32) * side / 64
    return np.stack([frame] * n), np.stack([five] * n)


def test_autoencoder_learns_to_reproduce_and_round_trips(tmp_path) -> None:
    crops, _ = _clip(side=64)
    untrained = np.abs(regenerate(UpsamplingAutoencoder().eval(), crops).astype(int) - crops).mean()
    ae, record = train_autoencoder(list(crops), steps=150, patch=32, batch=4, lr=5e-3)
    out = regenerate(ae, crops)
    assert out.shape == crops.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - crops).mean()
    assert err < untrained / 2 and record["steps"] == 150 and record["psnr_db"] > 20
    # channel means follow the input (no colour cast)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), crops.mean(axis=(1, 2)), atol=1.5)
    save_autoencoder(ae, tmp_path / "ae.safetensors")
    again = load_autoencoder(tmp_path / "ae.safetensors")
    np.testing.assert_array_equal(regenerate(again, crops), out)
    with pytest.raises(ValueError, match="multiples of 4"):
        regenerate(ae, crops[:, :62])
    with pytest.raises(ValueError, match="at least one step"):
        train_autoencoder([], steps=10)


def test_generated_pseudo_fake_pastes_the_drawing_over_the_face() -> None:
    crops, five = _clip()

    def invert(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return 255 - x

    seen_whole = seen_face = False
    for seed in range(12):
        real, fake, mask = generated(crops, five, np.random.default_rng(seed), invert)
        np.testing.assert_array_equal(real, crops)
        assert mask.shape == crops.shape[:3] and 0 <= mask.min() and mask.max() <= 1
        if mask.min() == 1:
            seen_whole = True
            np.testing.assert_array_equal(fake, 255 - crops)
        else:
            seen_face = True
            outside = mask == 0
            np.testing.assert_array_equal(fake[outside], crops[outside])
            assert (mask[:, 32, 32] > 0.5).all()  # the face centre is drawn
            assert (fake[:, 32, 32] != crops[:, 32, 32]).any()
    assert seen_whole and seen_face


def test_generated_lower_face_covers_the_mouth_not_the_eyes() -> None:
    """lower_face 1: every pasted drawing covers the mouth and leaves the eyes real; 0 draws
    exactly as before the option existed (the face mask, the same rng stream)."""
    crops, five = _clip()

    def invert(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return 255 - x

    pasted = 0
    for seed in range(12):
        _, fake, mask = generated(crops, five, np.random.default_rng(seed), invert, lower_face=1.0)
        if mask.min() == 1:
            continue  # the whole crop
        pasted += 1
        assert (mask[:, 46, 32] > 0.5).all()  # between the mouth corners
        assert (mask[:, 26, 22] == 0).all() and (mask[:, 26, 42] == 0).all()  # the eyes
        assert (mask[:, 28, 32] == 0).all()  # between the eyes
        np.testing.assert_array_equal(fake[:, 26, 22], crops[:, 26, 22])
        face = generated(crops, five, np.random.default_rng(seed), invert)[2]
        assert (face[:, 28, 32] > 0).all()  # the face mask does cover it
        same = generated(crops, five, np.random.default_rng(seed), invert, lower_face=0.0)[2]
        np.testing.assert_array_equal(same, face)
    assert pasted


def test_generated_whole_share_decides_whole_crops_and_keeps_the_stream() -> None:
    """whole 0 never replaces the whole crop, whole 1 always does; the default draws as before
    the option existed, and pseudo_fake passes the share on."""
    crops, five = _clip()

    def invert(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return 255 - x

    for seed in range(12):
        never = generated(crops, five, np.random.default_rng(seed), invert, whole=0.0)[2]
        assert never.min() < 1 and (never[:, 0, 0] == 0).all()  # the corner stays real
        always = generated(crops, five, np.random.default_rng(seed), invert, whole=1.0)
        np.testing.assert_array_equal(always[1], 255 - crops)
        default = generated(crops, five, np.random.default_rng(seed), invert)[2]
        passed = pseudo_fake(
            crops,
            five,
            np.random.default_rng(seed),
            dense=None,
            generated_prob=1.0,
            generator=invert,
            generated_whole=0.0,
        )[2]
        assert passed.min() < 1
        if default.min() < 1:  # drawn as pasted by default: whole 0 draws exactly that
            np.testing.assert_array_equal(never, default)


def _detailed(n: int = 3, side: int = 64) -> np.ndarray:
    """Frames with fine detail (noise), which a blur takes away."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (n, side, side, 3)).astype(np.uint8)


def test_match_sharpness_blurs_the_real_clip_down_to_the_redraw() -> None:
    """The real clip comes out as sharp as the smoother redraw (within the bisection's step),
    blurred alike in every frame; a real clip already no sharper is returned unchanged."""
    real = _detailed()
    smooth = np.stack([cv2.GaussianBlur(f, (0, 0), 1.2) for f in real])
    matched = match_sharpness(real, smooth)
    assert matched.shape == real.shape and matched.dtype == np.uint8
    assert sharpness(matched) <= sharpness(smooth) < sharpness(real)
    assert sharpness(matched) > 0.8 * sharpness(smooth)  # not blurred further than needed
    np.testing.assert_array_equal(match_sharpness(smooth, real), smooth)


def test_generated_match_pairs_whole_redraws_with_a_blurred_real_clip() -> None:
    """match 1: a whole-crop redraw comes with its real clip blurred to the redraw's sharpness;
    match 0 draws exactly as before the option (the real clip unchanged, the same stream);
    pasted redraws keep the real clip as it was whatever match says."""
    crops = _detailed()
    five = _clip()[1]

    def smoother(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in x])

    for seed in range(4):
        real, fake, mask = generated(
            crops, five, np.random.default_rng(seed), smoother, whole=1.0, match=1.0
        )
        assert mask.min() == 1.0 and sharpness(real) <= sharpness(fake) < sharpness(crops)
        plain = generated(crops, five, np.random.default_rng(seed), smoother, whole=1.0)
        np.testing.assert_array_equal(plain[0], crops)
        np.testing.assert_array_equal(plain[1], fake)
        pasted = generated(crops, five, np.random.default_rng(seed), smoother, whole=0.0, match=1)
        np.testing.assert_array_equal(pasted[0], crops)
    passed = pseudo_fake(
        crops,
        five,
        np.random.default_rng(0),
        dense=None,
        generated_prob=1.0,
        generator=smoother,
        generated_whole=1.0,
        generated_match=1.0,
    )
    assert sharpness(passed[0]) < sharpness(crops)


def test_pseudo_fake_draws_generated_only_when_asked() -> None:
    crops, five = _clip()
    calls = []

    def generator(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        calls.append(len(x))
        return x

    pseudo_fake(crops, five, np.random.default_rng(0), dense=None, generator=generator)
    assert calls == []  # generated_prob 0: a self-blend, the generator never runs
    pseudo_fake(crops, five, np.random.default_rng(0), generated_prob=1.0, generator=generator)
    assert calls == [3]
    with pytest.raises(ValueError, match="needs a generator"):
        pseudo_fake(crops, five, np.random.default_rng(0), generated_prob=1.0)


@pytest.mark.parametrize("kind", ["nearest", "shuffle", "restore-bilinear"])
def test_each_generator_kind_learns_and_keeps_its_kind(tmp_path, kind) -> None:
    """Every upsampling, and a restoring network, learns to reproduce the face; its file
    says what it is, so that a run reads back the generator it trained."""
    crops, _ = _clip(side=64)
    ((upsampling, restore, _),) = parse_kinds(kind)
    untrained = UpsamplingAutoencoder(upsampling=upsampling, restore=restore).eval()
    before = np.abs(regenerate(untrained, crops).astype(int) - crops).mean()
    ae, record = train_autoencoder(
        list(crops), steps=150, patch=32, batch=4, lr=5e-3, upsampling=upsampling, restore=restore
    )
    assert record["kind"] == ae.kind == kind
    out = regenerate(ae, crops)
    assert np.abs(out.astype(int) - crops).mean() < before / 2
    save_autoencoder(ae, tmp_path / file_name(kind))
    again = load_autoencoder(tmp_path / file_name(kind))
    assert again.kind == kind
    np.testing.assert_array_equal(regenerate(again, crops), out)


def test_a_restoring_generator_sees_only_a_reduced_copy() -> None:
    """restore: two inputs that differ only in detail finer than the reduction are drawn
    alike; a plain autoencoder sees the difference."""
    smooth, _ = _clip(n=1, side=64)
    rng = np.random.default_rng(1)
    detail = np.clip(smooth + rng.choice([-12, 12], smooth.shape), 0, 255).astype(np.uint8)
    a, b = (torch.from_numpy(x).permute(0, 3, 1, 2).float() for x in (smooth, detail))
    restorer = UpsamplingAutoencoder(restore=3.0)
    assert (restorer.degrade(a) - restorer.degrade(b)).abs().mean() < 2
    plain = UpsamplingAutoencoder()
    assert (plain.degrade(a) - plain.degrade(b)).abs().mean() > 10


def test_generator_kinds_parse_and_reject() -> None:
    assert parse_kinds("transposed, restore-nearest, latent-shuffle, restore-latent-bilinear") == [
        GeneratorKind("transposed", 0.0, False),
        GeneratorKind("nearest", 3.0, False),
        GeneratorKind("shuffle", 0.0, True),
        GeneratorKind("bilinear", 3.0, True),
    ]
    assert [k.upsampling for k in parse_kinds(",".join(UPSAMPLINGS))] == list(UPSAMPLINGS)
    for bad in ("", "bicubic", "restore-", "latent-", "latent-restore-nearest"):
        with pytest.raises(ValueError):
            parse_kinds(bad)
    with pytest.raises(ValueError, match="upsampling"):
        UpsamplingAutoencoder(upsampling="bicubic")
    with pytest.raises(ValueError, match="reduction factor"):
        UpsamplingAutoencoder(restore=0.5)


def test_generators_draw_each_clip_with_one_autoencoder_picked_by_the_rng() -> None:
    crops, _ = _clip(side=32)
    aes = [UpsamplingAutoencoder(upsampling=u).eval() for u in ("transposed", "nearest")]
    drawings = [regenerate(ae, crops) for ae in aes]
    both = Generators(aes)
    seen = set()
    for seed in range(10):
        out = both(crops, np.random.default_rng(seed))
        seen |= {i for i, d in enumerate(drawings) if np.array_equal(out, d)}
    assert seen == {0, 1}
    # one autoencoder takes nothing from the rng: a one-generator run draws as it always did
    rng = np.random.default_rng(3)
    Generators(aes[:1])(crops, rng)
    assert rng.random() == np.random.default_rng(3).random()
    with pytest.raises(ValueError):
        Generators([])


def _feature_distance() -> FeatureDistance:
    """The perceptual distance on an untrained Lite0: the tests need its behaviour, not
    ImageNet's weights."""
    import timm

    torch.manual_seed(0)
    return FeatureDistance(timm.create_model("tf_efficientnet_lite0", num_classes=0))


def test_feature_distance_is_zero_for_the_same_image_and_stays_frozen() -> None:
    dist = _feature_distance()
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(dist(a, a)) == 0.0
    assert float(dist(a, a.flip(-1))) > 0
    dist.train()
    assert not dist.training and not any(p.requires_grad for p in dist.parameters())


def test_a_latent_generator_draws_through_an_8x_smaller_latent_and_round_trips(tmp_path) -> None:
    """latent-KIND: a 4-channel latent 8x smaller than the image, trained with the perceptual
    distance besides L1; it learns to reproduce the face and its file keeps its kind."""
    crops, _ = _clip(side=64)
    ae = UpsamplingAutoencoder(upsampling="nearest", latent=True).eval()
    assert ae.kind == "latent-nearest" and ae.multiple == 8
    with torch.inference_mode():
        assert ae.encoder(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 8, 8)
    before = np.abs(regenerate(ae, crops).astype(int) - crops).mean()
    with pytest.raises(ValueError, match="perceptual"):
        train_autoencoder(list(crops), steps=2, upsampling="nearest", latent=True)
    trained, record = train_autoencoder(
        list(crops),
        steps=150,
        patch=32,
        batch=4,
        lr=1e-3,
        upsampling="nearest",
        latent=True,
        perceptual=_feature_distance(),
    )
    assert record["kind"] == "latent-nearest" and record["psnr_db"] > 18
    out = regenerate(trained, crops)
    assert np.abs(out.astype(int) - crops).mean() < 0.7 * before
    save_autoencoder(trained, tmp_path / file_name(trained.kind))
    again = load_autoencoder(tmp_path / file_name("latent-nearest"))
    assert again.latent and again.kind == "latent-nearest"
    np.testing.assert_array_equal(regenerate(again, crops), out)
    with pytest.raises(ValueError, match="multiples of 8"):
        regenerate(trained, crops[:, :60, :60])


def test_generators_can_draw_larger_than_the_crop_and_reduce_back() -> None:
    """max_scale: the clip is enlarged, drawn and reduced back to its own size; the drawing
    differs from one at the crop's size, and the same rng draws the same clip."""
    crops, _ = _clip(side=32)
    ae = UpsamplingAutoencoder(upsampling="transposed").eval()
    at_size = regenerate(ae, crops)
    larger = Generators([ae], max_scale=2.0)
    out = larger(crops, np.random.default_rng(0))
    assert out.shape == crops.shape and out.dtype == np.uint8
    assert not np.array_equal(out, at_size)
    np.testing.assert_array_equal(larger(crops, np.random.default_rng(0)), out)
    with pytest.raises(ValueError, match="enlargement"):
        Generators([ae], max_scale=0.5)


def test_flicker_draws_the_frames_of_a_clip_with_different_generators() -> None:
    """flicker 1: each frame is drawn by an autoencoder of its own, so one clip mixes the
    drawings of both; 0 keeps one autoencoder for the whole clip."""
    crops, _ = _clip(n=8, side=32)
    aes = [UpsamplingAutoencoder(upsampling=u).eval() for u in ("transposed", "nearest")]
    drawings = [regenerate(ae, crops) for ae in aes]

    def sources(out: np.ndarray) -> set[int]:
        return {
            i for t in range(len(out)) for i, d in enumerate(drawings) if (out[t] == d[t]).all()
        }

    mixed = set()
    for seed in range(4):
        out = Generators(aes, flicker=1.0)(crops, np.random.default_rng(seed))
        assert all(any((out[t] == d[t]).all() for d in drawings) for t in range(len(out)))
        mixed |= {seed} if sources(out) == {0, 1} else set()
    assert mixed
    for seed in range(4):
        assert len(sources(Generators(aes)(crops, np.random.default_rng(seed)))) == 1
    with pytest.raises(ValueError, match="flicker"):
        Generators(aes, flicker=1.5)
