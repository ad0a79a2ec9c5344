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
    assert math.isnan(e.second_half_videos_per_s)  # too few results for a rate
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


def test_second_half_rate_leaves_out_the_start_up():
    from benchmarks.bench import StageTimes

    times = (5.0, 5.1, 5.2, 6.0, 7.0)  # four seconds of start-up, then a result every second
    e = StageTimes("m", "torch", "cpu", 5, 5, 1, 1, 1, 1, 7.5, "hw", "v", result_s=times)
    assert e.first_result_s == 5.0
    assert e.second_half_videos_per_s == pytest.approx(2 / 1.8)
    assert e.videos_per_s == pytest.approx(5 / 7.5)
