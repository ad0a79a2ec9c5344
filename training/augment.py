"""Training-time input variations (Su et al. 2021, §3.1.2, Table 6) and self-blended fakes.

The paper varies a third of the training frames (manipulated to original frames at 1:2) with
one of three manipulations that imitate traces a face swap leaves behind:

* Gaussian blur with a 5 x 5 kernel, or wavelet-transform denoising, each followed by an
  affine warp back to the original face size: the pasted face has been resampled and warped
  to fit the target (cf. Li & Lyu 2018, "Exposing DeepFake Videos By Detecting Face Warping
  Artifacts");
* facial data removal: the eyes, the nose or the mouth is blanked, so the model cannot lean
  on one facial part alone.

Self-blended pseudo-fakes live in ``training.selfblend``; ``face_polygon`` here outlines a
face from the five MTCNN points for its fallback masks.

Images are uint8 RGB (H, W, 3), clips (T, H, W, 3); landmarks are MTCNN's five points in
crop pixels, in the order left eye, right eye, nose, left mouth corner, right mouth corner,
(5, 2) per frame or (T, 5, 2) per clip (``scanner.faces.FaceTrack.landmarks``). Every
function draws its randomness from the ``np.random.Generator`` it is given, so a seeded
generator reproduces the output, and none modifies its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pywt

REGIONS = ("eyes", "nose", "mouth")

# Axes of a removed region are scaled by a factor from this range when remove_region gets a
# generator, so the model does not learn one fixed hole size.
REGION_SCALE_RANGE = (0.9, 1.25)

_LEFT_EYE, _RIGHT_EYE, _NOSE, _LEFT_MOUTH, _RIGHT_MOUTH = range(5)


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {getattr(img, 'dtype', type(img))}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")


def _check_clip(crops: np.ndarray, landmarks: np.ndarray) -> None:
    if not isinstance(crops, np.ndarray) or crops.dtype != np.uint8:
        raise ValueError(f"expected a uint8 clip, got {getattr(crops, 'dtype', type(crops))}")
    if crops.ndim != 4 or crops.shape[3] != 3:
        raise ValueError(f"expected a (T, H, W, 3) clip, got shape {crops.shape}")
    if np.shape(landmarks) != (crops.shape[0], 5, 2):
        raise ValueError(
            f"expected landmarks of shape {(crops.shape[0], 5, 2)}, got {np.shape(landmarks)}"
        )


def _check_range(name: str, lo_hi: tuple[float, float], lo: float, hi: float) -> None:
    a, b = lo_hi
    if not lo <= a <= b <= hi:
        raise ValueError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {lo_hi}")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- variations


def gaussian_blur(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    sigma_range: tuple[float, float] = (0.6, 1.6),
) -> np.ndarray:
    """Blur with a 5 x 5 Gaussian kernel of random sigma: the resolution loss of a pasted face.

    img: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB. sigma is drawn uniformly from
    ``sigma_range`` (pixels); beyond about 1.6 the 5 x 5 kernel truncates the Gaussian anyway.
    """
    _check_image(img)
    sigma = float(rng.uniform(*sigma_range))
    return cv2.GaussianBlur(
        img, (5, 5), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT101
    )


def wavelet_denoise(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    wavelets: tuple[str, ...] = ("haar", "db4"),
    max_level: int = 3,
    threshold_scale: tuple[float, float] = (0.8, 1.5),
    sigma_floor: tuple[float, float] = (1.0, 5.0),
) -> np.ndarray:
    """Wavelet-transform denoising: BayesShrink soft thresholding of each channel's details.

    img: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB. The image is decomposed with a wavelet
    drawn from ``wavelets`` over up to ``max_level`` levels; every detail sub-band of every
    channel is soft-thresholded at BayesShrink's sigma_n^2 / sigma_x (sigma_x: the sub-band's
    signal std, sigma_n: the noise std), times a factor from ``threshold_scale``, and the image
    rebuilt. sigma_n is Donoho's robust estimate, median(|finest diagonal coefficients|) /
    0.6745, but at least a level drawn from ``sigma_floor`` (uint8 levels): compressed video
    frames estimate almost no noise, and the variation is meant to smooth them as a generator
    smooths the face it renders, not to leave them as they are.
    """
    _check_image(img)
    wavelet = pywt.Wavelet(wavelets[int(rng.integers(len(wavelets)))])
    scale = float(rng.uniform(*threshold_scale))
    floor = float(rng.uniform(*sigma_floor))

    h, w = img.shape[:2]
    level = min(max_level, pywt.dwt_max_level(min(h, w), wavelet.dec_len))
    if level < 1:
        return img.copy()  # too small for even one level of this wavelet
    x = img.astype(np.float32)
    # axes=(0, 1) transforms the three channels at once; coefficient arrays end in a channel
    # axis, so per-channel thresholds broadcast over it.
    coeffs = pywt.wavedec2(x, wavelet, level=level, axes=(0, 1))
    finest_diag = coeffs[-1][2].reshape(-1, 3)
    sigma_n = np.maximum(np.median(np.abs(finest_diag), axis=0) / 0.6745, floor)  # (3,)

    def shrink(c: np.ndarray) -> np.ndarray:
        var_y = np.mean(c.reshape(-1, 3).astype(np.float64) ** 2, axis=0)
        sigma_x = np.sqrt(np.maximum(var_y - sigma_n**2, 0.0))
        # A sub-band with no signal above the noise is all noise: threshold it away.
        t = np.where(
            sigma_x > 0,
            sigma_n**2 / np.maximum(sigma_x, 1e-12),
            np.abs(c).reshape(-1, 3).max(axis=0),
        )
        t = (t * scale).astype(np.float32)
        return np.sign(c) * np.maximum(np.abs(c) - t, 0.0)

    out = [coeffs[0]] + [tuple(shrink(c) for c in details) for details in coeffs[1:]]
    rec = pywt.waverec2(out, wavelet, axes=(0, 1))
    return _to_uint8(rec[:h, :w])  # odd sizes come back one pixel larger


def affine_warp(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    downscale_range: tuple[float, float] = (0.5, 0.9),
    max_rotation_deg: float = 5.0,
    max_scale: float = 0.05,
    max_shear: float = 0.05,
    max_translate: float = 0.02,
) -> np.ndarray:
    """Shrink the face, warp it slightly and bring it back to its size: face-swap warping.

    img: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB, same shape. The image is resized by a
    factor from ``downscale_range``, warped about its centre by a random affine map (rotation
    up to ``max_rotation_deg`` degrees, isotropic scale and shear up to ``max_scale`` and
    ``max_shear``, translation up to ``max_translate`` of the side) and resized back to H x W,
    with the interpolation of each resize drawn at random. Borders are reflected rather than
    black, so the warp leaves no frame a classifier could key on.
    """
    _check_image(img)
    h, w = img.shape[:2]
    f = float(rng.uniform(*downscale_range))
    angle = math.radians(float(rng.uniform(-max_rotation_deg, max_rotation_deg)))
    s = 1.0 + float(rng.uniform(-max_scale, max_scale))
    shear = float(rng.uniform(-max_shear, max_shear))
    tx, ty = rng.uniform(-max_translate, max_translate, size=2)
    down = (cv2.INTER_AREA, cv2.INTER_LINEAR)[int(rng.integers(2))]
    up = (cv2.INTER_LINEAR, cv2.INTER_CUBIC)[int(rng.integers(2))]

    sw, sh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(img, (sw, sh), interpolation=down)
    cos, sin = math.cos(angle), math.sin(angle)
    a = s * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    centre = np.array([(sw - 1) / 2, (sh - 1) / 2])
    shift = centre - a @ centre + np.array([tx * sw, ty * sh])
    m = np.hstack([a, shift[:, None]]).astype(np.float64)
    warped = cv2.warpAffine(small, m, (sw, sh), flags=up, borderMode=cv2.BORDER_REFLECT101)
    return cv2.resize(warped, (w, h), interpolation=up)


# --------------------------------------------------------------------------- region removal


def _ellipse_mask(
    shape: tuple[int, int],
    centre: np.ndarray,
    direction: np.ndarray,
    a: float,
    b: float,
) -> np.ndarray:
    """Pixels (H, W) bool within the ellipse with semi-axis a along ``direction``, b across."""
    h, w = shape
    norm = float(np.hypot(*direction))
    ux, uy = (direction / norm) if norm > 1e-6 else (1.0, 0.0)
    ys, xs = np.ogrid[:h, :w]
    dx = xs.astype(np.float32) - np.float32(centre[0])
    dy = ys.astype(np.float32) - np.float32(centre[1])
    p = dx * np.float32(ux) + dy * np.float32(uy)
    q = -dx * np.float32(uy) + dy * np.float32(ux)
    return (p / np.float32(a)) ** 2 + (q / np.float32(b)) ** 2 <= 1.0


def region_mask(
    shape: tuple[int, ...],
    landmarks: np.ndarray,
    region: str,
    scale: float = 1.0,
) -> np.ndarray:
    """The pixels ``remove_region`` blanks: (H, W) bool for ``shape`` (H, W[, C]).

    landmarks: (5, 2) MTCNN points in pixels (left eye, right eye, nose, left and right mouth
    corner). Sizes follow the inter-ocular distance d so the region scales with the face, and
    each ellipse is turned with the face:

    * eyes: an ellipse around each eye point, semi-axes 0.32 d along the eye line, 0.2 d across;
    * nose: an ellipse along the line from the nose tip to the eyes' midpoint L, from 0.35 L
      below the tip to 0.75 L above it (bridge and nostrils), half-width 0.26 d;
    * mouth: an ellipse along the line between the mouth corners, reaching 0.15 d beyond each
      corner, half-height 0.24 d, centred 0.04 d below the corners' midpoint (lips, open
      mouths and smiles reach further below the corners than above them).

    ``scale`` multiplies all semi-axes. Non-finite landmarks give an empty mask.
    """
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected landmarks of shape (5, 2), got {pts.shape}")
    hw = (int(shape[0]), int(shape[1]))
    if not np.isfinite(pts).all():
        return np.zeros(hw, bool)
    le, re, nose, lm, rm = pts
    eye_line = re - le
    d = max(float(np.hypot(*eye_line)), 2.0)  # degenerate landmarks still give a small region
    if region == "eyes":
        a, b = 0.32 * d * scale, 0.2 * d * scale
        return _ellipse_mask(hw, le, eye_line, a, b) | _ellipse_mask(hw, re, eye_line, a, b)
    if region == "nose":
        up = (le + re) / 2 - nose
        length = max(float(np.hypot(*up)), 0.2 * d)
        if float(np.hypot(*up)) < 1e-6:
            # Nose tip on the eye line (degenerate detection): point the nose along the normal.
            up = np.array([-eye_line[1], eye_line[0]])
        centre = nose + 0.2 * length * up / float(np.hypot(*up))
        return _ellipse_mask(hw, centre, up, 0.55 * length * scale, 0.26 * d * scale)
    mouth_line = rm - lm
    half = float(np.hypot(*mouth_line)) / 2
    if half < 1e-6:
        mouth_line = eye_line
    normal = np.array([-mouth_line[1], mouth_line[0]]) / max(float(np.hypot(*mouth_line)), 1e-6)
    if float(normal @ ((lm + rm) / 2 - (le + re) / 2)) < 0:
        normal = -normal  # "below" is away from the eyes, whatever the image orientation
    centre = (lm + rm) / 2 + 0.04 * d * scale * normal
    return _ellipse_mask(hw, centre, mouth_line, (half + 0.15 * d) * scale, 0.24 * d * scale)


def remove_region(
    img: np.ndarray,
    landmarks: np.ndarray,
    region: str,
    rng: np.random.Generator | None = None,
    *,
    fill: int = 0,
) -> np.ndarray:
    """Facial data removal: blank the eyes, the nose or the mouth.

    img: (H, W, 3) uint8 RGB, landmarks: (5, 2) in its pixels -> (H, W, 3) uint8 RGB equal to
    img except on ``region_mask(img.shape, landmarks, region, scale)``, which is set to
    ``fill``. scale is 1 without ``rng`` and drawn from ``REGION_SCALE_RANGE`` with it.
    """
    _check_image(img)
    scale = 1.0 if rng is None else float(rng.uniform(*REGION_SCALE_RANGE))
    mask = region_mask(img.shape, landmarks, region, scale)
    out = img.copy()
    out[mask] = fill
    return out


# --------------------------------------------------------------------------- clip augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Which of the paper's variations are on (Table 6 ablation) and how many frames get one.

    With only ``warp`` among blur/wavelet/warp on, the warp alone is a variation, so each
    switch has an effect of its own.
    """

    blur: bool = True
    wavelet: bool = True
    warp: bool = True
    removal: bool = True
    manipulated_ratio: float = 1 / 3  # manipulated : original frames = 1 : 2 (paper §3.1.2)

    def __post_init__(self) -> None:
        if not 0.0 <= self.manipulated_ratio <= 1.0:
            raise ValueError(f"manipulated_ratio must be in [0, 1], got {self.manipulated_ratio}")

    @property
    def variations(self) -> tuple[str, ...]:
        """The variations a manipulated frame draws from, uniformly."""
        out = [name for name in ("blur", "wavelet") if getattr(self, name)]
        if not out and self.warp:
            out.append("warp")
        if self.removal:
            out.append("removal")
        return tuple(out)


