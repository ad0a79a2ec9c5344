"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

dlib-bin's wheels are built without BLAS, so dlib computes a descriptor in about 75 ms on one
core of the 2-core dev machine; the same network through PyTorch's convolutions takes a
fraction of that. ``read_weights`` reads the weights out of dlib's own model file (shipped
in the face-recognition-models wheel; nothing is downloaded) and ``DescriptorNet`` runs them.
The network is the one of dlib's ``dnn_face_recognition_ex.cpp``: a 7x7 convolution and max
pool, then 14 residual blocks of two 3x3 convolutions (32, 64, 128, 256, 256 filters; the first
block of the last four halves the size), average pooling and a 128-wide linear layer, on a
150x150 face chip. ``tests/test_dlib_resnet.py`` checks it against dlib's own descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHIP_SIZE = 150  # dlib's input_rgb_image_sized<150>
CHIP_PADDING = 0.25  # dlib.get_face_chip's default, as compute_face_descriptor uses it

# (filters, halves the size) of each residual block, input side first
BLOCKS = ((32, False),) * 3 + (
    (64, True),
    (64, False),
    (64, False),
    (64, False),
    (128, True),
    (128, False),
    (128, False),
    (256, True),
    (256, False),
    (256, False),
    (256, True),
)


class DlibFormatError(ValueError):
    """The model file does not hold the network this module runs."""


@dataclass(frozen=True)
class Conv:
    weight: np.ndarray  # (out, in, kh, kw)
    bias: np.ndarray  # (out,)
    stride: int
    padding: int


@dataclass(frozen=True)
class DlibWeights:
    mean_rgb: tuple[float, float, float]  # subtracted from the chip's pixels, then / 256
    convs: list[Conv]  # input side first, 29
    affines: list[tuple[np.ndarray, np.ndarray]]  # (scale, shift) after each convolution
    fc: np.ndarray  # (256, 128)


class _Reader:
    """dlib's serialization: integers as a byte of length (| 0x80 when negative) then that
    many little-endian bytes; floats outside tensors as such an integer mantissa and exponent;
    tensors (version 2) as four dimensions then raw little-endian float32."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int(self) -> int:
        head = self.data[self.pos]
        n = head & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        return float(np.ldexp(float(mantissa), self.int()))

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise DlibFormatError("tensor of an unknown version")
        dims = [self.int() for _ in range(4)]
        n = int(np.prod(dims))
        out = np.frombuffer(self.data, "<f4", n, self.pos).copy()
        self.pos += 4 * n
        return out

    def seek_name(self, name: bytes, within: int = 4096) -> None:
        """Move past the next serialized string ``name`` (its length byte pair, then its
        bytes), which must start within ``within`` bytes."""
        key = bytes([1, len(name)]) + name
        at = self.data.find(key, self.pos, self.pos + within + len(key))
        if at < 0:
            raise DlibFormatError(f"no {name.decode()} layer where one was expected")
        self.pos = at + len(key)


def read_weights(path: Path) -> DlibWeights:
    """The network's weights, read out of dlib's model file at ``path``. Layers are found in
    the order the network applies them and checked against its shape; raises DlibFormatError
    for any other file, or one cut short."""
    r = _Reader(Path(path).read_bytes())
    try:
        return _read(r)
    except DlibFormatError:
        raise
    except (ValueError, IndexError) as e:  # past the end of the file
        raise DlibFormatError(f"cut short or damaged: {e}") from e


def _pool(r: _Reader, name: bytes, expected: list[int]) -> None:
    """Past the next pooling layer ``name``, whose window, strides and paddings must be
    ``expected``."""
    r.seek_name(name)
    got = [r.int() for _ in range(6)]
    if got != expected:
        raise DlibFormatError(f"{name.decode()} {got}, not {expected}")


def _read(r: _Reader) -> DlibWeights:
    r.seek_name(b"input_rgb_image_sized", within=1024)
    mean_rgb = (r.float(), r.float(), r.float())
    if (r.int(), r.int()) != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError("not a 150x150 input")
    shapes = [(32, 3, 7, 2)]
    channels = 32
    for filters, down in BLOCKS:
        shapes += [(filters, channels, 3, 2 if down else 1), (filters, filters, 3, 1)]
        channels = filters
    convs, affines = [], []
    for out, inp, k, stride in shapes:
        r.seek_name(b"con_4")
        params = r.tensor()
        got = [r.int() for _ in range(7)]  # filters, rows, columns, strides, paddings
        pad = 0 if stride > 1 else k // 2  # dlib's default, the one this network uses
        want = [out, k, k, stride, stride, pad, pad]
        if got != want or params.size != out * inp * k * k + out:
            raise DlibFormatError(f"convolution {len(convs)}: {got}, not {want} of {inp} inputs")
        weight = params[: out * inp * k * k].reshape(out, inp, k, k)
        convs.append(Conv(weight, params[out * inp * k * k :], stride, got[5]))
        r.seek_name(b"affine_")
        params = r.tensor()
        if params.size != 2 * out:
            raise DlibFormatError(f"affine {len(affines)}: {params.size} values")
        affines.append((params[:out], params[out:]))
        if len(convs) == 1:
            _pool(r, b"max_pool_2", [3, 3, 2, 2, 0, 0])
        elif len(convs) % 2 == 1 and BLOCKS[len(convs) // 2 - 1][1]:  # a block's shortcut
            _pool(r, b"avg_pool_2", [2, 2, 2, 2, 0, 0])
    r.seek_name(b"fc_2", within=1 << 16)
    outputs, inputs = r.int(), r.int()
    fc = r.tensor()
    if (outputs, inputs, fc.size) != (128, 256, 128 * 256):
        raise DlibFormatError("not a 256 to 128 linear layer")
    return DlibWeights(mean_rgb, convs, affines, fc.reshape(256, 128))


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum where both tensors have elements, either one where only it
    does (a block that halves the size and doubles the channels meets an average-pooled
    input that is larger by a row and column, or has fewer channels)."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]
    out = a.new_zeros(shape)
    out[:, : a.shape[1], : a.shape[2], : a.shape[3]] += a
    out[:, : b.shape[1], : b.shape[2], : b.shape[3]] += b
    return out


class DescriptorNet(nn.Module):
    """128-d face descriptors of (N, 150, 150, 3) uint8 RGB face chips (dlib.get_face_chip)."""

    def __init__(self, weights: DlibWeights) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(weights.mean_rgb).view(1, 3, 1, 1))
        self.convs = nn.ModuleList()
        for c, (scale, shift) in zip(weights.convs, weights.affines):
            out, inp, k, _ = c.weight.shape
            conv = nn.Conv2d(inp, out, k, c.stride, c.padding)
            with torch.no_grad():  # the affine layer folded in: scale * (w x + b) + shift
                s = torch.from_numpy(scale)
                conv.weight.copy_(torch.from_numpy(c.weight) * s.view(-1, 1, 1, 1))
                conv.bias.copy_(torch.from_numpy(c.bias) * s + torch.from_numpy(shift))
            self.convs.append(conv)
        self.register_buffer("fc", torch.from_numpy(weights.fc))

    @torch.no_grad()
    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips.permute(0, 3, 1, 2).float() - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.convs[0](x)), 3, 2)
        for i, (_, down) in enumerate(BLOCKS):
            y = F.relu(self.convs[1 + 2 * i](x))
            y = self.convs[2 + 2 * i](y)
            x = F.relu(_add(y, F.avg_pool2d(x, 2, 2) if down else x))
        return x.mean(dim=(2, 3)) @ self.fc
