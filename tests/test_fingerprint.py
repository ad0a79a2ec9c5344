"""Generated pseudo-fakes: the autoencoder trains, reproduces a face, and its drawing is pasted
over the face (or the whole crop) while the real clip is left as it was."""

import cv2
import numpy as np
import pytest

from training.fingerprint import (
    UpsamplingAutoencoder,
    load_autoencoder,
    regenerate,
    save_autoencoder,
    train_autoencoder,
)
from training.selfblend import generated, pseudo_fake


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

    def invert(x: np.ndarray) -> np.ndarray:
        return 255 - x

    seen_whole = seen_face = False
    for seed in range(12):
        real, fake, mask = generated(crops, five, np.random.default_rng(seed), invert)
        np.testing.assert_array_equal(real, crops)
        assert mask.shape == crops.shape[:3] and 0 <= mask.min() and mask.max() <= 1
        if mask.min() == 1:
            seen_whole = True
            np.testing.assert_array_equal(fake, invert(crops))
        else:
            seen_face = True
            outside = mask == 0
            np.testing.assert_array_equal(fake[outside], crops[outside])
            assert (mask[:, 32, 32] > 0.5).all()  # the face centre is drawn
            assert (fake[:, 32, 32] != crops[:, 32, 32]).any()
    assert seen_whole and seen_face


def test_pseudo_fake_draws_generated_only_when_asked() -> None:
    crops, five = _clip()
    calls = []

    def generator(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x

    pseudo_fake(crops, five, np.random.default_rng(0), dense=None, generator=generator)
    assert calls == []  # generated_prob 0: a self-blend, the generator never runs
    pseudo_fake(crops, five, np.random.default_rng(0), generated_prob=1.0, generator=generator)
    assert calls == [3]
    with pytest.raises(ValueError, match="needs a generator"):
        pseudo_fake(crops, five, np.random.default_rng(0), generated_prob=1.0)
