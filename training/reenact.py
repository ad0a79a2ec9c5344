"""Warp-reenacted pseudo-fakes: a real clip re-animated from one of its own frames.

Most talking-head generators (one-shot reenactment and audio-driven lip-sync alike: the
face-vid2vid / SadTalker / LivePortrait family) render every output frame by *warping a single
reference image* to the driving pose and expression, then paste the result back. Their
frames share one texture (the reference's skin, lighting and noise, frozen in time while the
face moves), the warp stretches what the reference does not show (teeth, the inside of the
mouth, a turned cheek) and the pasted region has a seam. This module makes that kind of fake
from real footage alone, without a generator:

1. **Reference**: one frame of the clip (or, for a single frame, another frame of the track).
2. **Warp**: for every target frame, the reference is warped so that its landmarks land on the
   target's: a similarity transform fitted to the landmarks, plus the residual displacements
   interpolated smoothly between them (normalised Gaussian radial basis functions, width a
   fraction of the face).
3. **Render**: optionally at a lower resolution (down and back up), and optionally smoothed and
   sharpened as face-restoration networks leave it.
4. **Paste**: into the target frame through a deformed mask of the whole face (reenactment), of
   the lower face only (lip-sync), or over the whole crop (a fully animated portrait, whose
   background is the reference's, frozen).

Images are uint8 RGB; ``crops`` (T, S, S, 3), ``landmarks5`` (T, 5, 2), ``dense`` (T, 68, 2) or
None, in crop pixels, as ``training.selfblend``. Randomness comes only from the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.landmarks import plausible
from training.selfblend import (
    RERENDER,
    RestoreDraw,
    _check_clip,
    deform_mask,
    face_mask,
    frame_landmarks,
    low_resolution,
    lower_face_mask,
    paste,
)

REGIONS = ("face", "lower", "full")


@dataclass(frozen=True)
class ReenactConfig:
    regions: tuple[str, ...] = REGIONS
    region_probs: tuple[float, ...] = (0.45, 0.4, 0.15)
    rbf_width: tuple[float, float] = (0.12, 0.25)  # Gaussian width / face width
    render_prob: float = 0.5  # rendered at a lower resolution ...
    render_scale: tuple[float, float] = (0.4, 0.9)  # ... of this side / crop side
    restore_prob: float = 0.3  # then smoothed and sharpened (face restoration)
    ratio: tuple[float, float] = (0.8, 1.0)

    def __post_init__(self) -> None:
        if set(self.regions) - set(REGIONS) or len(self.regions) != len(self.region_probs):
            raise ValueError(f"regions must be drawn from {REGIONS}, one probability each")
        if not 0 < self.render_scale[0] <= self.render_scale[1] <= 1:
            raise ValueError(f"render_scale must be in (0, 1], got {self.render_scale}")


REENACT = ReenactConfig()


def warp_to(
    image: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray, width: float
) -> np.ndarray:
    """``image`` warped so that its points ``src_pts`` (K, 2) land on ``dst_pts`` (K, 2).

    A similarity transform fitted to the point pairs, plus the residual displacements spread
    by normalised Gaussian weights of ``width`` pixels (zero far from the points). float32.
    The similarity is fitted robustly (OpenCV's RANSAC, 3 px), not by least squares as
    ``selfblend.similarity`` aligns two people's faces: here both point sets are one face, and
    the points an expression moved (an opened mouth) should not pull the head's pose; what
    they moved is left to the residual, where it stays local.
    """
    h, w = image.shape[:2]
    src = np.asarray(src_pts, np.float32)
    dst = np.asarray(dst_pts, np.float32)
    m, _ = cv2.estimateAffinePartial2D(dst, src)  # output -> reference coordinates
    if m is None:
        m = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    m = m.astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    mapped = np.stack([xs, ys], -1) @ m[:, :2].T + m[:, 2]  # (H, W, 2)
    # the residual displacement is smooth: computed at the centres of 4x4 cells, resized up
    step = 4
    grid = np.stack([xs[::step, ::step], ys[::step, ::step]], -1) + (step - 1) / 2
    residual = src - (dst @ m[:, :2].T + m[:, 2])  # (K, 2) what the similarity misses
    d2 = ((grid[:, :, None, :] - dst[None, None]) ** 2).sum(-1)  # (h/4, w/4, K)
    wts = np.exp(-d2 / (2 * width**2))
    shift = (wts @ residual) / np.maximum(wts.sum(-1, keepdims=True), 1.0)  # 0 far away
    mp = mapped + cv2.resize(shift, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.remap(
        image.astype(np.float32),
        mp[..., 0],
        mp[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )


def reenact(
    crops: np.ndarray,
    landmarks5: np.ndarray,
    rng: np.random.Generator,
    config: ReenactConfig = REENACT,
    dense: np.ndarray | None = None,
    reference: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A warp-reenacted pseudo-fake of a real clip -> (real, fake, mask), as ``self_blend``.

    ``reference`` (crop, five points, 68 points or None) is the frame every fake frame is
    warped from; by default a random frame of the clip (use another frame of the track when
    the clip is a single frame, or the fake would only be the frame warped onto itself).
    """
    n, h, w = _check_clip(crops, landmarks5, dense)
    c = config
    if reference is None:
        r = int(rng.integers(n))
        reference = (crops[r], landmarks5[r], None if dense is None else dense[r])
    ref_img, ref_five, ref_dense = reference
    ref_five = np.asarray(ref_five, np.float64)
    probs = np.asarray(c.region_probs, np.float64)
    region = c.regions[int(rng.choice(len(c.regions), p=probs / probs.sum()))]
    render = rng.random() < c.render_prob
    scale = float(rng.uniform(*c.render_scale))
    restore = rng.random() < c.restore_prob
    restorer = RestoreDraw.draw(rng, RERENDER)  # the restoration look of selfblend.rerender
    ratio = float(rng.uniform(*c.ratio))
    rbf = float(rng.uniform(*c.rbf_width))
    fake = crops.copy()
    masks = np.zeros((n, h, w), np.float32)
    for t in range(n):
        found = frame_landmarks(landmarks5, dense, t)
        if found is None or not np.isfinite(ref_five).all():
            continue
        five, tgt_dense = found
        use_dense = (
            tgt_dense is not None and ref_dense is not None and plausible(ref_dense, ref_five)
        )
        src_pts = ref_dense if use_dense else ref_five
        dst_pts = tgt_dense if use_dense else five
        face_w = float(np.linalg.norm(five[1] - five[0])) * 2.2 + 1e-3
        source = warp_to(ref_img, src_pts, dst_pts, rbf * face_w)
        if render:
            source = low_resolution(source, max(16, round(w * scale)))
        if restore:
            source = restorer(np.clip(source, 0, 255))
        if region == "full":
            soft = np.ones((h, w), np.float32)
        else:
            region_mask = lower_face_mask if region == "lower" else face_mask
            hard = region_mask((h, w), five, tgt_dense)
            soft = deform_mask(hard.astype(np.float32), rng)
        masks[t] = soft * ratio
        fake[t] = paste(crops[t], source, masks[t])
    return crops.copy(), fake, masks