def augment_clip(
    crops: np.ndarray,
    landmarks: np.ndarray,
    config: AugmentConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Apply the paper's variations to a random subset of a clip's frames.

    crops: (T, H, W, 3) uint8 RGB, landmarks: (T, 5, 2) in crop pixels -> (T, H, W, 3) uint8,
    a new array. floor(ratio * T + u), u ~ U[0, 1), frames are drawn without replacement (so
    exactly ratio * T when that is whole, and ratio * T on average otherwise); each gets one
    variation drawn uniformly from ``config.variations``: blur or wavelet denoising, followed
    by ``affine_warp`` when ``config.warp`` is on, or removal of a random facial region. The
    other frames are copied unchanged. With every variation off the clip comes back unchanged.
    """
    _check_clip(crops, landmarks)
    out = crops.copy()
    variations = config.variations
    n = crops.shape[0]
    if not variations or n == 0:
        return out
    # Rounded so that 1/3 of 15 frames is 5 frames, not 4.999... and occasionally 4.
    expected = round(config.manipulated_ratio * n, 9)
    k = min(n, int(math.floor(expected + rng.random())))
    for t in np.sort(rng.choice(n, size=k, replace=False)):
        kind = variations[int(rng.integers(len(variations)))]
        if kind == "removal":
            region = REGIONS[int(rng.integers(len(REGIONS)))]
            out[t] = remove_region(crops[t], landmarks[t], region, rng)
            continue
        frame = crops[t]
        if kind == "blur":
            frame = gaussian_blur(frame, rng)
        elif kind == "wavelet":
            frame = wavelet_denoise(frame, rng)
        if config.warp:
            frame = affine_warp(frame, rng)
        out[t] = frame
    return out


def jpeg_frame(frame: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB through JPEG at ``quality`` and back."""
    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def h264_clip(crops: np.ndarray, qp: int, size: tuple[int, int]) -> np.ndarray:
    """Every frame of the clip encoded by H.264 (libx264 through PyAV, in memory) at the
    quantiser ``qp`` (higher is smaller and worse) at ``size`` (width, height, even), and
    decoded back at the clip's own size. Unlike JPEG, H.264 deblocks: at low rates it smears
    skin texture into flat, waxy patches rather than blocks. Every frame is a key frame, coded
    on its own at the same fixed quantiser: the frames given together are not always a video
    (a real frame and its pseudo-fake), and neither may be coded differently for its place
    (rate control would treat the first frame apart)."""
    import io

    import av

    h, w = crops.shape[1:3]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"qp": str(qp), "preset": "veryfast", "x264-params": "keyint=1"}
        for x in crops:
            small = cv2.resize(x, size, interpolation=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(small, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    if len(frames) != len(crops):
        raise RuntimeError(f"H.264 round trip gave {len(frames)} frames for {len(crops)}")
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames])


