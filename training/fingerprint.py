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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.safetensors"  # the autoencoder, in a training run's folder
RESTORE_FACTOR = 3.0  # how much a restoring generator's input is reduced first


UPSAMPLINGS = ("transposed", "nearest", "bilinear", "shuffle")


def kind_name(upsampling: str, restore: float) -> str:
    """A generator's name in a run's folder and log: the upsampling, ``restore-`` when it
    restores (the inverse of ``parse_kinds``)."""
    return f"restore-{upsampling}" if restore else upsampling


def _up(cin: int, cout: int, upsampling: str) -> list[nn.Module]:
    """One learnt 2x upsampling, as generators draw it: a transposed convolution (periodic
    checkerboard traces), interpolation then a convolution (smoother), or sub-pixel
    convolution (pixel shuffle)."""
    if upsampling == "transposed":
        return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
    if upsampling == "shuffle":
        return [nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2)]
    return [nn.Upsample(scale_factor=2, mode=upsampling), nn.Conv2d(cin, cout, 3, padding=1)]


class UpsamplingAutoencoder(nn.Module):
    """Image -> image through a 4x smaller feature map and two learnt 2x upsamplings of one
    kind (``UPSAMPLINGS``). Pixels in [-1, 1].

    ``restore`` > 1 makes it a face-restoration network instead (as GFPGAN or a face
    super-resolution step after a talking-head generator): its input is first reduced
    ``restore`` times and enlarged back, and it learns to draw the sharp face from that."""

    def __init__(self, width: int = 16, upsampling: str = "transposed", restore: float = 0.0):
        super().__init__()
        if upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}")
        if restore and restore <= 1:
            raise ValueError(f"restore is a reduction factor > 1 (or 0: none), got {restore}")
        self.upsampling, self.restore = upsampling, float(restore)
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
        return kind_name(self.upsampling, self.restore)

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
    multiples of 4), each image's channel means moved to its input's: a colour cast of the
    autoencoder would be a cue no generator shares."""
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] % 4 or crops.shape[2] % 4:
        raise ValueError(f"need (T, H, W, 3) crops with H and W multiples of 4, got {crops.shape}")
    out = np.empty_like(crops)
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = _to_unit(crops[i : i + batch])
            y = ae(x)
            y = y + (x.mean(dim=(2, 3), keepdim=True) - y.mean(dim=(2, 3), keepdim=True))
            y = ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            out[i : i + batch] = y.permute(0, 2, 3, 1).numpy()
    return out


def train_autoencoder(
    images: Sequence[np.ndarray],
    steps: int,
    seed: int = 0,
    patch: int = 96,
    batch: int = 16,
    lr: float = 2e-3,
    upsampling: str = "transposed",
    restore: float = 0.0,
) -> tuple[UpsamplingAutoencoder, dict]:
    """Train an autoencoder to reproduce random ``patch`` x ``patch`` squares of ``images``
    ((H, W, 3) uint8 RGB, each at least ``patch`` on a side), L1 loss, Adam with a cosine
    schedule. Returns it (in eval mode) and its log: the last losses and the PSNR of its
    reconstructions of the last batch."""
    if not images or steps < 1:
        raise ValueError("need images and at least one step to train the autoencoder")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ae = UpsamplingAutoencoder(upsampling=upsampling, restore=restore)
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
        loss = (ae(x) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 200 == 0 or step + 1 == steps:
            l1 = np.mean(losses[-50:])
            log.info("autoencoder %s step %d/%d: L1 %.4f", ae.kind, step + 1, steps, l1)
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

    tmp = path.with_suffix(".tmp")
    meta = {"upsampling": ae.upsampling, "restore": repr(ae.restore)}
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(path)


def load_autoencoder(path: Path) -> UpsamplingAutoencoder:
    """An autoencoder saved by ``save_autoencoder`` (a file without metadata: transposed)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    ae = UpsamplingAutoencoder(
        upsampling=meta.get("upsampling", "transposed"), restore=float(meta.get("restore", 0))
    )
    ae.load_state_dict(load_file(str(path)))
    return ae.eval()


def parse_kinds(text: str) -> list[tuple[str, float]]:
    """``"transposed,nearest,restore-shuffle"`` -> [(upsampling, restore factor), ...]: the
    generators of one run. A ``restore-`` kind reduces its input RESTORE_FACTOR times."""
    kinds = []
    for name in (k.strip() for k in text.split(",")):
        if not name:
            continue
        up = name.removeprefix("restore-")
        if up not in UPSAMPLINGS:
            raise ValueError(
                f"generator kind {name!r}: one of {UPSAMPLINGS}, optionally as restore-KIND"
            )
        kinds.append((up, RESTORE_FACTOR if name != up else 0.0))
    if not kinds:
        raise ValueError("no generator kind given")
    return kinds


def file_name(kind: str) -> str:
    """A generator's file in a run folder; the first kind, transposed, keeps the old name."""
    return FINGERPRINT if kind == "transposed" else f"fingerprint-{kind}.safetensors"


class Generators:
    """Several autoencoders; each clip is drawn by one of them, chosen by the caller's rng:
    ``Generators(aes)(crops, rng)``. A detector that sees many decoders' traces learns what
    they share rather than one decoder's own."""

    def __init__(self, autoencoders: Sequence[UpsamplingAutoencoder]) -> None:
        if not autoencoders:
            raise ValueError("need at least one autoencoder")
        self.autoencoders = list(autoencoders)

    def __call__(self, crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pick = int(rng.integers(len(self.autoencoders))) if len(self.autoencoders) > 1 else 0
        return regenerate(self.autoencoders[pick], crops)
