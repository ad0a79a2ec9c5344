"""Export to ONNX (fp32, fp16) and TensorRT: files, metadata, parity, integrity, the CLI."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from export.pipeline import export_all, face_crops
from scanner.artifact_writer import TOLERANCE, ExportError, RuntimeUnavailable
from scanner.artifacts import (
    ENGINE_FILE,
    INPUT_NAME,
    ONNX_FILE,
    ONNX_FP16_FILE,
    OPSET,
    OUTPUT_NAMES,
    ArtifactError,
    sidecar_path,
)
from scanner.backends import OnnxBackend
from scanner.backends.tensorrt import tensorrt_missing
from scanner.checkpoint import load_checkpoint
from scanner.cli import main
from scanner.contract import normalise
from scanner.files import file_sha256
from scanner.model import build_detector
from scanner.onnx_writer import trace_onnx, verify_onnx
from scanner.parity import ParityCase, parity_cases

from helpers import TINY_CONFIG, fake_engine_build

NO_TENSORRT = tensorrt_missing()


@pytest.fixture(scope="module")
def face_track(face_clip, tiny_checkpoint):
    """The tiny model's face clip of face_clip: (T, S, S, 3) uint8."""
    return face_crops(face_clip, load_checkpoint(tiny_checkpoint).meta.preprocessing)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_checkpoint, face_track):
    out = tmp_path_factory.mktemp("export dir")
    return export_all(tiny_checkpoint, out, fp16=True, max_batch=4, face=face_track)


def test_export_writes_verified_fp32_and_fp16_onnx(exported, tiny_checkpoint):
    out = exported.out_dir
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            ONNX_FILE,
            ONNX_FILE + ".json",
            ONNX_FP16_FILE,
            ONNX_FP16_FILE + ".json",
            "model.safetensors",
        ]
    )
    assert file_sha256(out / "model.safetensors") == file_sha256(tiny_checkpoint)
    for a in exported.artifacts:
        parity = a.info.parity
        assert parity["tolerance"] == TOLERANCE[a.info.precision]
        assert {c["name"] for c in parity["cases"]} == {"random", "face"}
        assert 0 <= parity["max_abs_probabilities"] <= parity["tolerance"]
        assert 0 <= parity["max_abs_attention"] <= parity["tolerance"]
        assert a.info.opset == OPSET
    assert TOLERANCE == {"fp32": 1e-4, "fp16": 2e-2}


def test_graph_interface_and_fp16_weights(exported):
    fp32 = onnx.load(str(exported.out_dir / ONNX_FILE))
    fp16 = onnx.load(str(exported.out_dir / ONNX_FP16_FILE))
    for model in (fp32, fp16):
        assert [i.name for i in model.graph.input] == [INPUT_NAME]
        assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [15, 3, 224, 224]
        # fp32 inputs and outputs whatever the precision inside (keep_io_types)
        assert {
            v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]
        } == {onnx.TensorProto.FLOAT}
        assert model.opset_import[0].version == OPSET
    weight_types = {t.data_type for t in fp16.graph.initializer if len(t.dims) == 4}
    assert weight_types == {onnx.TensorProto.FLOAT16}


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_matches_pytorch_at_any_batch(exported, tiny_checkpoint, batch):
    """The trace used batch 2; other batches must run and agree (the batch axis is dynamic)."""
    ckpt = load_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(batch)
    crops = rng.integers(0, 256, (batch, 15, 224, 224, 3), dtype=np.uint8)
    clips = normalise(torch.from_numpy(crops), ckpt.meta.preprocessing)
    with torch.inference_mode():
        logits, alpha = ckpt.model(clips)
    session = ort.InferenceSession(
        str(exported.out_dir / ONNX_FILE), providers=["CPUExecutionProvider"]
    )
    probs, attention = session.run(None, {INPUT_NAME: clips.numpy()})
    assert probs.shape == (batch, 2) and attention.shape == (batch, 15)
    assert np.abs(probs - torch.softmax(logits, -1).numpy()).max() < 1e-4
    assert np.abs(attention - alpha.numpy()).max() < 1e-4
    assert np.allclose(attention.sum(1), 1.0, atol=1e-5)