def jitter_clip(
    crops: np.ndarray,
    rng: np.random.Generator,
    *,
    max_scale: float = 0.08,
    max_translate: float = 0.04,
    max_rotation_deg: float = 6.0,
    max_colour: float = 0.1,
) -> np.ndarray:
    """One draw of framing and colour for every frame of a clip: scaled by up to
    ``max_scale``, shifted by up to ``max_translate`` of the side, rotated by up to
    ``max_rotation_deg`` about the centre (borders reflected), then brightness, contrast and
    saturation each changed by up to ``max_colour``. Applied alike to a real clip and its
    pseudo-fake, it varies what a training clip looks like as a whole, so that the model cannot
    learn the few training videos themselves as "real" and take any other video for a fake.
    (T, H, W, 3) uint8 RGB -> same shape."""
    _check_clip(crops, np.zeros((len(crops), 5, 2), np.float32))
    h, w = crops.shape[1:3]
    angle = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
    scale = 1.0 + float(rng.uniform(-max_scale, max_scale))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    m[:, 2] += rng.uniform(-max_translate, max_translate, 2) * (w, h)
    brightness, contrast, saturation = rng.uniform(-max_colour, max_colour, 3)
    out = []
    for x in crops:
        y = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        y = y.astype(np.float32)
        grey = y.mean(axis=2, keepdims=True)
        y = grey + (y - grey) * (1.0 + saturation)
        y = (y - 128.0) * (1.0 + contrast) + 128.0 + brightness * 255.0
        out.append(_to_uint8(y))
    return np.stack(out)


