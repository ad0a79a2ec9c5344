"""Generated faces as pseudo-fakes: a real face passed through an upsampling decoder.

Talking-head and face-swap generators draw their pixels with a convolutional decoder that
upsamples a small feature map (a GAN's generator, a diffusion model's VAE decoder, a face
super-resolution network). What such a decoder leaves in an image (its upsampling's periodic
traces, its texture statistics) is shared across generators more than their faces are. As in
Zhang, Karaman & Chang (2019, "Detecting and simulating artifacts in GAN fake images"), a small
autoencoder trained to reproduce real face crops simulates it: its reconstruction of a real
crop is the same face, drawn by a decoder. Pasted over the real face with a self-blending mask
(or replacing the whole crop, as a fully generated video would), it is a pseudo-fake whose only
difference from its real frame is that it was generated.

The autoencoder is small (about 80 k parameters, 4x downsampling with an overcomplete
bottleneck so that reconstructions stay sharp), trains in minutes on the CPU on random patches
of the cached real crops, and is stored with the training run (``file_name``). A run can train
several that differ as generators do (``UPSAMPLINGS``: transposed convolution, interpolation
then convolution, pixel shuffle; a ``restore-`` kind redraws the face from a reduced copy, as a
face-restoration or super-resolution step does), and ``Generators`` draws each clip with one of
them: what the detector learns is then what decoders share, not one decoder's own traces.

A ``latent-`` kind is drawn as a latent-diffusion model's VAE decoder draws (Stable Diffusion's,
which most diffusion talking heads use): through an 8x smaller, 4-channel latent, trained with a
perceptual loss (distances between normalised ImageNet features, as LPIPS) besides L1, meant to
redraw fine texture (skin, hair) rather than blur it. Its reconstructions are less faithful
(32.6 dB after 1,500 steps on the default recipe's crops, against 34.5-38 dB for the plain and
restoring kinds), and its faces look smoothed and repainted. ``Generators`` can also draw at
a larger scale than the crop (``max_scale``) and reduce the drawing back, as a generator
drawing a 512 px portrait whose face the scanner then reduces to its crop, and draw each frame
of a clip with its own autoencoder (``flicker``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn

from scanner.files import replacing

log = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.safetensors"  # the autoencoder, in a training run's folder
RESTORE_FACTOR = 3.0  # how much a restoring generator's input is reduced first
LATENT_CHANNELS = 4  # a latent kind's bottleneck, as a latent-diffusion VAE's latent
# (patch side, batch, learning rate) an autoencoder trains with unless told: a latent kind
# takes larger patches (16x16 latents), fewer of them, and a gentler rate
TRAINING = {False: (96, 16, 2e-3), True: (128, 8, 1e-3)}
PERCEPTUAL_WEIGHT = 1.0  # of the feature distance against L1, for latent kinds
PERCEPTUAL_BLOCKS = 4  # backbone blocks whose features the perceptual distance compares


UPSAMPLINGS = ("transposed", "nearest", "bilinear", "shuffle")


class GeneratorKind(NamedTuple):
    """One generator of a run: its upsampling, the reduction of its input when it restores
    (0: none), and whether it draws through a latent-diffusion-like latent."""

    upsampling: str
    restore: float = 0.0
    latent: bool = False


def kind_name(upsampling: str, restore: float, latent: bool = False) -> str:
    """A generator's name in a run's folder and log: the upsampling, after ``latent-`` when
    it draws through a latent and ``restore-`` when it restores (the inverse of
    ``parse_kinds``)."""
    return ("restore-" if restore else "") + ("latent-" if latent else "") + upsampling


def _up(cin: int, cout: int, upsampling: str) -> list[nn.Module]:
    """One learnt 2x upsampling, as generators draw it: a transposed convolution (periodic
    checkerboard traces), interpolation then a convolution (smoother), or sub-pixel
    convolution (pixel shuffle)."""
    if upsampling == "transposed":
        return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
    if upsampling == "shuffle":
        return [nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2)]
    return [nn.Upsample(scale_factor=2, mode=upsampling), nn.Conv2d(cin, cout, 3, padding=1)]


class _Residual(nn.Module):
    """Two 3x3 convolutions added to their input, as a VAE's residual blocks."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _latent_coder(w: int, upsampling: str) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder and decoder through an 8x smaller LATENT_CHANNELS latent, residual blocks at
    the reduced scales (the full scale has none: it costs the most)."""
    act = nn.LeakyReLU(0.2)
    encoder = nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1),
        act,
        nn.Conv2d(w, w, 4, stride=2, padding=1),
        act,
        _Residual(w),
        nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
        act,
        _Residual(2 * w),
        nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1),
        act,
        _Residual(2 * w),
        nn.Conv2d(2 * w, LATENT_CHANNELS, 3, padding=1),
    )
    decoder = nn.Sequential(
        nn.Conv2d(LATENT_CHANNELS, 2 * w, 3, padding=1),
        act,
        _Residual(2 * w),
        *_up(2 * w, 2 * w, upsampling),
        act,
        _Residual(2 * w),
        *_up(2 * w, w, upsampling),
        act,
        _Residual(w),
        *_up(w, w, upsampling),
        act,
        nn.Conv2d(w, 3, 3, padding=1),
        nn.Tanh(),
    )
    return encoder, decoder


class UpsamplingAutoencoder(nn.Module):
    """Image -> image through a 4x smaller feature map and two learnt 2x upsamplings of one
    kind (``UPSAMPLINGS``). Pixels in [-1, 1].

    ``restore`` > 1 makes it a face-restoration network instead (as GFPGAN or a face
    super-resolution step after a talking-head generator): its input is first reduced
    ``restore`` times and enlarged back, and it learns to draw the sharp face from that.
    ``latent`` draws through an 8x smaller 4-channel latent instead (``_latent_coder``, width
    doubled), as a latent-diffusion VAE does."""

    def __init__(
        self,
        width: int = 16,
        upsampling: str = "transposed",
        restore: float = 0.0,
        latent: bool = False,
    ):
        super().__init__()
        if upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}")
        if restore and restore <= 1:
            raise ValueError(f"restore is a reduction factor > 1 (or 0: none), got {restore}")
        self.upsampling, self.restore, self.latent = upsampling, float(restore), bool(latent)
        if latent:
            self.encoder, self.decoder = _latent_coder(2 * width, upsampling)
            return
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.decoder = nn.Sequential(
            *_up(4 * w, 2 * w, upsampling),
            nn.LeakyReLU(0.2),
            *_up(2 * w, w, upsampling),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 3, 3, padding=1),
            nn.Tanh(),
        )

    @property
    def kind(self) -> str:
        """Its name in a run's folder and log (``kind_name``)."""
        return kind_name(self.upsampling, self.restore, self.latent)

    @property
    def multiple(self) -> int:
        """What image sides must be multiples of: its total downsampling."""
        return 8 if self.latent else 4

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        """What the network is given: ``x`` itself, or reduced ``restore`` times and back."""
        if not self.restore:
            return x
        h, w = x.shape[-2:]
        small = (max(1, round(h / self.restore)), max(1, round(w / self.restore)))
        low = nn.functional.interpolate(x, size=small, mode="area")
        return nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.degrade(x)))


