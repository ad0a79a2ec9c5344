"""Benchmark rows are well-formed; timings are reported, never asserted."""

import csv
import json
import math

import pytest

from benchmarks.bench import (
    PAPER_TABLE7,
    BenchReport,
    file_size_row,
    format_report,
    measure_end_to_end,
    measure_latency,
    write_report,
)
from scanner.backends import TorchBackend
from scanner.checkpoint import load_checkpoint

from helpers import fake_engine_build


@pytest.fixture(scope="module")
def backend(tiny_checkpoint):
    import torch

    return TorchBackend(load_checkpoint(tiny_checkpoint), torch.device("cpu"))


def test_latency_rows(backend):
    rows = measure_latency("tiny", lambda: backend, batches=[1, 2], runs=2, warmup=1)
    assert [r.batch for r in rows] == [1, 2]
    for r in rows:
        assert r.error == "" and r.backend == "torch" and r.device == "cpu"
        assert r.median_ms > 0 and r.p90_ms >= r.median_ms * 0.999
        assert r.clips_per_s == pytest.approx(1e3 * r.batch / r.median_ms)
        assert "torch" in r.versions and "cores" in r.hardware


def test_a_backend_that_cannot_load_is_an_error_row():
    def broken():
        raise FileNotFoundError("model.engine not found")

    rows = measure_latency("tiny", broken, batches=[1, 4])
    assert [r.batch for r in rows] == [1, 4]
    assert all("model.engine not found" in r.error and r.median_ms is None for r in rows)


def test_end_to_end_splits_time_by_stage(backend, face_clip, noface_clip):
    e = measure_end_to_end("tiny", backend, [face_clip, noface_clip], workers=1)
    assert (e.videos, e.scored) == (2, 1)
    assert min(e.decode_s, e.detect_s, e.crop_s, e.model_s, e.pipeline_s) > 0
    assert e.bottleneck in ("decode", "detect", "identity", "crop", "model")
    assert e.clips == 1 and e.identity_s == e.descriptors == 0  # one face: no descriptor
    assert math.isfinite(e.videos_per_s)
    assert len(e.result_s) == 2 and 0 < e.first_result_s <= e.result_s[1] <= e.pipeline_s
    assert math.isnan(e.after_first_videos_per_s)  # too few results for a rate
    assert e.frames >= 15 * e.scored and e.decode_fps > 0 and e.detect_fps > 0


def test_end_to_end_finds_faces_with_the_scan_workers_torch_threads(
    backend, face_clip, monkeypatch
):
    """The stage pass detects faces with torch at one thread, as a forked scan worker does,
    and gives this process its thread count back afterwards."""
    import torch

    import benchmarks.bench as bench

    seen, real = [], bench.read_face_clip

    def read_face_clip(*args, **kw):
        seen.append(torch.get_num_threads())
        return real(*args, **kw)

    monkeypatch.setattr(bench, "read_face_clip", read_face_clip)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        e = measure_end_to_end("tiny", backend, [face_clip], workers=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1] and e.scored == 1


def test_report_files_and_table(backend, tiny_checkpoint, tmp_path):
    report = BenchReport(
        sizes=[
            file_size_row("tiny", "checkpoint", tiny_checkpoint, 12345),
            file_size_row("tiny", "engine", tmp_path / "missing.engine", None),
        ],
        latency=measure_latency("tiny", lambda: backend, batches=[1], runs=1, warmup=0),
    )
    text = format_report(report)
    assert "Su et al. (paper)" in text and "18.4" in text and "tiny torch cpu" in text
    assert "error" in text  # the missing engine
    paths = write_report(report, tmp_path / "bench")
    data = json.loads(paths[0].read_text())
    assert len(data["paper_table7"]) == len(PAPER_TABLE7)
    assert data["sizes"][0]["size_mb"] > 0 and data["sizes"][1]["error"]
    rows = list(csv.DictReader(open(paths[1])))
    assert rows[0]["batch"] == "1" and float(rows[0]["median_ms"]) > 0
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_command_rows_for_each_backend(tiny_checkpoint, face_clip, tmp_path):
    from click.testing import CliRunner

    from scanner.cli import main

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "face.mp4").write_bytes(face_clip.read_bytes())
    out = tmp_path / "bench"
    args = [
        "bench",
        "--weights",
        str(tiny_checkpoint),
        "--no-paper",
        "--batches",
        "1,2",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--backends",
        "torch,onnx,onnx-fp16,tensorrt",
        "--videos",
        str(videos),
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "Su et al. (paper)" in res.output
    data = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["model"].split("[")[1].rstrip("]"), r["batch"]): r for r in data["latency"]}
    assert set(rows) == {(k, b) for k in ("torch", "onnx", "onnx-fp16", "tensorrt") for b in (1, 2)}
    for kind in ("torch", "onnx", "onnx-fp16"):
        assert rows[(kind, 1)]["error"] == "" and rows[(kind, 1)]["median_ms"] > 0
    assert rows[("onnx", 2)]["backend"] == "onnx"
    assert rows[("tensorrt", 1)]["error"] and rows[("tensorrt", 1)]["median_ms"] is None
    kinds = {r["artifact"] for r in data["sizes"]}
    assert {"checkpoint", "onnx", "onnx-fp16"} <= kinds
    e2e = data["end_to_end"][0]
    assert e2e["videos"] == 1 and e2e["scored"] == 1 and e2e["bottleneck"]