def jpeg_clip(crops: np.ndarray, rng: np.random.Generator, quality: tuple[int, int]) -> np.ndarray:
    """Re-encode every frame of a clip as JPEG at one quality drawn from ``quality``.

    (T, H, W, 3) uint8 RGB -> same shape. Not one of the paper's variations: dfscan adds it so
    a model cannot lean on fine blending detail that video compression wipes out, and so real
    and fake clips share compression (JPEG's 8x8 blocks are a stand-in for a video codec's).
    """
    _check_range("quality", quality, 1, 100)
    q = int(rng.integers(quality[0], quality[1] + 1))
    out = np.empty_like(crops)
    for t, frame in enumerate(crops):
        out[t] = jpeg_frame(frame, q)
    return out


DEGRADATIONS = ("rescale", "palette", "noise", "blur", "lowres_codec", "smooth", "h264")
# What degrade_clip draws from unless told otherwise (the shipped default's recipe).
DEFAULT_DEGRADATIONS = ("rescale", "palette", "noise", "blur")


def degrade_clip(
    crops: np.ndarray, rng: np.random.Generator, kinds: Sequence[str] = DEFAULT_DEGRADATIONS
) -> np.ndarray:
    """One whole-image degradation of ``kinds``, with one draw of its strength for every frame.

    ``rescale``: down by 1.5-4x and back up (a low-resolution source); ``palette``: 256
    colours with Floyd-Steinberg dithering, one palette per clip (a GIF); ``noise``: Gaussian,
    sigma 2-8 levels (sensor noise); ``blur``: Gaussian, sigma 0.5-1.5 (defocus, a soft
    upscale); ``lowres_codec``: down by 1.5-5x, JPEG quality 20-70 at that size, and back up
    (a small, compressed video whose face the scanner enlarges to the crop size: the codec's
    blocks come out enlarged too); ``smooth``: an edge-preserving (bilateral) filter, colour
    sigma 20-60 levels, space sigma 3-9 px (a beauty filter: skin smoothed, edges kept, as
    much real video on social media is); ``h264``: every frame encoded by H.264 at quantiser
    28-45 at 1/3 to 1.4 times its size and decoded back (``h264_clip``: a low-rate video, its
    skin smeared flat by the codec; needs PyAV, in the ``train`` extra). Applied alike to a
    real clip and its pseudo-fake, it teaches the model that the quality of a whole video says
    nothing about manipulation; only a mismatch inside it does. (T, H, W, 3) uint8 RGB -> same
    shape.
    """
    from PIL import Image

    _check_clip(crops, np.zeros((len(crops), 5, 2), np.float32))
    unknown = sorted(set(kinds) - set(DEGRADATIONS))
    if not kinds or unknown:
        raise ValueError(f"degradations must be some of {DEGRADATIONS}, got {list(kinds)}")
    kind = kinds[int(rng.integers(len(kinds)))]
    h, w = crops.shape[1:3]
    if kind == "lowres_codec":
        f = rng.uniform(1.5, 5.0)
        q = int(rng.integers(20, 71))
        small = (max(8, round(w / f)), max(8, round(h / f)))
        return np.stack(
            [
                cv2.resize(
                    jpeg_frame(cv2.resize(x, small, interpolation=cv2.INTER_AREA), q),
                    (w, h),
                    interpolation=cv2.INTER_LINEAR,
                )
                for x in crops
            ]
        )
    if kind == "rescale":
        f = rng.uniform(1.5, 4.0)
        small = (max(8, round(w / f)), max(8, round(h / f)))
        return np.stack(
            [
                cv2.resize(
                    cv2.resize(x, small, interpolation=cv2.INTER_AREA),
                    (w, h),
                    interpolation=cv2.INTER_LINEAR,
                )
                for x in crops
            ]
        )
    if kind == "palette":
        dither = Image.Dither.FLOYDSTEINBERG
        # one palette for every image (a GIF's): fitted to all of them side by side, not to
        # the first, which made the others (a pseudo-fake beside its real) quantise worse
        palette = Image.fromarray(np.concatenate(list(crops), axis=1)).quantize(256, dither=dither)
        return np.stack(
            [
                np.asarray(
                    Image.fromarray(x).quantize(palette=palette, dither=dither).convert("RGB")
                )
                for x in crops
            ]
        )
    if kind == "h264":
        f = rng.uniform(1 / 1.4, 3.0)
        size = (max(16, 2 * round(w / f / 2)), max(16, 2 * round(h / f / 2)))
        return h264_clip(crops, int(rng.integers(28, 46)), size)
    if kind == "smooth":
        colour, space = rng.uniform(20.0, 60.0), rng.uniform(3.0, 9.0)
        return np.stack([cv2.bilateralFilter(x, 0, colour, space) for x in crops])
    if kind == "noise":
        sigma = rng.uniform(2.0, 8.0)
        noise = rng.normal(0.0, sigma, crops.shape).astype(np.float32)
        return _to_uint8(crops.astype(np.float32) + noise)
    sigma = rng.uniform(0.5, 1.5)
    return np.stack([cv2.GaussianBlur(x, (0, 0), sigma) for x in crops])


# --------------------------------------------------------------------------- face outline


def face_polygon(landmarks: np.ndarray) -> np.ndarray:
    """Points (10, 2) outlining the inner face, derived from the five MTCNN landmarks.

    Five points only span eyes to mouth, so brows, chin and cheeks are extrapolated along the
    face's own axes: brows 0.35 h above the eyes (h: eyes' midpoint to mouth's midpoint), chin
    0.6 h below the mouth, cheeks 0.7 d (inter-ocular distance) beside the nose.
    """
    le, re, nose, lm, rm = np.asarray(landmarks, dtype=np.float64)
    eye_mid, mouth_mid = (le + re) / 2, (lm + rm) / 2
    up = eye_mid - mouth_mid
    right = re - le
    d = max(float(np.hypot(*right)), 1e-6)
    r_hat = right / d
    return np.stack(
        [
            le,
            re,
            nose,
            lm,
            rm,
            le + 0.35 * up,
            re + 0.35 * up,
            mouth_mid - 0.6 * up,
            nose - 0.7 * d * r_hat,
            nose + 0.7 * d * r_hat,
        ]
    )
