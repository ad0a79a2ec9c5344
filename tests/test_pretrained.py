"""Backbone weights from a file: a backbone state dict, or a whole detector's checkpoint (to
warm-start from a shipped model)."""

import pytest
import torch
from safetensors.torch import save_file

from scanner.model import build_detector
from training.pretrained import load_backbone_weights

from helpers import TINY_CONFIG


def _differs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return any(
        not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())
    )


@pytest.mark.parametrize("whole", [False, True])
def test_backbone_weights_from_a_state_dict_or_a_detector_checkpoint(tmp_path, whole) -> None:
    torch.manual_seed(0)
    trained = build_detector(TINY_CONFIG)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    state = trained.state_dict() if whole else trained.backbone.state_dict()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(path))
    fresh = build_detector(TINY_CONFIG)
    assert _differs(fresh.backbone, trained.backbone)
    origin = load_backbone_weights(fresh.backbone, TINY_CONFIG.backbone, str(path))
    assert origin == "weights from weights.safetensors"
    for k, v in trained.backbone.state_dict().items():  # stored in fp16, loaded into fp32
        torch.testing.assert_close(fresh.backbone.state_dict()[k], v.half().to(v.dtype))
    with pytest.raises(ValueError, match="not found"):
        load_backbone_weights(fresh.backbone, TINY_CONFIG.backbone, str(tmp_path / "none"))
