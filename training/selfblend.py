"""Self-blended pseudo-fakes (Shiohara & Yamasaki, CVPR 2022, "Detecting Deepfakes with
Self-Blended Images"), over clips.

A real face is blended with an altered copy of itself. Following the paper and its reference
code, per frame:

1. **Mask** from landmarks: the convex hull of one of four region sets of the 68-point layout
   (``facehull``: all points; ``dfl_full``: DeepFaceLab's union of jaw, cheek, eye and nose
   hulls; ``extended``: the same with the brows pushed up half their distance to the eyes;
   ``components``: a random subset of those part hulls). Without dense landmarks the hull of
   ten points extrapolated from MTCNN's five (``face_polygon``) stands in.
2. **Source-target augmentation**, applied to the source or, with even odds, to the target:
   an RGB shift (+-20 levels, probability 0.3), a hue / saturation / value shift, brightness
   and contrast +-0.1, then either a downscale by 2-4 and back (nearest down, bilinear up) or
   a sharpening (alpha 0.2-0.5, lightness 0.5-1.0).
3. **Misalignment**: the source and the mask shifted by up to 3 % (x) and 1.5 % (y) of the
   side and scaled by 0.95-1/0.95.
4. **Mask deformation**: an elastic warp of the mask (alpha 50, sigma 7 at SBI's 380 px,
   scaled to the crop), the mask resized to a random 192-256 px side, blurred with an odd
   kernel of 5-25 px, cut to its fully covered core (an erosion), blurred again (kernel 5-25,
   sigma 5-45) and resized back.
5. **Blend** fake = r * mask * source + (1 - r * mask) * target with r drawn from
   {0.25, 0.5, 0.75, 1, 1, 1}.

The paper blends single images. A clip is made frame by frame with one draw of every choice
(hull type, which side is augmented and how, blend ratio), while the misalignment, the elastic
field and the blend ratio drift smoothly from frame to frame (AR(1) jitter): the temporal
incoherence of a face swapped frame by frame, which the ConvLSTM can see.

Images are uint8 RGB; ``crops`` (T, S, S, 3), ``landmarks5`` (T, 5, 2) MTCNN points and
``dense`` (T, 68, 2) in crop pixels. Randomness comes only from the generator passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from training.augment import face_polygon
from training.landmarks import (
    LEFT_BROW,
    NOSE_BASE,
    NOSE_RIDGE,
    RIGHT_BROW,
    plausible,
    steady_dense,
)

HULL_TYPES = ("dfl_full", "extended", "components", "facehull")
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class SelfBlendConfig:
    """SBI's ranges (reference code, ``src/utils/sbi.py``), plus the temporal drift."""

    rgb_shift: float = 20.0  # uint8 levels per channel ...
    rgb_shift_prob: float = 0.3  # ... applied with this probability
    hue_shift: float = 5.0  # degrees of OpenCV's 0-180 hue circle
    sat_shift: float = 0.1  # relative
    val_shift: float = 0.1  # relative
    brightness: float = 0.1  # fraction of 255
    contrast: float = 0.1  # relative
    downscale: tuple[int, int] = (2, 4)  # factor, inclusive; else sharpening:
    sharpen_alpha: tuple[float, float] = (0.2, 0.5)
    sharpen_lightness: tuple[float, float] = (0.5, 1.0)
    translate: tuple[float, float] = (0.03, 0.015)  # +- fraction of the side, x and y
    scale: tuple[float, float] = (0.95, 1 / 0.95)
    elastic_alpha: float = 50.0 / 380  # times the crop side
    elastic_sigma: float = 7.0 / 380
    mask_side: tuple[int, int] = (192, 256)
    mask_kernel: tuple[int, int] = (5, 25)  # odd Gaussian kernels of the two blurs
    mask_sigma: tuple[float, float] = (5.0, 45.0)  # sigma of the second blur
    ratios: tuple[float, ...] = BLEND_RATIOS
    hull_types: tuple[str, ...] = HULL_TYPES
    dense_landmarks: bool = True  # False: masks from the five MTCNN points only
    # frame-to-frame drift of a clip (AR(1), correlation jitter_rho between neighbours)
    jitter_translate: float = 0.004
    jitter_scale: float = 0.008
    jitter_ratio: float = 0.05
    jitter_rho: float = 0.8

    def __post_init__(self) -> None:
        unknown = set(self.hull_types) - set(HULL_TYPES)
        if unknown or not self.hull_types:
            raise ValueError(f"hull_types must be drawn from {HULL_TYPES}, got {self.hull_types}")
        if not self.ratios or min(self.ratios) <= 0 or max(self.ratios) > 1:
            raise ValueError(f"blend ratios must lie in (0, 1], got {self.ratios}")
        if not 0 <= self.jitter_rho < 1:
            raise ValueError(f"jitter_rho must be in [0, 1), got {self.jitter_rho}")
        if not 1 <= self.downscale[0] <= self.downscale[1]:
            raise ValueError(f"downscale must be 1 <= low <= high, got {self.downscale}")
        if not 1 <= self.mask_kernel[0] <= self.mask_kernel[1]:
            raise ValueError(f"mask_kernel must be 1 <= low <= high, got {self.mask_kernel}")


