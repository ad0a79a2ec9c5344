"""Backend selection (make_backend), the ONNX backend against PyTorch, and `scan --backend`."""

import csv
import logging
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from export.pipeline import export_all
from scanner.artifact_writer import TOLERANCE
from scanner.artifacts import ENGINE_FILE, ONNX_FILE, ONNX_FP16_FILE, sidecar_path
from scanner.backends import (
    AUTO_ORDER_CPU,
    BackendUnavailable,
    OnnxBackend,
    TorchBackend,
    make_backend,
)
from scanner.backends.tensorrt import tensorrt_missing
from scanner.checkpoint import CheckpointError, load_checkpoint
from scanner.cli import main
from scanner.contract import Preprocessing, normalise, normalise_lookup, normalise_table

from helpers import make_checkpoint

NO_TENSORRT = tensorrt_missing()
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tiny_checkpoint):
    return export_all(tiny_checkpoint, tmp_path_factory.mktemp("export"), max_batch=4).out_dir


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).integers(0, 256, (2, 15, 224, 224, 3), dtype=np.uint8)


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_checkpoint_runs_on_torch_on_cpu(tiny_checkpoint):
    backend = make_backend(tiny_checkpoint, "torch", "cpu", "auto")
    assert isinstance(backend, TorchBackend)
    assert (backend.name, backend.device) == ("torch", "cpu")


def test_a_cuda_error_on_a_device_that_no_longer_works_is_a_device_failure(
    tiny_checkpoint, crops, monkeypatch
):
    """A sticky CUDA error (an illegal memory access; torch raises it as a RuntimeError or its
    AcceleratorError subclass) fails every later call: the torch and
    TensorRT backends raise DeviceFailure, which stops the scan, when a tiny computation on
    the device fails after it; a device that still works gives the error back (that batch
    failed, the scanner retries video by video)."""
    from scanner.backends import DeviceFailure, base
    from scanner.backends.tensorrt import TensorRTBackend

    torch_backend = TorchBackend(load_checkpoint(tiny_checkpoint), CPU)
    trt_backend = object.__new__(TensorRTBackend)  # TensorRT is not needed to reach the check
    trt_backend.torch_device, trt_backend.contract = CPU, torch_backend.contract

    def illegal_access(*args):  # noqa: ANN002, ANN202
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch_backend, "_run", illegal_access)
    trt_backend.runner = type("Runner", (), {"max_batch": 4, "__call__": illegal_access})()
    for backend in (torch_backend, trt_backend):
        monkeypatch.setattr(base, "device_works", lambda device: False)
        with pytest.raises(DeviceFailure, match="stopped working: CUDA error: an illegal"):
            backend(crops)
        monkeypatch.setattr(base, "device_works", lambda device: True)
        with pytest.raises(RuntimeError, match="illegal memory access"):
            backend(crops)


def test_device_works_on_the_cpu():
    from scanner.backends.base import device_works

    assert device_works(CPU)


def test_auto_on_the_cpu_runs_a_checkpoint_as_its_onnx_graph_exported_once(
    tmp_path, monkeypatch, crops
):
    """A checkpoint without an ONNX file beside it: ``auto`` exports its fp32 graph into the
    user cache under the checkpoint's sha256 and the graph's version (checked against PyTorch,
    with its sidecar), runs it through onnxruntime with the contract and label read from it,
    and reuses it."""
    from scanner import onnx_writer
    from scanner.files import file_sha256

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = make_checkpoint(tmp_path / "w.safetensors", seed=3)
    backend = make_backend(weights, "auto", CPU, "auto")
    assert isinstance(backend, OnnxBackend) and backend.precision == "fp32"
    key = f"{file_sha256(weights)}-g{onnx_writer.GRAPH_VERSION}"
    path = tmp_path / "cache" / "dfscan" / "onnx" / key / ONNX_FILE
    assert path.is_file() and sidecar_path(path).is_file()
    assert backend.info.parity["max_abs_probabilities"] <= TOLERANCE["fp32"]
    reference = make_backend(weights, "torch", CPU, "auto")
    assert backend.contract == reference.contract and backend.threshold == reference.threshold
    assert backend.model_label == reference.model_label
    p, a = backend(crops)
    q, b = reference(crops)
    assert np.abs(p - q).max() < TOLERANCE["fp32"] and np.abs(a - b).max() < TOLERANCE["fp32"]
    # Found again, not exported again; other weights, another graph.
    stamp = path.stat().st_mtime_ns
    monkeypatch.setattr(onnx_writer, "export_onnx", lambda *a: pytest.fail("exported again"))
    assert make_backend(weights, "auto", CPU, "auto").name == "onnx"
    assert path.stat().st_mtime_ns == stamp
    assert list((tmp_path / "cache" / "dfscan" / "onnx").iterdir()) == [path.parent]
    # A cached graph that no longer matches its sidecar is exported again, not an error.
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    again = make_backend(weights, "auto", CPU, "auto")
    assert again.name == "onnx" and again.info.sha256 == backend.info.sha256
    sidecar_path(path).unlink()
    assert make_backend(weights, "auto", CPU, "auto").name == "onnx"


