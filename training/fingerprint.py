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
of the cached real crops, and is stored with the training run (``FINGERPRINT``).
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


class UpsamplingAutoencoder(nn.Module):
    """Image -> image through a 4x smaller feature map and two learnt 2x upsamplings
    (transposed convolutions: the upsampling most generators use). Pixels in [-1, 1]."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
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
            nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 3, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


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
) -> tuple[UpsamplingAutoencoder, dict]:
    """Train an autoencoder to reproduce random ``patch`` x ``patch`` squares of ``images``
    ((H, W, 3) uint8 RGB, each at least ``patch`` on a side), L1 loss, Adam with a cosine
    schedule. Returns it (in eval mode) and its log: the last losses and the PSNR of its
    reconstructions of the last batch."""
    if not images or steps < 1:
        raise ValueError("need images and at least one step to train the autoencoder")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ae = UpsamplingAutoencoder()
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
            log.info("autoencoder step %d/%d: L1 %.4f", step + 1, steps, np.mean(losses[-50:]))
    ae.eval()
    with torch.inference_mode():
        mse = float(((ae(x) - x) / 2).pow(2).mean())
    record = {
        "steps": steps,
        "l1": round(float(np.mean(losses[-50:])), 5),
        "psnr_db": round(float(10 * np.log10(1 / max(mse, 1e-12))), 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("autoencoder: %s", record)
    return ae, record


def save_autoencoder(ae: UpsamplingAutoencoder, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(tmp))
    tmp.replace(path)


def load_autoencoder(path: Path) -> UpsamplingAutoencoder:
    from safetensors.torch import load_file

    ae = UpsamplingAutoencoder()
    ae.load_state_dict(load_file(str(path)))
    return ae.eval()