SBI = SelfBlendConfig()


# --------------------------------------------------------------------------- masks


def _hull(shape: tuple[int, int], *point_sets: np.ndarray) -> np.ndarray:
    """(H, W) uint8 0/1: the filled convex hull of the points of all sets together."""
    pts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in point_sets])
    mask = np.zeros(shape, np.uint8)
    shift = 4  # sub-pixel vertices
    hull = cv2.convexHull(np.round(pts * (1 << shift)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=shift)
    return mask


def _dfl_parts(lm: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """DeepFaceLab's "full" face parts of a 68-point face; their hulls' union is the face."""
    chin = lm[8:9]
    return [
        (lm[0:9], lm[17:18]),  # right jaw
        (lm[8:17], lm[26:27]),  # left jaw
        (lm[17:20], chin),  # right cheek
        (lm[24:27], chin),  # left cheek
        (lm[19:25], chin),  # nose ridge
        (lm[RIGHT_BROW], lm[27:28], lm[NOSE_BASE], chin),  # right eye
        (lm[LEFT_BROW], lm[27:28], lm[NOSE_BASE], chin),  # left eye
        (lm[NOSE_RIDGE], lm[NOSE_BASE]),  # nose
    ]


def _extended(lm: np.ndarray) -> np.ndarray:
    """The brows pushed up by half their distance to the eyes' top (forehead included)."""
    lm = lm.copy()
    ml, mr = (lm[36] + lm[0]) / 2, (lm[16] + lm[45]) / 2
    ql, qr = (lm[36] + ml) / 2, (lm[45] + mr) / 2
    bottom_r = np.stack([ql, lm[36], lm[37], lm[38], lm[39]])
    bottom_l = np.stack([lm[42], lm[43], lm[44], lm[45], qr])
    lm[RIGHT_BROW] = lm[RIGHT_BROW] + (lm[RIGHT_BROW] - bottom_r) / 2
    lm[LEFT_BROW] = lm[LEFT_BROW] + (lm[LEFT_BROW] - bottom_l) / 2
    return lm


def landmark_mask(
    shape: tuple[int, int], dense: np.ndarray, hull_type: str, parts: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) uint8 0/1 mask of a 68-point face for one of ``HULL_TYPES``.

    ``parts`` (bool, 8) picks the part hulls of ``components``; all of them without it.
    """
    if hull_type == "facehull":
        return _hull(shape, dense)
    lm = _extended(dense) if hull_type == "extended" else dense
    chosen = _dfl_parts(lm)
    if hull_type == "components" and parts is not None:
        chosen = [p for p, keep in zip(chosen, parts) if keep]
    if hull_type not in HULL_TYPES:
        raise ValueError(f"hull_type must be one of {HULL_TYPES}, got {hull_type!r}")
    mask = np.zeros(shape, np.uint8)
    for part in chosen:
        mask |= _hull(shape, *part)
    return mask


def five_point_mask(shape: tuple[int, int], landmarks5: np.ndarray) -> np.ndarray:
    """(H, W) uint8 0/1: the hull of the face outline extrapolated from five MTCNN points."""
    return _hull(shape, face_polygon(landmarks5))


def _odd(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    lo, hi = lo_hi
    choices = list(range(lo | 1, hi + 1, 2)) or [lo | 1]
    return int(choices[int(rng.integers(len(choices)))])


def deform_mask(
    mask: np.ndarray, rng: np.random.Generator, config: SelfBlendConfig = SBI
) -> np.ndarray:
    """SBI's ``get_blend_mask``: resize, blur, keep the core, blur again, resize back.

    (H, W) mask in [0, 1] -> (H, W) float32 in [0, 1] with peak 1 (all zero if mask is).
    """
    h, w = mask.shape
    side_h = int(rng.integers(config.mask_side[0], config.mask_side[1] + 1))
    side_w = int(rng.integers(config.mask_side[0], config.mask_side[1] + 1))
    k1, k2 = _odd(rng, config.mask_kernel), _odd(rng, config.mask_kernel)
    sigma = float(rng.uniform(*config.mask_sigma))
    m = cv2.resize(mask.astype(np.float32), (side_w, side_h), interpolation=cv2.INTER_LINEAR)
    m = cv2.GaussianBlur(m, (k1, k1), 0)
    if m.max() <= 0:
        return np.zeros((h, w), np.float32)
    m = m / m.max()
    m[m < 1] = 0  # the fully covered core: an erosion by about half the kernel
    if m.max() <= 0:
        return np.zeros((h, w), np.float32)
    m = cv2.GaussianBlur(m, (k2, k2), sigma)
    m = m / m.max()
    return np.clip(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


# --------------------------------------------------------------------------- appearance


@dataclass(frozen=True)
class _Appearance:
    """One draw of the source-target augmentation (SBI's ``source_transforms``)."""

    rgb: np.ndarray  # (3,) shift, zeros when not applied
    hsv: np.ndarray  # (3,) hue degrees, saturation and value factors - 1
    brightness: float
    contrast: float
    downscale: int  # 0: sharpen instead
    alpha: float
    lightness: float

    @classmethod
    def draw(cls, rng: np.random.Generator, c: SelfBlendConfig) -> _Appearance:
        rgb = rng.uniform(-c.rgb_shift, c.rgb_shift, 3)
        if rng.random() >= c.rgb_shift_prob:
            rgb = np.zeros(3)
        hsv = np.array(
            [
                rng.uniform(-c.hue_shift, c.hue_shift),
                rng.uniform(-c.sat_shift, c.sat_shift),
                rng.uniform(-c.val_shift, c.val_shift),
            ]
        )
        brightness = float(rng.uniform(-c.brightness, c.brightness))
        contrast = float(rng.uniform(-c.contrast, c.contrast))
        down = int(rng.integers(c.downscale[0], c.downscale[1] + 1)) if rng.random() < 0.5 else 0
        return cls(
            rgb,
            hsv,
            brightness,
            contrast,
            down,
            float(rng.uniform(*c.sharpen_alpha)),
            float(rng.uniform(*c.sharpen_lightness)),
        )

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> float32 (H, W, 3) in [0, 255]."""
        x = np.clip(img.astype(np.float32) + self.rgb.astype(np.float32), 0, 255)
        hsv = cv2.cvtColor(x.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + self.hsv[0], 180.0)
        hsv[..., 1] *= 1.0 + self.hsv[1]
        hsv[..., 2] *= 1.0 + self.hsv[2]
        x = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
        x = x.astype(np.float32) * (1.0 + self.contrast) + self.brightness * 255.0
        x = np.clip(x, 0, 255)
        h, w = img.shape[:2]
        if self.downscale:
            small = cv2.resize(
                x,
                (max(1, w // self.downscale), max(1, h // self.downscale)),
                interpolation=cv2.INTER_NEAREST,
            )
            return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        kernel = np.array([[-1, -1, -1], [-1, 8 + self.lightness, -1], [-1, -1, -1]], np.float32)
        kernel /= kernel.sum()
        identity = np.zeros((3, 3), np.float32)
        identity[1, 1] = 1.0
        k = (1 - self.alpha) * identity + self.alpha * kernel
        return np.clip(cv2.filter2D(x, -1, k, borderType=cv2.BORDER_REFLECT101), 0, 255)


# --------------------------------------------------------------------------- clips


def _ar1(rng: np.random.Generator, n: int, rho: float, dims: int = 1) -> np.ndarray:
    """(n, dims) stationary AR(1) noise of unit variance, clipped to +-2."""
    eps = rng.standard_normal((n, dims))
    z = np.empty((n, dims))
    if n:
        z[0] = eps[0]
    for t in range(1, n):
        z[t] = rho * z[t - 1] + math.sqrt(1 - rho * rho) * eps[t]
    return np.clip(z, -2, 2)


def _elastic_field(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """(2, H, W) smooth random field (albumentations' ElasticTransform before alpha)."""
    noise = rng.uniform(-1, 1, (2, h, w)).astype(np.float32)
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in noise])


def _check_clip(
    crops: np.ndarray, landmarks5: np.ndarray, dense: np.ndarray | None
) -> tuple[int, int, int]:
    """(T, H, W) of a uint8 clip whose landmarks fit it; ValueError otherwise."""
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise ValueError(f"expected a (T, H, W, 3) uint8 clip, got {crops.shape} {crops.dtype}")
    n, h, w = crops.shape[:3]
    if np.shape(landmarks5) != (n, 5, 2):
        raise ValueError(f"expected landmarks of shape {(n, 5, 2)}, got {np.shape(landmarks5)}")
    if dense is not None and np.shape(dense) != (n, 68, 2):
        raise ValueError(f"expected dense landmarks of shape {(n, 68, 2)}, got {dense.shape}")
    return n, h, w


# --------------------------------------------------------------------------- another face


def similarity(points: np.ndarray, onto: np.ndarray) -> np.ndarray | None:
    """The 2x3 similarity (rotation, uniform scale, shift) that takes ``points`` (N, 2) onto
    ``onto`` with the least squared error over all of them (Umeyama 1991), or None when
    ``points`` all coincide."""
    src, dst = np.asarray(points, np.float64), np.asarray(onto, np.float64)
    a, b = src - src.mean(0), dst - dst.mean(0)
    spread = (a**2).sum() / len(a)
    if spread < 1e-9:
        return None
    u, d, vt = np.linalg.svd(b.T @ a / len(a))
    sign = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((d * sign).sum() / spread)
    shift = dst.mean(0) - scale * rotation @ src.mean(0)
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(
    donor: np.ndarray, donor_points: np.ndarray, target_points: np.ndarray
) -> np.ndarray | None:
    """``donor`` (S, S, 3) warped so that its landmarks fall on ``target_points`` (the
    least-squares ``similarity`` of the two point sets, either five or 68 points), or None when
    no such transform is found."""
    m = similarity(donor_points, target_points)
    if m is None or not np.isfinite(m).all():
        return None
    h, w = donor.shape[:2]
    return cv2.warpAffine(
        donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
    )


def match_colour(source: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``source`` (uint8 RGB) with the mean and spread of each Lab channel of ``target``
    inside ``region`` (Reinhard's colour transfer, as Face X-ray corrects a donor face before
    blending it); float32."""
    inside = region > 0.5
    if inside.sum() < 16:
        return source.astype(np.float32)
    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    dst = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-3
    d_mean, d_std = dst[inside].mean(0), dst[inside].std(0) + 1e-3
    out = np.clip(np.rint((src - s_mean) * (d_std / s_std) + d_mean), 0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_LAB2RGB).astype(np.float32)


def self_blend(
    crops: np.ndarray,
    landmarks5: np.ndarray,
    rng: np.random.Generator,
    config: SelfBlendConfig = SBI,
    dense: np.ndarray | None = None,
    donor: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self-blend a real clip -> (real, fake, mask): (T, S, S, 3) uint8 twice, (T, S, S) float32.

    With ``donor`` (crops, five-point and 68-point landmarks of another person's clip, as long
    as this one), each frame's source is the donor's frame instead: aligned to this frame's
    landmarks (the 68 points when both fits are plausible, else the five) and colour-matched
    to it inside the mask, the rest as for a self-blend: a face swap between two people, Face
    X-ray's blended images (Li et al., CVPR 2020) with SBI's augmentation and mask. A frame
    whose donor cannot be aligned is self-blended.

    ``real`` is the target the fake was blended into: the input, or the input after the
    source-target augmentation when the draw put it on the target side (as SBI returns it), so
    that real and fake differ only where ``mask`` > 0. ``mask`` is the weight of the source per
    pixel (blend ratio included). The clip's masks come from its 68 points when ``dense`` is
    given, the config allows it and at least half of the frames' fits agree with MTCNN's five
    points (a frame whose fit does not borrows its neighbour's: ``landmarks.steady_dense``);
    otherwise from the five points, for every frame alike. Frames without finite landmarks
    are left as they are.
    """
    n, h, w = _check_clip(crops, landmarks5, dense)
    if donor is not None:
        _check_clip(*donor)
        if len(donor[0]) != n or donor[0].shape[1:3] != (h, w):
            raise ValueError(f"donor clip {donor[0].shape} does not match {crops.shape}")
    c = config

    # Per-clip draws, in a fixed order.
    hull_type = c.hull_types[int(rng.integers(len(c.hull_types)))]
    parts = rng.random(8) < 0.5
    if parts.sum() < 3:
        parts[rng.choice(8, 3, replace=False)] = True
    augment_source = rng.random() < 0.5
    appearance = _Appearance.draw(rng, c)
    ratio0 = float(c.ratios[int(rng.integers(len(c.ratios)))])
    shift0 = rng.uniform(-1, 1, 2) * np.array(c.translate) * (w, h)
    scale0 = float(rng.uniform(*c.scale))
    mask_seed = int(rng.integers(2**31))
    jitter = _ar1(rng, n, c.jitter_rho, 4)
    sigma, alpha = c.elastic_sigma * w, c.elastic_alpha * w
    field = _elastic_field(rng, h, w, sigma)
    mix = math.sqrt(1 - c.jitter_rho**2)

    real, fake = crops.copy(), crops.copy()
    masks = np.zeros((n, h, w), np.float32)
    # one mask source for the whole clip (68 points where most frames have a trusted fit)
    dense = steady_dense(dense, landmarks5) if c.dense_landmarks and dense is not None else None
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for t in range(n):
        five = np.asarray(landmarks5[t], np.float64)
        if not np.isfinite(five).all():
            continue
        if t:
            field = c.jitter_rho * field + mix * _elastic_field(rng, h, w, sigma)
        use_dense = dense is not None
        hard = (
            landmark_mask((h, w), dense[t], hull_type, parts)
            if use_dense
            else five_point_mask((h, w), five)
        )
        target = crops[t]
        face = target
        if (
            donor is not None
            and (swapped := _donor_frame(donor, t, five, dense, use_dense)) is not None
        ):
            face = np.clip(np.rint(match_colour(swapped, target, hard)), 0, 255).astype(np.uint8)
        source = appearance(face) if augment_source else face.astype(np.float32)
        base = target.astype(np.float32) if augment_source else appearance(target)
        # misalignment of source and mask together (SBI's randaffine)
        s = scale0 + c.jitter_scale * jitter[t, 0]
        shift = shift0 + c.jitter_translate * jitter[t, 1:3] * (w, h)
        centre = five.mean(axis=0)
        m = np.array(
            [
                [s, 0.0, (1 - s) * centre[0] + shift[0]],
                [0.0, s, (1 - s) * centre[1] + shift[1]],
            ]
        )
        source = cv2.warpAffine(
            source, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
        )
        moved = cv2.warpAffine(hard.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
        # elastic deformation of the mask only
        moved = cv2.remap(
            moved,
            grid_x + alpha * field[0],
            grid_y + alpha * field[1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        # one blur schedule per clip: the same generator state for every frame
        soft = deform_mask(moved, np.random.default_rng(mask_seed), c)
        ratio = float(np.clip(ratio0 + c.jitter_ratio * jitter[t, 3], 0.05, 1.0))
        weight = (soft * ratio)[..., None]
        base8 = np.clip(np.rint(base), 0, 255).astype(np.uint8)
        real[t] = base8
        fake[t] = np.clip(np.rint(weight * source + (1 - weight) * base8), 0, 255).astype(np.uint8)
        masks[t] = weight[..., 0]
    return real, fake, masks


def _donor_frame(
    donor: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    t: int,
    five: np.ndarray,
    dense: np.ndarray | None,
    use_dense: bool,
) -> np.ndarray | None:
    """Frame ``t`` of a donor clip aligned to a target frame's landmarks, or None."""
    crops, donor5, donor68 = donor
    if (found := frame_landmarks(donor5, donor68, t)) is None:
        return None
    points5, points68 = found
    if use_dense and points68 is not None:
        return align_face(crops[t], points68, dense[t])
    return align_face(crops[t], points5, five)


# --------------------------------------------------------------------------- re-rendered faces

RERENDER_KINDS = ("mouth", "restore")
_LOWER_FACE = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 29]  # jaw below the cheekbones, nose


@dataclass(frozen=True)
class RerenderConfig:
    """Pseudo-fakes that imitate talking-head pipelines rather than face swaps.

    ``mouth``: the lower face (jaw to nose) is replaced by a copy rendered at a lower
    resolution (as lip-sync generators render a 96-256 px face and paste its lower half back),
    optionally restored; ``restore``: the face is replaced by an edge-preserving smoothed and
    sharpened copy of itself (the look of GAN face restoration such as GFPGAN, which many
    generators run on their output). Unlike SBI's clip-level draws, the pasted region is
    deformed afresh in every frame: such pipelines render each frame on its own, so the seam
    flickers.
    """

    kinds: tuple[str, ...] = RERENDER_KINDS
    render_scale: tuple[float, float] = (0.3, 0.6)  # rendered side / crop side (mouth)
    restore_prob: float = 0.5  # mouth renders that are also restored
    smooth_diameter: tuple[int, int] = (5, 9)
    smooth_sigma_color: tuple[float, float] = (20.0, 60.0)
    sharpen: tuple[float, float] = (0.2, 0.8)
    ratio: tuple[float, float] = (0.7, 1.0)

    def __post_init__(self) -> None:
        if not self.kinds or set(self.kinds) - set(RERENDER_KINDS):
            raise ValueError(f"kinds must be drawn from {RERENDER_KINDS}, got {self.kinds}")
        if not 0 < self.render_scale[0] <= self.render_scale[1] <= 1:
            raise ValueError(f"render_scale must be in (0, 1], got {self.render_scale}")


RERENDER = RerenderConfig()


def _restore(img: np.ndarray, d: int, sigma_color: float, amount: float) -> np.ndarray:
    """Edge-preserving smoothing, then an unsharp mask: float32 (H, W, 3) in [0, 255]."""
    smooth = cv2.bilateralFilter(img.astype(np.float32), d, sigma_color, d)
    blurred = cv2.GaussianBlur(smooth, (0, 0), 1.0)
    return np.clip(smooth + amount * (smooth - blurred), 0, 255)


def lower_face_mask(
    shape: tuple[int, int], five: np.ndarray, dense: np.ndarray | None
) -> np.ndarray:
    """(H, W) uint8 0/1: jaw and mouth up to the nose, from 68 points or the five."""
    if dense is not None:
        return _hull(shape, dense[_LOWER_FACE])
    le, re, nose, lm, rm = five
    up = (le + re) / 2 - (lm + rm) / 2
    side = (re - le) * 0.6
    chin = (lm + rm) / 2 - 0.6 * up
    return _hull(shape, np.stack([nose - side, nose + side, lm - side, rm + side, chin]))


def face_mask(shape: tuple[int, int], five: np.ndarray, dense: np.ndarray | None) -> np.ndarray:
    """(H, W) uint8 0/1: the hull of the 68 points, or the five-point polygon without them."""
    return (
        landmark_mask(shape, dense, "facehull")
        if dense is not None
        else five_point_mask(shape, five)
    )


def low_resolution(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` rendered at ``side`` x ``side`` and scaled back (area down, cubic up)."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def paste(frame: np.ndarray, source: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """uint8 ``weight * source + (1 - weight) * frame``; ``weight`` (H, W) in [0, 1]."""
    wt = weight[..., None]
    mixed = wt * source + (1 - wt) * frame.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RestoreDraw:
    """One clip's draw of the face-restoration look (``_restore``) from a RerenderConfig."""

    diameter: int
    sigma_color: float
    amount: float

    @classmethod
    def draw(cls, rng: np.random.Generator, c: RerenderConfig) -> RestoreDraw:
        return cls(
            int(rng.integers(c.smooth_diameter[0], c.smooth_diameter[1] + 1)),
            float(rng.uniform(*c.smooth_sigma_color)),
            float(rng.uniform(*c.sharpen)),
        )

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return _restore(img, self.diameter, self.sigma_color, self.amount)


def frame_landmarks(
    landmarks5: np.ndarray, dense: np.ndarray | None, t: int
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Frame ``t``'s five points (float64) and its 68 points where given and in agreement with
    the five (``landmarks.plausible``), else None for them; None for a frame whose five points
    are not all finite (no face to paint over)."""
    five = np.asarray(landmarks5[t], np.float64)
    if not np.isfinite(five).all():
        return None
    return five, dense[t] if dense is not None and plausible(dense[t], five) else None


def rerender(
    crops: np.ndarray,
    landmarks5: np.ndarray,
    rng: np.random.Generator,
    config: RerenderConfig = RERENDER,
    dense: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A re-rendered pseudo-fake of a real clip -> (real, fake, mask), as ``self_blend``.

    ``real`` is the input unchanged; ``fake`` equals it wherever ``mask`` is 0.
    """
    n, h, w = _check_clip(crops, landmarks5, dense)
    c = config
    kind = c.kinds[int(rng.integers(len(c.kinds)))]
    scale = float(rng.uniform(*c.render_scale))
    restore = kind == "restore" or rng.random() < c.restore_prob
    restorer = RestoreDraw.draw(rng, c)
    ratio = float(rng.uniform(*c.ratio))
    fake = crops.copy()
    masks = np.zeros((n, h, w), np.float32)
    for t in range(n):
        if (found := frame_landmarks(landmarks5, dense, t)) is None:
            continue
        five, pts = found
        if kind == "mouth":
            hard = lower_face_mask((h, w), five, pts)
            source = low_resolution(crops[t], max(8, round(w * scale))).astype(np.float32)
        else:
            hard = face_mask((h, w), five, pts)
            source = crops[t].astype(np.float32)
        if restore:
            source = restorer(source)
        soft = deform_mask(hard.astype(np.float32), rng)  # afresh each frame: the seam flickers
        masks[t] = soft * ratio
        fake[t] = paste(crops[t], source, masks[t])
    return crops.copy(), fake, masks


# A generated pseudo-fake replaces the whole crop with this probability (a fully generated
# video), else it is pasted over the face (a generated face in a real frame).
GENERATED_WHOLE = 0.3
# A generator of generated pseudo-fakes: (T, H, W, 3) uint8 clip, rng -> the clip redrawn.
Draw = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def sharpness(clip: np.ndarray) -> float:
    """Mean absolute Laplacian of a (T, H, W, 3) uint8 clip's grey frames: how much fine
    detail it holds."""
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip]).astype(np.float32)
    return float(np.mean([np.abs(cv2.Laplacian(g, cv2.CV_32F)).mean() for g in grey]))


def match_sharpness(
    real: np.ndarray, fake: np.ndarray, max_sigma: float = 3.0, steps: int = 8
) -> np.ndarray:
    """``real`` Gaussian-blurred (one sigma for the whole clip, found by bisection up to
    ``max_sigma``) until it is no sharper than ``fake``; unchanged where it already is not.
    A redrawn crop is a little smoother than its real clip: paired with the real clip blurred
    alike, smoothness alone no longer tells them apart."""
    target = sharpness(fake)
    if sharpness(real) <= target:
        return real.copy()

    def blur(sigma: float) -> np.ndarray:
        return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in real])

    lo, hi = 0.0, max_sigma
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sharpness(blur(mid)) > target else (lo, mid)
    return blur(hi)


def generated(
    crops: np.ndarray,
    landmarks5: np.ndarray,
    rng: np.random.Generator,
    generator: Draw,
    dense: np.ndarray | None = None,
    lower_face: float = 0.0,
    whole: float = GENERATED_WHOLE,
    match: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A generated pseudo-fake of a real clip -> (real, fake, mask), as ``self_blend``: the
    clip drawn by ``generator`` ((T, H, W, 3) uint8 and ``rng`` -> the same clip redrawn;
    ``training.fingerprint.Generators``),
    replacing the whole crop with probability ``whole``, else pasted with a deformed
    mask at a blend ratio of 0.75-1: over the lower face (jaw to nose, as lip-sync generators
    paste their mouth) with probability ``lower_face``, else over the face. ``real`` is the
    input unchanged, but for a whole-crop redraw with probability ``match``: then it is the
    input blurred to the redraw's sharpness (``match_sharpness``). ``lower_face`` and
    ``match`` 0 draw nothing for them."""
    n, h, w = _check_clip(crops, landmarks5, dense)
    drawn = generator(crops, rng)
    if rng.random() < whole:
        if match and rng.random() < match:
            return match_sharpness(crops, drawn), drawn, np.ones((n, h, w), np.float32)
        return crops.copy(), drawn, np.ones((n, h, w), np.float32)
    region = lower_face_mask if lower_face and rng.random() < lower_face else face_mask
    ratio = float(rng.uniform(0.75, 1.0))
    mask_seed = int(rng.integers(2**31))
    fake = crops.copy()
    masks = np.zeros((n, h, w), np.float32)
    for t in range(n):
        if (found := frame_landmarks(landmarks5, dense, t)) is None:
            continue
        hard = region((h, w), *found).astype(np.float32)
        masks[t] = deform_mask(hard, np.random.default_rng(mask_seed)) * ratio
        fake[t] = paste(crops[t], drawn[t].astype(np.float32), masks[t])
    return crops.copy(), fake, masks


def pseudo_fake(
    crops: np.ndarray,
    landmarks5: np.ndarray,
    rng: np.random.Generator,
    blend: SelfBlendConfig = SBI,
    dense: np.ndarray | None = None,
    rerender_prob: float = 0.0,
    rerender_config: RerenderConfig = RERENDER,
    reenact_prob: float = 0.0,
    reference: tuple | None = None,
    generated_prob: float = 0.0,
    generator: Draw | None = None,
    generated_lower: float = 0.0,
    generated_whole: float = GENERATED_WHOLE,
    generated_match: float = 0.0,
    swap_prob: float = 0.0,
    donor: Callable[[np.random.Generator], tuple | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A self-blend (with probability ``swap_prob`` of another person's face, the clip
    ``donor(rng)`` returns, when it returns one); with probability ``generated_prob`` a face
    drawn by ``generator``
    (``generated``: the whole crop with probability ``generated_whole``, its real clip then
    blurred alike with probability ``generated_match``, else its lower face only with
    probability ``generated_lower``), else with
    probability ``reenact_prob`` a warp-reenacted clip (``training.reenact``, from
    ``reference`` or a frame of the clip), else with probability ``rerender_prob`` a
    re-rendered face."""
    use = dense if blend.dense_landmarks else None
    if generated_prob and rng.random() < generated_prob:
        if generator is None:
            raise ValueError("generated_prob > 0 needs a generator")
        return generated(
            crops,
            landmarks5,
            rng,
            generator,
            use,
            generated_lower,
            generated_whole,
            generated_match,
        )
    if reenact_prob and rng.random() < reenact_prob:
        from training.reenact import REENACT, reenact

        if reference is not None and not blend.dense_landmarks:
            reference = (reference[0], reference[1], None)
        return reenact(crops, landmarks5, rng, REENACT, use, reference)
    if rerender_prob and rng.random() < rerender_prob:
        return rerender(crops, landmarks5, rng, rerender_config, use)
    other = None
    if swap_prob and rng.random() < swap_prob:
        if donor is None:
            raise ValueError("swap_prob > 0 needs a donor")
        other = donor(rng)
    return self_blend(crops, landmarks5, rng, blend, dense, other)