def test_auto_on_the_cpu_falls_back_to_torch_when_the_export_fails(tmp_path, monkeypatch):
    from scanner import onnx_writer

    def fail(checkpoint, path):  # noqa: ANN001, ANN202
        raise onnx_writer.ExportError("no exporter")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_writer, "export_onnx", fail)
    weights = make_checkpoint(tmp_path / "w.safetensors", seed=4)
    backend = make_backend(weights, "auto", CPU, "auto")
    assert backend.name == "torch"
    assert not any((tmp_path / "cache" / "dfscan" / "onnx").iterdir())  # nothing half-written


def test_auto_runs_an_export_dir_on_onnx_on_the_cpu(export_dir, tiny_checkpoint):
    assert AUTO_ORDER_CPU[0] == "onnx"  # the order auto tries on the CPU (onnx measured faster)
    backend = make_backend(export_dir, "auto", CPU, "auto")
    assert isinstance(backend, OnnxBackend)
    assert (backend.name, backend.device, backend.precision) == ("onnx", "cpu", "fp32")
    assert backend.model_label == load_checkpoint(tiny_checkpoint).label
    single = make_backend(export_dir / ONNX_FILE, "auto", CPU, "auto")
    assert single.name == "onnx"


def test_onnx_and_torch_backends_agree(export_dir, crops):
    onnx_backend = make_backend(export_dir, "onnx", CPU, "fp32")
    torch_backend = make_backend(export_dir, "torch", CPU, "auto")  # the copied checkpoint
    assert torch_backend.name == "torch"
    assert onnx_backend.contract == torch_backend.contract
    assert onnx_backend.threshold == torch_backend.threshold
    assert onnx_backend.model_label == torch_backend.model_label
    p, a = onnx_backend(crops)
    q, b = torch_backend(crops)
    assert p.dtype == a.dtype == np.float64 and p.shape == (2,) and a.shape == (2, 15)
    assert np.abs(p - q).max() < TOLERANCE["fp32"]
    assert np.abs(a - b).max() < TOLERANCE["fp32"]


def test_unavailable_backends_are_clear_errors(export_dir, tiny_checkpoint, tmp_path):
    with pytest.raises(BackendUnavailable, match="dfscan export"):
        make_backend(tiny_checkpoint, "onnx", CPU, "auto")
    with pytest.raises(BackendUnavailable, match="checkpoint"):
        make_backend(export_dir / ONNX_FILE, "torch", CPU, "auto")
    with pytest.raises(ValueError, match="CUDA"):
        make_backend(export_dir, "onnx", CPU, "fp16")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="dfscan export"):
        make_backend(tmp_path / "empty", "auto", CPU, "auto")


@pytest.mark.skipif(NO_TENSORRT is None, reason="TensorRT and a GPU are present")
def test_tensorrt_without_tensorrt_says_what_to_install(export_dir):
    with pytest.raises(BackendUnavailable, match=r'pip install "dfscan\[gpu\]"'):
        make_backend(export_dir, "tensorrt", CPU, "auto")


