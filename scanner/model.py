"""The detector of Su et al. 2021: per-frame CNN features -> attention ConvLSTM -> verdict.

Config in, ``nn.Module`` out; no I/O and no training concerns here. Equation numbers refer to
``shared/docs/method.md`` (the paper's §3). The recurrence is a Python loop over a fixed
number of frames, so tracing it (ONNX, CUDA graphs) unrolls it into plain convolutions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture of the detector. Stored in every checkpoint and read back from it."""

    backbone: str = "efficientnet_b5"  # any timm model; the paper uses EfficientNet-B5
    num_frames: int = 15  # fixed sequence length (paper §3.1.1)
    proj_channels: int = 128  # 1x1 conv from backbone channels to the ConvLSTM input
    hidden_channels: int = 128  # ConvLSTM state channels
    attention_channels: int = 64  # width of the attention MLP in eq. (7)
    kernel_size: int = 3  # ConvLSTM convolution kernel
    attention: bool = True  # False: plain ConvLSTM encoder -> decoder (Table 3 baseline)
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        for name in ("proj_channels", "hidden_channels", "attention_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DetectorConfig keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)


class ConvLSTMCell(nn.Module):
    """ConvLSTM of Shi et al. 2015, eqs. (1)-(6).

    The four gate convolutions over the input v_t and over h_{t-1} are computed as one
    convolution over their channel concatenation: W_x * v + W_h * h == W * [v; h].
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(
            in_channels + hidden_channels,
            4 * hidden_channels,
            kernel_size,
            padding=kernel_size // 2,
        )

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, Cin, h, w); state: (h, c) each (B, Ch, h, w). Returns the new (h, c)."""
        h_prev, c_prev = state
        i, f, o, g = self.gates(torch.cat([x, h_prev], dim=1)).chunk(4, dim=1)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)  # (5), (4), (2)
        c = f * c_prev + i * torch.tanh(g)  # (3) with c~ of (6)
        h = o * torch.tanh(c)  # (1)
        return h, c


class SoftAttention(nn.Module):
    """Soft attention over frames, eqs. (7)-(8).

    e_t = W_m tanh(W_va * v_t + W_ha * h_{t-1} + b_a), with W_va, W_ha convolutions, W_m a 1x1
    convolution to one channel, and the resulting map averaged over space to one score per
    frame; alpha = softmax over the frames.
    """

    def __init__(self, in_channels: int, hidden_channels: int, attention_channels: int) -> None:
        super().__init__()
        self.w_v = nn.Conv2d(in_channels, attention_channels, 1)  # carries b_a
        self.w_h = nn.Conv2d(hidden_channels, attention_channels, 1, bias=False)
        self.w_m = nn.Conv2d(attention_channels, 1, 1, bias=False)

    def forward(self, v: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        """v: (B, T, C, h, w) inputs; h_prev: (B, T, Ch, h, w) encoder states h_{t-1}.

        Returns alpha: (B, T), summing to 1 over T.
        """
        b, t = v.shape[:2]
        a = torch.tanh(self.w_v(v.flatten(0, 1)) + self.w_h(h_prev.flatten(0, 1)))
        e = self.w_m(a).mean(dim=(1, 2, 3)).view(b, t)  # (B, T)  eq. (7)
        return torch.softmax(e, dim=1)  # eq. (8)


class Detector(nn.Module):
    """Clip of face crops -> (logits over {pristine, deepfake}, per-frame attention).

    Input: (B, T, 3, H, W) float, normalised with the backbone's mean/std, T = num_frames.
    Output: logits (B, 2) and alpha (B, T). Without attention alpha is uniform 1/T.
    """

    def __init__(self, config: DetectorConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if backbone is None:
            # imported here: scanning through onnxruntime loads only the configs of this module
            # (importing timm, which imports torchvision's models, took 2 s of a scan's start)
            import timm

            # global_pool="" keeps the spatial map (7x7 at 224 for EfficientNets): method.md §2.
            backbone = timm.create_model(
                config.backbone, pretrained=False, num_classes=0, global_pool=""
            )
        self.backbone = backbone
        feat = self.backbone.num_features
        cp, ch = config.proj_channels, config.hidden_channels
        self.proj = nn.Sequential(nn.Conv2d(feat, cp, 1, bias=False), nn.BatchNorm2d(cp), nn.ReLU())
        self.encoder = ConvLSTMCell(cp, ch, config.kernel_size)
        self.attention = (
            SoftAttention(cp, ch, config.attention_channels) if config.attention else None
        )
        # Without attention the decoder reads the encoder's hidden states instead of v.
        self.decoder = ConvLSTMCell(cp if config.attention else ch, ch, config.kernel_size)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(ch, 2)

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> projected per-frame feature maps v: (B, T, Cp, h, w)."""
        b, t = clips.shape[:2]
        x = self.backbone.forward_features(clips.flatten(0, 1))  # (B*T, F, h, w)
        v = self.proj(x)  # (B*T, Cp, h, w)
        # Reshaped by the input's own batch, so a traced graph (ONNX export) keeps B symbolic;
        # unflatten(0, (-1, T)) would bake the traced batch into the head's zero states.
        return v.reshape(b, t, *v.shape[1:])

    def head(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention ConvLSTM over features v: (B, T, Cp, h, w) -> (logits (B, 2), alpha (B, T))."""
        b, t, _, hh, ww = v.shape
        zeros = v.new_zeros(b, self.config.hidden_channels, hh, ww)

        if self.attention is not None:
            state = (zeros, zeros)
            h_prev = []
            for i in range(t):
                h_prev.append(state[0])  # h_{t-1}; h_0 = 0
                state = self.encoder(v[:, i], state)
            alpha = self.attention(v, torch.stack(h_prev, dim=1))  # (B, T)
            # eq. (9) weights the decoder inputs. (The paper's prose also mentions weighting
            # the hidden states; we follow the equation.)
            v = v * alpha.view(b, t, 1, 1, 1)
        else:
            # Table 3 baseline: ConvLSTM encoder feeding the decoder, no attention.
            state = (zeros, zeros)
            outs = []
            for i in range(t):
                state = self.encoder(v[:, i], state)
                outs.append(state[0])
            v = torch.stack(outs, dim=1)
            alpha = v.new_full((b, t), 1.0 / t)

        state = (zeros, zeros)
        pooled = None
        for i in range(t):
            state = self.decoder(v[:, i], state)
            # max pooling over time of the decoder outputs H' (paper §3.3)
            pooled = state[0] if pooled is None else torch.maximum(pooled, state[0])
        z = pooled.mean(dim=(2, 3))  # (B, Ch): spatial average of the time-max map
        return self.fc(self.dropout(z)), alpha

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clips: (B, T, 3, H, W) -> (logits (B, 2), alpha (B, T))."""
        if clips.dim() != 5 or clips.shape[1] != self.config.num_frames:
            raise ValueError(
                f"expected clips of shape (B, {self.config.num_frames}, 3, H, W), "
                f"got {tuple(clips.shape)}"
            )
        return self.head(self.frame_features(clips))


def fake_probability(logits: torch.Tensor) -> torch.Tensor:
    """(B, 2) logits -> (B,) P(deepfake) via softmax (class 1 = deepfake)."""
    return torch.softmax(logits.float(), dim=-1)[:, 1]


def build_detector(config: DetectorConfig, backbone: nn.Module | None = None) -> Detector:
    """The one place a detector is built, for training, scanning and export alike."""
    return Detector(config, backbone=backbone)