def test_end_to_end_scores_every_person_and_times_their_descriptors(backend, astronaut_pair):
    """As the scan does: both faces of a two-person video are clips for the model, and their
    identity descriptors (where dlib is installed) are a stage of their own, not crop time:
    the first and last face of each person's track, each one person."""
    from scanner.identity import FaceEmbedder

    e = measure_end_to_end("tiny", backend, [astronaut_pair], workers=1)
    assert (e.scored, e.clips) == (1, 2)
    assert e.crop_s > 0
    dlib = FaceEmbedder.load() is not None
    assert (e.identity_s > 0) == dlib and e.descriptors == (4 if dlib else 0)
    assert "identity" in format_report(BenchReport(end_to_end=[e]))
    assert f"({e.descriptors} descriptors)" in format_report(BenchReport(end_to_end=[e]))


def test_a_file_the_scan_cannot_open_is_left_out_of_the_stages(backend, face_clip, tmp_path):
    """A missing file is a row with a status in the scan; the stage pass skips it."""
    e = measure_end_to_end("tiny", backend, [face_clip, tmp_path / "gone.mp4"], workers=1)
    assert (e.videos, e.scored) == (2, 1)
    assert len(e.result_s) == 2


def test_the_rate_after_the_first_result_leaves_out_the_start_up():
    from benchmarks.bench import StageTimes

    times = (5.0, 7.0, 7.0, 7.0, 7.0)  # five seconds of start-up, then a burst of results
    e = StageTimes("m", "torch", "cpu", 5, 5, 1, 1, 1, 1, 7.5, "hw", "v", result_s=times)
    assert e.first_result_s == 5.0
    assert e.after_first_videos_per_s == pytest.approx(4 / 2.0)
    assert e.videos_per_s == pytest.approx(5 / 7.5)


def test_bench_measures_the_onnx_files_beside_the_engine(tiny_checkpoint, tmp_path, monkeypatch):
    """The engine is exported into the folder of the ONNX files after them; they stay, and
    both are sized and measured."""
    import torch

    from benchmarks.run import BenchConfig, bench_model

    fake_engine_build(monkeypatch)
    kinds = ("onnx", "onnx-fp16", "tensorrt")
    cfg = BenchConfig(batches=(1,), runs=1, warmup=0, backends=kinds, max_batch=2)
    sizes, latency = bench_model("tiny (test)", tiny_checkpoint, tmp_path, cfg, torch.device("cpu"))
    rows = {r.artifact: r for r in sizes}
    for kind in kinds:
        assert rows[kind].error == "" and rows[kind].size_mb > 0, rows[kind]
    measured = {r.model: r for r in latency}
    for kind in ("onnx", "onnx-fp16"):  # the stand-in engine needs TensorRT to run
        assert measured[f"tiny (test) [{kind}]"].error == ""
        assert measured[f"tiny (test) [{kind}]"].median_ms > 0


def test_a_failed_fp16_check_fails_only_the_fp16_rows(tiny_checkpoint, tmp_path, monkeypatch):
    """The fp32 file was verified before the fp16 check failed: its rows are measured."""
    import torch

    from benchmarks.run import BenchConfig, bench_model
    from export import pipeline
    from scanner.artifact_writer import ExportError
    from scanner.onnx_writer import verify_onnx

    def verify(path, cases, tolerance):
        if path.name == "model.fp16.onnx":
            raise ExportError("fp16 does not match PyTorch (stand-in)")
        return verify_onnx(path, cases, tolerance)

    monkeypatch.setattr(pipeline, "verify_onnx", verify)
    cfg = BenchConfig(batches=(1,), runs=1, warmup=0, backends=("onnx", "onnx-fp16"))
    sizes, latency = bench_model("tiny (test)", tiny_checkpoint, tmp_path, cfg, torch.device("cpu"))
    rows = {r.artifact: r for r in sizes}
    assert rows["onnx"].error == "" and rows["onnx"].size_mb > 0
    assert rows["onnx-fp16"].size_mb is None
    assert rows["onnx-fp16"].error == "export failed: fp16 does not match PyTorch (stand-in)"
    measured = {r.model: r for r in latency}
    assert measured["tiny (test) [onnx]"].error == ""
    assert "fp16 does not match PyTorch" in measured["tiny (test) [onnx-fp16]"].error