def test_damaged_artifact_is_not_skipped_by_auto(export_dir, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in (ONNX_FILE, ONNX_FILE + ".json", "model.safetensors"):
        (damaged / name).write_bytes((export_dir / name).read_bytes())
    data = bytearray((damaged / ONNX_FILE).read_bytes())
    data[-100] ^= 0x01
    (damaged / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="modified after export"):
        make_backend(damaged, "auto", CPU, "auto")


def test_auto_passes_over_files_that_failed_their_check_at_export(
    export_dir, tmp_path, monkeypatch, caplog
):
    """Export keeps a file that failed its check without a sidecar. On CUDA, auto takes the
    verified model.onnx beside an unverified model.engine and model.fp16.onnx, with a
    warning for each; a backend or precision only an unverified file could serve is an error
    that says why; a folder of unverified files only is no model."""
    from scanner.backends import select

    class Opened:
        name, device = "stand-in", "cuda"

        def __init__(self, path, device):
            self.path = path

    folder = tmp_path / "export"
    folder.mkdir()
    for name in (ONNX_FILE, ONNX_FILE + ".json", "model.safetensors"):
        (folder / name).write_bytes((export_dir / name).read_bytes())
    for name in (ONNX_FP16_FILE, ENGINE_FILE):
        (folder / name).write_bytes(b"failed its check")
    monkeypatch.setattr(select, "tensorrt_missing", lambda: None)
    monkeypatch.setattr(select, "TensorRTBackend", Opened)
    monkeypatch.setattr(select, "OnnxBackend", Opened)
    gpu = torch.device("cuda")
    with caplog.at_level(logging.WARNING, logger="scanner.artifacts"):
        assert make_backend(folder, "auto", gpu, "auto").path == folder / ONNX_FILE
    for name in (ONNX_FP16_FILE, ENGINE_FILE):
        assert f"{name} has no sidecar" in caplog.text
    assert make_backend(folder, "onnx", gpu, "auto").path == folder / ONNX_FILE
    for backend, precision in (("onnx", "fp16"), ("tensorrt", "auto")):
        with pytest.raises(BackendUnavailable, match="has no sidecar .* did not pass its check"):
            make_backend(folder, backend, gpu, precision)
    for name in (ONNX_FILE + ".json", "model.safetensors"):
        (folder / name).unlink()
    with pytest.raises(CheckpointError, match="no usable model"):
        make_backend(folder, "auto", gpu, "auto")


def test_scan_through_onnx_matches_torch(export_dir, tiny_checkpoint, face_clip, tmp_path):
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.csv"
        args = ["scan", str(face_clip), "--weights", str(export_dir), "--out", str(out)]
        res = CliRunner().invoke(main, [*args, "--backend", backend, "--no-progress"])
        assert res.exit_code == 0, res.output
        (rows[backend],) = rows_of(out)
    assert rows["onnx"]["backend"] == "onnx" and rows["torch"]["backend"] == "torch"
    assert rows["onnx"]["device"] == rows["torch"]["device"] == "cpu"
    assert rows["onnx"]["model"] == rows["torch"]["model"] == load_checkpoint(tiny_checkpoint).label
    assert rows["onnx"]["status"] == rows["torch"]["status"] == "ok"
    diff = abs(float(rows["onnx"]["score"]) - float(rows["torch"]["score"]))
    assert diff < TOLERANCE["fp32"]
    assert rows["onnx"]["label"] == rows["torch"]["label"]


def test_scan_with_an_unusable_backend_exits_1(export_dir, face_clip, tmp_path):
    args = ["scan", str(face_clip), "--weights", str(export_dir), "--out", str(tmp_path / "r.csv")]
    res = CliRunner().invoke(main, [*args, "--backend", "tensorrt"])
    assert res.exit_code == 1
    if NO_TENSORRT is not None:
        assert 'pip install "dfscan[gpu]"' in res.output
    alone = tmp_path / "alone.onnx"
    alone.write_bytes((export_dir / ONNX_FILE).read_bytes())
    assert not sidecar_path(alone).exists()
    args = ["scan", str(face_clip), "--weights", str(alone), "--out", str(tmp_path / "s.csv")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "no sidecar" in res.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_match_eager(tiny_checkpoint):
    dev = torch.device("cuda")
    graphs = TorchBackend(load_checkpoint(tiny_checkpoint), dev)
    eager = TorchBackend(load_checkpoint(tiny_checkpoint), dev, cuda_graphs=False)
    assert graphs.half and graphs.use_graphs and not eager.use_graphs
    rng = np.random.default_rng(1)
    for batch in (3, 4, 1, 3):  # 3 is captured as 4 and padded; 1 gets its own graph
        crops = rng.integers(0, 256, (batch, 15, 224, 224, 3), dtype=np.uint8)
        p, a = graphs(crops)
        q, b = eager(crops)
        assert p.shape == (batch,) and a.shape == (batch, 15)
        assert np.abs(p - q).max() < 1e-2 and np.abs(a - b).max() < 1e-2
    assert graphs.use_graphs and sorted(graphs._graphs) == [1, 4]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_onnx_on_a_gpu_provider(export_dir, crops):
    import onnxruntime as ort

    gpu = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
    if not gpu & set(ort.get_available_providers()):
        pytest.skip("onnxruntime has no GPU provider here (needs onnxruntime-gpu)")
    backend = make_backend(export_dir, "onnx", "cuda", "fp32")
    assert backend.device.startswith("cuda") and "ExecutionProvider" in backend.device
    p, _ = backend(crops)
    q, _ = make_backend(export_dir, "torch", CPU, "auto")(crops)
    assert np.abs(p - q).max() < TOLERANCE["fp32"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["default", "paper"])
def test_fp16_cuda_graphs_match_cpu_fp32(model, face_clip, tmp_path):
    """fp16 parity on the GPU: the CUDA torch backend (fp16, channels_last, CUDA graphs) on the
    shipped model and on the paper configuration (B5, random init) against fp32 on the CPU."""
    from export.pipeline import face_crops
    from scanner.model import DetectorConfig
    from scanner.models import default_weights

    from helpers import make_checkpoint

    if model == "default":
        weights = default_weights()
        if weights is None:
            pytest.skip("no default model in this build")
    else:
        weights = make_checkpoint(tmp_path / "paper.safetensors", DetectorConfig())
    cpu = TorchBackend.from_path(weights, CPU)
    gpu = TorchBackend.from_path(weights, torch.device("cuda"))
    assert gpu.half and gpu.use_graphs
    face = face_crops(face_clip, cpu.contract)
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (3, *face.shape), dtype=np.uint8)
    for clips in (face[None], noise, np.concatenate([face[None], noise])):
        p, a = gpu(clips)
        q, b = cpu(clips)
        assert np.abs(p - q).max() <= TOLERANCE["fp16"]
        assert np.abs(a - b).max() <= TOLERANCE["fp16"]
    assert gpu.use_graphs and sorted(gpu._graphs) == [1, 4]  # batch 3 padded into 4


def test_the_onnx_backends_lookup_normalises_as_the_contract_does():
    """Every 8-bit value of every channel: the lookup gives ``normalise``'s float32 bits."""
    contract = Preprocessing.for_backbone("tf_efficientnet_lite0")
    crops = np.random.default_rng(0).integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    crops[0, 0, :, :, :] = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    want = normalise(torch.from_numpy(crops), contract).numpy()
    got = normalise_lookup(crops, normalise_table(contract))
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_a_graph_onnxruntime_cannot_run_here_is_unavailable_not_a_traceback(
    export_dir, monkeypatch
):
    """An operator the provider lacks (an fp16 graph on the CPU) or a provider failing to
    build: the backend is unavailable here (auto moves on), not an onnxruntime traceback."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    import scanner.backends.onnx as onnx_backend

    def lacks(path, providers):
        raise ort_state.NotImplemented("Could not find an implementation for Conv(11)")

    monkeypatch.setattr(onnx_backend, "onnx_session", lacks)
    with pytest.raises(BackendUnavailable, match="NotImplemented: Could not find"):
        make_backend(export_dir / ONNX_FILE, "onnx", CPU, "auto")


def test_each_export_keeps_its_tensorrt_engines_in_its_own_folder(
    export_dir, tmp_path, monkeypatch
):
    """onnxruntime keys a cached TensorRT engine by the graph's names, not its weights: two
    exports (same names, other weights) must not share one cache folder."""
    import types

    from scanner.artifacts import verify_artifact
    from scanner.backends.onnx import OnnxBackend

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ort = types.SimpleNamespace(
        get_available_providers=lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"],
        __version__="test",
    )
    info = verify_artifact(export_dir / ONNX_FILE, "onnx")
    paths = []
    for sha in ("a" * 64, "b" * 64):
        backend = OnnxBackend.__new__(OnnxBackend)
        backend.info, backend.precision = info.__class__(**{**vars(info), "sha256": sha}), "fp32"
        (name, options), *_ = backend._providers(ort, torch.device("cuda", 0))
        assert name == "TensorrtExecutionProvider" and options["trt_engine_cache_enable"]
        paths.append(options["trt_engine_cache_path"])
    assert paths[0] != paths[1] and all(p.startswith(str(tmp_path)) for p in paths)


def test_scanning_through_onnxruntime_does_without_timm(tiny_checkpoint, tmp_path):
    """timm (and torchvision's models with it) is imported only to build or export a model:
    a scan whose graph is cached already starts without it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from scanner.onnx_writer import cached_onnx\n"
        "graph = cached_onnx(Path(sys.argv[1]))\n"  # exports: imports timm here
        "assert 'timm' in sys.modules\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code, str(tiny_checkpoint)], check=True, env=env)
    code = (
        "import sys\n"
        "from scanner.api import load_backend\n"
        "backend = load_backend(sys.argv[1], 'auto', 'cpu')\n"
        "assert backend.name == 'onnx', backend.name\n"
        "assert 'timm' not in sys.modules, 'timm imported'\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tiny_checkpoint)], check=True, env=env)