def _to_unit(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def regenerate(ae: UpsamplingAutoencoder, crops: np.ndarray, batch: int = 16) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> the same faces drawn by the autoencoder's decoder (H and W
    multiples of ``ae.multiple``), each image's channel means moved to its input's: a colour
    cast of the autoencoder would be a cue no generator shares."""
    m = ae.multiple
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] % m or crops.shape[2] % m:
        raise ValueError(
            f"need (T, H, W, 3) crops with H and W multiples of {m}, got {crops.shape}"
        )
    out = np.empty_like(crops)
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = _to_unit(crops[i : i + batch])
            y = ae(x)
            y = y + (x.mean(dim=(2, 3), keepdim=True) - y.mean(dim=(2, 3), keepdim=True))
            y = ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            out[i : i + batch] = y.permute(0, 2, 3, 1).numpy()
    return out


class FeatureDistance(nn.Module):
    """The perceptual distance of LPIPS without its learnt weights: between two images'
    features from the first PERCEPTUAL_BLOCKS blocks of a frozen ImageNet EfficientNet
    (timm's, given with its weights, for inputs in [-1, 1]), each feature vector normalised
    to unit length, squared differences summed over channels, averaged over positions and
    summed over blocks."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Sequential(backbone.conv_stem, backbone.bn1)
        self.blocks = nn.ModuleList(backbone.blocks[:PERCEPTUAL_BLOCKS])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureDistance:
        return super().train(False)  # frozen statistics, always

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.stem(a), self.stem(b)
        total = a.new_zeros(())
        for block in self.blocks:
            fa, fb = block(fa), block(fb)
            na = fa / (fa.norm(dim=1, keepdim=True) + 1e-6)
            nb = fb / (fb.norm(dim=1, keepdim=True) + 1e-6)
            total = total + (na - nb).pow(2).sum(dim=1).mean()
        return total


def train_autoencoder(
    images: Sequence[np.ndarray],
    steps: int,
    seed: int = 0,
    patch: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    upsampling: str = "transposed",
    restore: float = 0.0,
    latent: bool = False,
    perceptual: nn.Module | None = None,
) -> tuple[UpsamplingAutoencoder, dict]:
    """Train an autoencoder to reproduce random ``patch`` x ``patch`` squares of ``images``
    ((H, W, 3) uint8 RGB, each at least ``patch`` on a side), L1 loss, Adam with a cosine
    schedule. Returns it (in eval mode) and its log: the last losses and the PSNR of its
    reconstructions of the last batch. A ``latent`` kind needs ``perceptual`` (a
    ``FeatureDistance``), added to L1 at PERCEPTUAL_WEIGHT. ``patch``, ``batch`` and ``lr``
    default to the kind's own (TRAINING)."""
    if not images or steps < 1:
        raise ValueError("need images and at least one step to train the autoencoder")
    if latent and perceptual is None:
        raise ValueError("a latent generator trains with a perceptual distance: give one")
    own_patch, own_batch, own_lr = TRAINING[bool(latent)]
    patch, batch, lr = patch or own_patch, batch or own_batch, lr or own_lr
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ae = UpsamplingAutoencoder(upsampling=upsampling, restore=restore, latent=latent)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0, losses = time.perf_counter(), []
    for step in range(steps):
        picks = rng.integers(len(images), size=batch)
        patches = []
        for i in picks:
            img = images[i]
            y = int(rng.integers(img.shape[0] - patch + 1))
            x = int(rng.integers(img.shape[1] - patch + 1))
            patches.append(img[y : y + patch, x : x + patch])
        x = _to_unit(np.stack(patches))
        drawn = ae(x)
        l1 = (drawn - x).abs().mean()
        loss = l1 + PERCEPTUAL_WEIGHT * perceptual(drawn, x) if latent else l1
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(l1.detach()))
        if (step + 1) % 200 == 0 or step + 1 == steps:
            recent = np.mean(losses[-50:])
            log.info("autoencoder %s step %d/%d: L1 %.4f", ae.kind, step + 1, steps, recent)
    ae.eval()
    with torch.inference_mode():
        mse = float(((ae(x) - x) / 2).pow(2).mean())
    record = {
        "kind": ae.kind,
        "steps": steps,
        "l1": round(float(np.mean(losses[-50:])), 5),
        "psnr_db": round(float(10 * np.log10(1 / max(mse, 1e-12))), 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("autoencoder %s: %s", ae.kind, record)
    return ae, record


def save_autoencoder(ae: UpsamplingAutoencoder, path: Path) -> None:
    """Weights, with the upsampling and restore factor in the file's metadata."""
    from safetensors.torch import save_file

    meta = {"upsampling": ae.upsampling, "restore": repr(ae.restore), "latent": str(ae.latent)}
    with replacing(path) as tmp:
        save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(tmp), metadata=meta)


def load_autoencoder(path: Path) -> UpsamplingAutoencoder:
    """An autoencoder saved by ``save_autoencoder`` (a file without metadata: transposed)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    ae = UpsamplingAutoencoder(
        upsampling=meta.get("upsampling", "transposed"),
        restore=float(meta.get("restore", 0)),
        latent=meta.get("latent") == "True",
    )
    ae.load_state_dict(load_file(str(path)))
    return ae.eval()


def parse_kinds(text: str) -> list[GeneratorKind]:
    """``"transposed,nearest,restore-shuffle,latent-nearest"`` -> the generators of one run. A
    ``restore-`` kind reduces its input RESTORE_FACTOR times; a ``latent-`` kind draws through
    a latent (``restore-latent-KIND``: both)."""
    kinds = []
    for name in (k.strip() for k in text.split(",")):
        if not name:
            continue
        rest = name.removeprefix("restore-")
        up = rest.removeprefix("latent-")
        if up not in UPSAMPLINGS:
            raise ValueError(
                f"generator kind {name!r}: one of {UPSAMPLINGS}, optionally as restore-KIND, "
                "latent-KIND or restore-latent-KIND"
            )
        kinds.append(GeneratorKind(up, RESTORE_FACTOR if rest != name else 0.0, up != rest))
    if not kinds:
        raise ValueError("no generator kind given")
    return kinds


def file_name(kind: str) -> str:
    """A generator's file in a run folder; the first kind, transposed, keeps the old name."""
    return FINGERPRINT if kind == "transposed" else f"fingerprint-{kind}.safetensors"


def _resized(crops: np.ndarray, h: int, w: int, interpolation: int) -> np.ndarray:
    return np.stack([cv2.resize(c, (w, h), interpolation=interpolation) for c in crops])


class Generators:
    """Several autoencoders; each clip is drawn by one of them, chosen by the caller's rng:
    ``Generators(aes)(crops, rng)``. A detector that sees many decoders' traces learns what
    they share rather than one decoder's own.

    ``max_scale`` > 1 draws each clip at a scale drawn from [1, max_scale] (the crop enlarged,
    drawn, and reduced back by area), as a generator drawing a larger face than the scanner's
    crop: its traces then reach the detector reduced, as they do in a scan. 1 draws at the
    crop's size and takes nothing more from the rng.

    ``flicker``: the share of clips whose frames are each drawn by an autoencoder of their own,
    so that the generated texture changes from frame to frame, as it does when a generator
    draws every frame on its own (no temporal model); 0 takes nothing more from the rng."""

    def __init__(
        self,
        autoencoders: Sequence[UpsamplingAutoencoder],
        max_scale: float = 1.0,
        flicker: float = 0.0,
    ) -> None:
        if not autoencoders:
            raise ValueError("need at least one autoencoder")
        if max_scale < 1:
            raise ValueError(f"max_scale is an enlargement >= 1, got {max_scale}")
        if not 0 <= flicker <= 1:
            raise ValueError(f"flicker is a share in [0, 1], got {flicker}")
        self.autoencoders = list(autoencoders)
        self.max_scale, self.flicker = float(max_scale), float(flicker)

    def _draw(self, ae: UpsamplingAutoencoder, crops: np.ndarray, scale: float) -> np.ndarray:
        if scale == 1:
            return regenerate(ae, crops)
        h, w = crops.shape[1:3]
        m = ae.multiple
        big_h, big_w = (max(m, round(side * scale / m) * m) for side in (h, w))
        big = _resized(crops, big_h, big_w, cv2.INTER_CUBIC)
        return _resized(regenerate(ae, big), h, w, cv2.INTER_AREA)

    def __call__(self, crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(self.autoencoders)
        pick = int(rng.integers(n)) if n > 1 else 0
        scale = float(rng.uniform(1.0, self.max_scale)) if self.max_scale > 1 else 1.0
        if not (self.flicker and n > 1 and rng.random() < self.flicker):
            return self._draw(self.autoencoders[pick], crops, scale)
        picks = rng.integers(n, size=len(crops))
        out = np.empty_like(crops)
        for k in np.unique(picks):
            out[picks == k] = self._draw(self.autoencoders[k], crops[picks == k], scale)
        return out
