import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from scanner.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    tensors_sha256,
)
from scanner.contract import Preprocessing
from scanner.model import DetectorConfig, build_detector

from helpers import TINY_CONFIG, make_checkpoint


def test_round_trip_gives_same_outputs_and_metadata(tmp_path):
    path = make_checkpoint(tmp_path / "m.safetensors")
    torch.manual_seed(0)
    original = build_detector(TINY_CONFIG).eval()
    loaded = load_checkpoint(path)
    x = torch.randn(2, 15, 3, 64, 64)
    with torch.no_grad():
        a, b = original(x), loaded.model(x)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    meta = loaded.meta
    assert meta.model == TINY_CONFIG
    assert meta.preprocessing == Preprocessing.for_backbone("test_efficientnet")
    assert meta.preprocessing.crop_size == 224 and meta.preprocessing.margin == 0.3
    assert meta.threshold == 0.5
    assert read_meta(path) == meta
    assert len(loaded.file_sha256) == 64 and loaded.label.startswith("test-test_efficientnet@")


def test_half_precision_file_is_smaller_and_close(tmp_path):
    torch.manual_seed(0)
    model = build_detector(TINY_CONFIG).eval()
    meta = CheckpointMeta("m", TINY_CONFIG, Preprocessing.for_backbone("test_efficientnet"))
    save_checkpoint(tmp_path / "full.safetensors", model, meta)
    save_checkpoint(tmp_path / "half.safetensors", model, meta, half=True)
    full, half = (tmp_path / "full.safetensors").stat().st_size, (tmp_path / "half.safetensors")
    assert half.stat().st_size < 0.7 * full
    loaded = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    x = torch.randn(1, 15, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], loaded.model(x)[0], atol=1e-2, rtol=1e-2)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path):
    path = make_checkpoint(tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_tampered_weights_are_rejected(tmp_path):
    path = make_checkpoint(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # a byte inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_pickle_is_never_loaded(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle ran')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_plain_safetensors_without_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="without dfscan metadata"):
        load_checkpoint(path)


def test_architecture_mismatch(tmp_path):
    """Weights of one architecture under the header of another (digest intact)."""
    torch.manual_seed(0)
    small = build_detector(TINY_CONFIG)
    bigger = DetectorConfig(**{**TINY_CONFIG.to_dict(), "hidden_channels": 24})
    meta = CheckpointMeta("m", bigger, Preprocessing.for_backbone("test_efficientnet"))
    tensors = {k: v.contiguous() for k, v in small.state_dict().items()}
    header = meta.to_dict() | {"weights_sha256": tensors_sha256(tensors)}
    path = tmp_path / "mismatch.safetensors"
    save_file(tensors, str(path), metadata={"dfscan": json.dumps(header)})
    with pytest.raises(CheckpointError, match="does not match its architecture"):
        load_checkpoint(path)


def test_meta_validation():
    pre = Preprocessing.for_backbone("test_efficientnet")
    with pytest.raises(ValueError, match="num_frames"):
        CheckpointMeta("m", DetectorConfig(num_frames=8), pre)
    with pytest.raises(ValueError, match="threshold"):
        CheckpointMeta("m", TINY_CONFIG, pre, threshold=1.5)
    with pytest.raises(ValueError, match="unknown Preprocessing keys"):
        Preprocessing.from_dict({**pre.to_dict(), "crop": 1})


@pytest.mark.parametrize("header", ["[]", "null", '"a"', "3"])
def test_a_header_that_is_not_an_object_is_a_checkpoint_error(tmp_path, header):
    path = tmp_path / "odd.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"dfscan": header})
    with pytest.raises(CheckpointError, match="not an object"):
        load_checkpoint(path)


def test_a_contract_holds_whole_numbers_a_scan_can_hold_and_finite_normalisation():
    """A header's crop size of 260.5 or 10**7, 15.0 frames or an infinite std would fail (or
    run out of memory, or give every video one score) only once videos are scanned."""
    pre = Preprocessing.for_backbone("test_efficientnet").to_dict()
    for key, bad in [
        ("crop_size", 260.5),
        ("crop_size", 10**7),
        ("crop_size", True),
        ("num_frames", 15.0),
        ("num_frames", 0),
        ("detect_max_side", 32),
        ("std", [float("inf"), 0.5, 0.5]),
        ("mean", [float("nan"), 0.5, 0.5]),
    ]:
        with pytest.raises(ValueError, match=key):
            Preprocessing.from_dict({**pre, key: bad})
    assert Preprocessing.from_dict({**pre, "crop_size": np.int64(260)}).crop_size == 260


def test_the_digest_is_of_the_bytes_the_weights_came_from(tmp_path, monkeypatch):
    """A checkpoint replaced while it loads: the label's sha256 is the file that was read,
    not the one that replaced it (one read serves the metadata, tensors and digest)."""
    import hashlib

    import scanner.checkpoint as checkpoint

    path = make_checkpoint(tmp_path / "m.safetensors")
    first = hashlib.sha256(path.read_bytes()).hexdigest()
    other = make_checkpoint(tmp_path / "other.safetensors", seed=1)
    load = checkpoint.safetensors_load

    def load_then_replace(data):
        other.replace(path)  # another model lands at the path mid-load
        return load(data)

    monkeypatch.setattr(checkpoint, "safetensors_load", load_then_replace)
    loaded = load_checkpoint(path)
    assert loaded.file_sha256 == first != hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_safetensors_header_longer_than_the_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("metadata", ['"text"', "[1, 2]"])
def test_safetensors_metadata_that_is_not_an_object_is_a_checkpoint_error(tmp_path, metadata):
    header = f'{{"__metadata__": {metadata}}}'.encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