def test_metadata_round_trip(exported, tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    for name in (ONNX_FILE, ONNX_FP16_FILE):
        path = exported.out_dir / name
        backend = OnnxBackend(path, torch.device("cpu"))
        assert backend.contract == ckpt.meta.preprocessing
        assert backend.threshold == ckpt.meta.threshold
        assert backend.meta == ckpt.meta
        assert backend.source_sha256 == ckpt.file_sha256 == file_sha256(tiny_checkpoint)
        assert backend.model_label == ckpt.label
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(props["dfscan"])["checkpoint"] == ckpt.meta.to_dict()
        assert props["dfscan.source_sha256"] == ckpt.file_sha256
        assert float(props["dfscan.threshold"]) == ckpt.meta.threshold
        sidecar = json.loads(sidecar_path(path).read_text())
        assert sidecar["sha256"] == file_sha256(path)
        assert sidecar["source_sha256"] == ckpt.file_sha256
        assert sidecar["checkpoint"] == ckpt.meta.to_dict()
        assert sidecar["precision"] == ("fp16" if "fp16" in name else "fp32")


def test_tampered_and_truncated_onnx_are_rejected(exported, tmp_path):
    source = exported.out_dir / ONNX_FILE
    data = bytearray(source.read_bytes())
    sidecar = sidecar_path(source).read_text()

    flipped = tmp_path / "flipped" / ONNX_FILE
    flipped.parent.mkdir()
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    sidecar_path(flipped).write_text(sidecar)
    with pytest.raises(ArtifactError, match="modified after export"):
        OnnxBackend(flipped, torch.device("cpu"))

    truncated = tmp_path / "truncated" / ONNX_FILE
    truncated.parent.mkdir()
    truncated.write_bytes(source.read_bytes()[: len(data) // 2])
    sidecar_path(truncated).write_text(sidecar)
    with pytest.raises(ArtifactError, match="truncated"):
        OnnxBackend(truncated, torch.device("cpu"))

    alone = tmp_path / "alone" / ONNX_FILE
    alone.parent.mkdir()
    alone.write_bytes(source.read_bytes())
    with pytest.raises(ArtifactError, match="no sidecar"):
        OnnxBackend(alone, torch.device("cpu"))

    for odd in ("[]", json.dumps({**json.loads(sidecar), "checkpoint": []})):
        sidecar_path(alone).write_text(odd)  # JSON, but not the sidecar's objects
        with pytest.raises(ArtifactError, match="cannot read sidecar"):
            OnnxBackend(alone, torch.device("cpu"))


def test_parity_failure_fails_the_export(exported, tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    (case,) = parity_cases(ckpt.model, ckpt.meta.preprocessing, None, batch=1)
    off = ParityCase(case.name, case.clips, case.probabilities + 1e-3, case.attention)
    path = exported.out_dir / ONNX_FILE
    assert verify_onnx(path, (case,), TOLERANCE["fp32"]).passed
    with pytest.raises(ExportError, match="does not match PyTorch"):
        verify_onnx(path, (off,), TOLERANCE["fp32"])


def test_exporting_again_into_a_folder_leaves_no_artifact_of_the_earlier_export(
    tiny_checkpoint, face_track, tmp_path
):
    """A folder scanned with --weights loads whatever artifacts it holds: the files of the
    format written that this export does not write (model.fp16.onnx without --fp16) must not
    stay beside the new ones."""
    export_all(tiny_checkpoint, tmp_path, fp16=True, max_batch=2, face=face_track)
    assert sidecar_path(tmp_path / ONNX_FP16_FILE).is_file()
    result = export_all(tiny_checkpoint, tmp_path, fp16=False, max_batch=2, face=face_track)
    assert [a.path.name for a in result.artifacts] == [ONNX_FILE]
    assert not (tmp_path / ONNX_FP16_FILE).exists()
    assert not sidecar_path(tmp_path / ONNX_FP16_FILE).exists()
    assert sidecar_path(tmp_path / ONNX_FILE).is_file()


def test_an_engine_export_keeps_the_verified_onnx_of_the_same_checkpoint(
    tiny_checkpoint, face_track, tmp_path, monkeypatch
):
    """`dfscan export --format engine` into a folder of verified ONNX files adds the engine
    beside them; an engine of another checkpoint takes the ONNX files of the first with it
    (they would be scanned beside the new checkpoint)."""
    from helpers import make_checkpoint

    fake_engine_build(monkeypatch)
    export_all(tiny_checkpoint, tmp_path, fp16=True, max_batch=2, face=face_track)
    onnx_files = [
        tmp_path / n for name in (ONNX_FILE, ONNX_FP16_FILE) for n in (name, name + ".json")
    ]
    before = {p: p.read_bytes() for p in onnx_files}
    cpu = torch.device("cpu")
    result = export_all(tiny_checkpoint, tmp_path, formats="engine", max_batch=2, device=cpu)
    assert [a.path.name for a in result.artifacts] == [ENGINE_FILE]
    assert {p: p.read_bytes() for p in onnx_files} == before
    assert sidecar_path(tmp_path / ENGINE_FILE).is_file()
    for name in (ONNX_FILE, ONNX_FP16_FILE):
        OnnxBackend(tmp_path / name, cpu)  # still loads: checked against its sidecar

    other = make_checkpoint(tmp_path.parent / f"{tmp_path.name}-other.safetensors", seed=5)
    result = export_all(other, tmp_path, formats="engine", max_batch=2, device=cpu)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [ENGINE_FILE, ENGINE_FILE + ".json", "model.safetensors"]
    )
    assert result.artifacts[0].info.source_sha256 == file_sha256(other)


def test_export_cli_end_to_end(tiny_checkpoint, face_track, tmp_path, monkeypatch):
    # The CLI checks parity on the bundled sample's face track; MTCNN on it takes ~10 s on two
    # cores, so hand it the fixture's face track instead (same function, same shape).
    monkeypatch.setattr("export.cli.sample_face_crops", lambda contract: face_track)
    out = tmp_path / "with spaces" / "export"
    args = ["export", "--weights", str(tiny_checkpoint), "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--format", "onnx", "--fp16"])
    assert res.exit_code == 0, res.output
    for name in (ONNX_FILE, ONNX_FP16_FILE):
        assert (out / name).is_file() and sidecar_path(out / name).is_file()
        assert str(out / name) in res.output and "tolerance" in res.output
        parity = json.loads(sidecar_path(out / name).read_text())["parity"]
        assert [c["name"] for c in parity["cases"]] == ["random", "face"]
    assert (out / "model.safetensors").is_file()
    assert not (out / ENGINE_FILE).exists()


def test_an_artifact_no_runtime_here_can_check_fails_without_a_sidecar(
    tiny_checkpoint, face_track, tmp_path, monkeypatch
):
    """An fp16 graph that onnxruntime cannot run here: exit 1, and no sidecar vouches for it."""
    from export import pipeline

    def verify(path, cases, tolerance):
        if path.name == ONNX_FP16_FILE:
            raise RuntimeUnavailable(f"onnxruntime cannot run {path.name} on the CPU (stand-in)")
        return verify_onnx(path, cases, tolerance)

    monkeypatch.setattr("export.cli.sample_face_crops", lambda contract: face_track)
    monkeypatch.setattr(pipeline, "verify_onnx", verify)
    out = tmp_path / "export"
    args = ["export", "--weights", str(tiny_checkpoint), "--out", str(out), "--fp16"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "cannot run model.fp16.onnx" in res.output
    assert (out / ONNX_FP16_FILE).is_file() and not sidecar_path(out / ONNX_FP16_FILE).exists()
    assert sidecar_path(out / ONNX_FILE).is_file()  # the fp32 file was checked before it
    with pytest.raises(ArtifactError, match="no sidecar"):
        OnnxBackend(out / ONNX_FP16_FILE, torch.device("cpu"))


def test_a_file_that_cannot_be_read_is_named_not_the_output_folder(
    tiny_checkpoint, tmp_path, monkeypatch
):
    """An OSError of the sample clip (or any file but the output) says which file failed."""

    def unreadable(contract):  # noqa: ANN001, ANN202
        raise PermissionError(13, "Permission denied", "/srv/samples/real.mp4")

    monkeypatch.setattr("export.cli.sample_face_crops", unreadable)
    out = tmp_path / "export"
    res = CliRunner().invoke(main, ["export", "--weights", str(tiny_checkpoint), "--out", str(out)])
    assert res.exit_code == 1
    assert "export failed at /srv/samples/real.mp4: Permission denied" in res.output
    assert f"cannot write to {out}" not in res.output


@pytest.mark.skipif(NO_TENSORRT is None, reason="TensorRT and a GPU are present")
def test_export_engine_without_tensorrt_says_what_to_install(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main, ["export", "--weights", str(tiny_checkpoint), "--out", str(out), "--format", "engine"]
    )
    assert res.exit_code == 1
    assert 'pip install "dfscan[gpu]"' in res.output
    assert not out.exists()  # failed before doing any work


def test_export_without_any_weights_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setattr("scanner.models.default_weights", lambda: None)
    res = CliRunner().invoke(main, ["export", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--weights" in res.output


def test_export_of_the_default_model(tmp_path):
    from scanner.models import default_weights

    weights = default_weights()
    if weights is None:
        pytest.skip("no default model in this build yet (scanner/models/default.safetensors)")
    result = export_all(weights, tmp_path, max_batch=3)
    (onnx_artifact,) = result.artifacts
    assert onnx_artifact.info.parity["max_abs_probabilities"] <= TOLERANCE["fp32"]
    backend = OnnxBackend(onnx_artifact.path, torch.device("cpu"))
    assert backend.source_sha256 == file_sha256(weights)


@pytest.mark.gpu
@pytest.mark.skipif(NO_TENSORRT is not None, reason=str(NO_TENSORRT))
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_engine_export_and_backend(tiny_checkpoint, face_track, tmp_path, fp16):
    from scanner.backends import TensorRTBackend, TorchBackend

    result = export_all(tiny_checkpoint, tmp_path, formats="engine", fp16=fp16, face=face_track)
    (engine,) = result.artifacts
    assert engine.path.name == ENGINE_FILE and not (tmp_path / ONNX_FILE).exists()
    info = engine.info
    assert info.precision == ("fp16" if fp16 else "fp32")
    assert {"version", "gpu", "compute_capability", "profile"} <= set(info.tensorrt)
    assert info.tensorrt["profile"] == {"min": 1, "opt": 8, "max": 16}
    assert info.tensorrt["network"] == "strongly typed"
    assert info.tensorrt["built_from"] == (ONNX_FP16_FILE if fp16 else ONNX_FILE)
    assert not (tmp_path / ONNX_FP16_FILE).exists()
    backend = TensorRTBackend(engine.path, torch.device("cuda"))
    reference = TorchBackend.from_path(tiny_checkpoint, torch.device("cpu"))
    crops = np.stack([face_track] * 3)
    p, a = backend(crops)
    q, b = reference(crops)
    tol = TOLERANCE[info.precision]
    assert np.abs(p - q).max() <= tol and np.abs(a - b).max() <= tol

    data = bytearray(engine.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="modified after export"):
        TensorRTBackend(engine.path, torch.device("cuda"))


class _FakeTensorRT:
    """The slice of the tensorrt module build_engine touches, recording what it is asked."""

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 1

    class BuilderFlag:
        TF32 = 7

    def __init__(self, version):
        self.__version__ = version
        self.calls = calls = {}

        class Config:
            def add_optimization_profile(self, profile):
                calls["profile"] = profile.shapes

            def clear_flag(self, flag):
                calls.setdefault("cleared", []).append(flag)

        class Profile:
            def set_shape(self, name, low, opt, high):
                self.shapes = (name, low, opt, high)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                calls["network_flags"] = flags
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"serialized engine"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                assert network == "network"

            def parse_from_file(self, path):
                calls["parsed"] = path
                return True

        self.Builder = Builder
        self.OnnxParser = OnnxParser


@pytest.mark.parametrize(
    "version, precision, flags",
    [("10.13.3", "fp16", 1 << 1), ("10.13.3", "fp32", 1 << 1), ("11.4.0", "fp16", 0)],
)
def test_engine_build_is_strongly_typed_on_tensorrt_10_and_11(
    version, precision, flags, tmp_path, monkeypatch
):
    """Code path check without a GPU: which network, file, flags and profile TensorRT gets."""
    import contextlib
    import sys

    from export import tensorrt_engine
    from scanner.contract import Preprocessing

    fake = _FakeTensorRT(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tensorrt_engine, "tensorrt_missing", lambda: None)
    monkeypatch.setattr(tensorrt_engine, "gpu_identity", lambda device: {"gpu": "fake"})
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    source = tmp_path / (ONNX_FP16_FILE if precision == "fp16" else ONNX_FILE)
    engine = tmp_path / ENGINE_FILE
    record = tensorrt_engine.build_engine(
        source,
        engine,
        Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3),
        precision=precision,
        max_batch=6,
        device="cuda",
    )
    assert fake.calls["network_flags"] == flags
    assert fake.calls["parsed"] == str(source)
    assert fake.calls.get("cleared") == ([fake.BuilderFlag.TF32] if precision == "fp32" else None)
    frame = (15, 3, 224, 224)
    assert fake.calls["profile"] == (INPUT_NAME, (1, *frame), (3, *frame), (6, *frame))
    assert engine.read_bytes() == b"serialized engine"
    assert record["built_from"] == source.name and record["network"] == "strongly typed"
    assert record["profile"] == {"min": 1, "opt": 3, "max": 6} and record["version"] == version


def test_fp16_engine_is_built_from_the_verified_fp16_onnx(
    tiny_checkpoint, face_track, tmp_path, monkeypatch
):
    """Pipeline wiring without a GPU: a stand-in "engine" that is the ONNX it was built from,
    verified through onnxruntime in place of TensorRT."""
    built = fake_engine_build(monkeypatch)
    result = export_all(
        tiny_checkpoint,
        tmp_path,
        formats="engine",
        fp16=True,
        max_batch=4,
        face=face_track,
        device=torch.device("cpu"),
    )
    assert built == {"source": ONNX_FP16_FILE, "precision": "fp16", "max_batch": 4}
    (engine,) = result.artifacts
    assert engine.info.precision == "fp16" and engine.info.tensorrt["built_from"] == ONNX_FP16_FILE
    assert engine.info.parity["tolerance"] == TOLERANCE["fp16"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [ENGINE_FILE, ENGINE_FILE + ".json", "model.safetensors"]
    )


def test_same_padding_is_constant_in_the_graph_and_folds_into_the_convolutions(tmp_path):
    """A backbone with TensorFlow's "same" padding (timm's Conv2dSame, as the shipped
    tf_efficientnet_lite0 has) traces to constant Pads that onnxruntime folds into the
    convolutions: no Pad is left in its optimised graph, whose outputs are PyTorch's; the
    detector it was traced from keeps its own layers."""
    import timm
    from timm.layers import Conv2dSame

    backbone = timm.create_model(
        TINY_CONFIG.backbone, pretrained=False, num_classes=0, global_pool="", pad_type="same"
    )
    detector = build_detector(TINY_CONFIG, backbone).eval()
    same = [m for m in detector.modules() if isinstance(m, Conv2dSame)]
    assert same
    model = trace_onnx(detector, TINY_CONFIG.num_frames, 64)
    assert [m for m in detector.modules() if isinstance(m, Conv2dSame)] == same
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    optimised = onnx.load(str(tmp_path / "optimised.onnx"))
    assert "Pad" not in {node.op_type for node in optimised.graph.node}
    clips = torch.randn(2, TINY_CONFIG.num_frames, 3, 64, 64)
    probabilities, attention = session.run(list(OUTPUT_NAMES), {INPUT_NAME: clips.numpy()})
    with torch.no_grad():
        logits, alpha = detector(clips)
    assert np.abs(probabilities - torch.softmax(logits, -1).numpy()).max() < 1e-5
    assert np.abs(attention - alpha.numpy()).max() < 1e-5


def test_an_engine_for_the_cpu_is_refused_before_any_export(monkeypatch, tmp_path):
    """An engine asked for on the CPU (a CPU bench on a machine with TensorRT) fails at once,
    before minutes of ONNX export and parity, even where TensorRT is installed."""
    import export.pipeline as pipeline

    monkeypatch.setattr(pipeline, "tensorrt_missing", lambda: None)  # TensorRT "installed"
    monkeypatch.setattr(pipeline, "load_checkpoint", lambda *a: pytest.fail("exported"))
    for formats in ("engine", "all"):
        with pytest.raises(RuntimeUnavailable, match="built on a CUDA device, not cpu"):
            export_all(
                tmp_path / "w.safetensors", tmp_path, formats=formats, device=torch.device("cpu")
            )
    pipeline.check_formats("onnx", torch.device("cpu"))  # ONNX on the CPU is fine