def test_bench_with_weights_that_are_no_checkpoint_is_a_clear_error(tmp_path):
    """Exit 1 with the reason, as `dfscan scan` does, not a traceback."""
    import torch
    from click.testing import CliRunner
    from safetensors.torch import save_file

    from scanner.cli import main

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    for weights, reason in ((junk, "cannot read checkpoint"), (plain, "without dfscan metadata")):
        args = ["bench", "--weights", str(weights), "--no-paper", "--device", "cpu"]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.exception
        assert "Error:" in res.output and reason in res.output


def test_a_failed_end_to_end_measurement_is_a_row_with_its_error(
    tiny_checkpoint, face_clip, tmp_path, monkeypatch
):
    import benchmarks.run as run

    def fail(*args, **kw):
        raise RuntimeError("the pipeline broke (stand-in)")

    monkeypatch.setattr(run, "measure_end_to_end", fail)
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "face.mp4").write_bytes(face_clip.read_bytes())
    cfg = run.BenchConfig(
        weights=tiny_checkpoint,
        paper=False,
        videos=videos,
        batches=(1,),
        runs=1,
        warmup=0,
        device="cpu",
        backends=("torch",),
    )
    report = run.run_bench(cfg)
    assert report.latency[0].error == "" and report.sizes[0].error == ""
    (e2e,) = report.end_to_end
    assert e2e.error == "RuntimeError: the pipeline broke (stand-in)"
    assert e2e.videos == 1 and e2e.scored == 0 and e2e.bottleneck == ""
    assert "1 videos, error: RuntimeError: the pipeline broke" in format_report(report)
    (json_path, _, _) = write_report(report, tmp_path / "bench")
    assert json.loads(json_path.read_text())["end_to_end"][0]["error"] == e2e.error


@pytest.mark.parametrize(
    "out, stem",
    [("bench.v2", "bench.v2"), ("bench", "bench"), ("bench.json", "bench"), ("b.v2.csv", "b.v2")],
)
def test_report_file_names_append_their_suffixes(out, stem, tmp_path):
    paths = write_report(BenchReport(), tmp_path / "runs" / out)
    assert [p.name for p in paths] == [f"{stem}.json", f"{stem}.csv", f"{stem}.png"]
    assert all(p.is_file() and p.parent == tmp_path / "runs" for p in paths)


def test_the_latency_table_names_the_checkpoints_clip_length(tmp_path):
    import dataclasses

    import torch

    from helpers import TINY_CONFIG, make_checkpoint

    weights = make_checkpoint(
        tmp_path / "four.safetensors", dataclasses.replace(TINY_CONFIG, num_frames=4)
    )
    backend = TorchBackend(load_checkpoint(weights), torch.device("cpu"))
    rows = measure_latency("four", lambda: backend, batches=[1], runs=1, warmup=0)
    assert rows[0].frames == 4
    text = format_report(BenchReport(latency=rows))
    assert "Forward pass per 4-frame clip" in text and "15-frame" not in text
    assert "per clip (4/15 frames by model)" in format_report(
        BenchReport(latency=[*rows, dataclasses.replace(rows[0], frames=15)])
    )


def test_a_row_names_the_gpu_of_its_device_and_none_for_the_cpu(monkeypatch):
    """hardware(device): a CPU row on a GPU machine names no GPU; cuda:1 names GPU 1."""
    import torch

    from scanner.machine import hardware

    names = {0: "GPU zero", 1: "GPU one"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: names[i])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert "GPU" not in hardware("cpu") and "GPU" not in hardware("cpu fp16")
    assert hardware("cuda:1 fp16 (TensorrtExecutionProvider)").startswith("GPU one; ")
    assert hardware(torch.device("cuda", 0)).startswith("GPU zero; ")
    assert hardware("cuda").startswith("GPU one; ")  # the current device
    assert hardware().startswith("GPU zero; ")  # the machine: its first GPU
