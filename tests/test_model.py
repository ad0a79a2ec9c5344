import pytest
import torch

from scanner.model import DetectorConfig, build_detector, fake_probability

from helpers import TINY_CONFIG


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detector(TINY_CONFIG).eval()


def clips(b: int = 2, t: int = 15, size: int = 64) -> torch.Tensor:
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_forward_shapes_and_attention(model):
    logits, alpha = model(clips(3))
    assert logits.shape == (3, 2)
    assert alpha.shape == (3, 15)
    assert torch.isfinite(logits).all() and torch.isfinite(alpha).all()
    assert torch.allclose(alpha.sum(dim=1), torch.ones(3), atol=1e-5)
    assert (alpha > 0).all()
    p = fake_probability(logits)
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()


def test_batch_items_are_independent(model):
    x = clips(2)
    logits, alpha = model(x)
    logits0, alpha0 = model(x[:1])
    torch.testing.assert_close(logits[:1], logits0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alpha[:1], alpha0, atol=1e-6, rtol=1e-4)


def test_attention_depends_on_frames(model):
    x = clips(1)
    _, a1 = model(x)
    x2 = x.clone()
    x2[:, 3] *= 5.0
    _, a2 = model(x2)
    assert not torch.allclose(a1, a2)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_detector(TINY_CONFIG).train()
    logits, _ = model(clips(2))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.attention.w_m.weight.grad.abs().sum() > 0


def test_without_attention_gives_uniform_weights():
    cfg = DetectorConfig(**{**TINY_CONFIG.to_dict(), "attention": False, "proj_channels": 8})
    model = build_detector(cfg).eval()
    logits, alpha = model(clips(2))
    assert logits.shape == (2, 2)
    assert torch.allclose(alpha, torch.full((2, 15), 1 / 15))
    assert model.attention is None


def test_rejects_wrong_frame_count(model):
    with pytest.raises(ValueError, match="15"):
        model(clips(1, t=10))


def test_config_round_trip_and_validation():
    cfg = DetectorConfig(num_frames=9, hidden_channels=32)
    assert DetectorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown DetectorConfig keys"):
        DetectorConfig.from_dict({**cfg.to_dict(), "hiden": 3})
    with pytest.raises(ValueError):
        DetectorConfig(kernel_size=4)


def test_paper_configuration_full_size():
    """EfficientNet-B5 backbone (28.3 M parameters, 2048 channels) plus the ConvLSTM head."""
    model = build_detector(DetectorConfig())
    backbone = sum(p.numel() for p in model.backbone.parameters())
    head = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone."))
    assert model.backbone.num_features == 2048
    assert 28.0e6 < backbone < 28.7e6
    assert 0.5e6 < head < 3e6
    with torch.no_grad():
        feats = model.frame_features(torch.zeros(1, 15, 3, 224, 224))
    assert feats.shape == (1, 15, 128, 7, 7)
