"""The scan's worker processes: results in order, as the sequential stages give them, forked
or started afresh (as they are where faces are detected on a GPU), and a worker that dies
costs only its own video."""

import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scanner import scan, video
from scanner.backends import make_backend
from scanner.faces import OnnxNets
from scanner.scan import Scanner, ScanOptions

needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="forked workers need fork"
)


@pytest.fixture()
def videos(tmp_path, face_clip, noface_clip):
    names = ["a.mp4", "none.mp4", "b.mp4", "c.mp4"]
    sources = [face_clip, noface_clip, face_clip, face_clip]
    for name, source in zip(names, sources):
        shutil.copyfile(source, tmp_path / name)
    return [tmp_path / n for n in names]


def assert_sequential_results(scanner: Scanner, videos: list) -> None:
    """The pipeline's rows equal the stages run one after the other in this process."""
    got = list(scanner.results(videos))
    want = scanner.score([scanner._prepare(v) for v in videos])
    assert [r.path for r in got] == [str(v) for v in videos]
    assert [r.status for r in got] == ["ok", "no_face", "ok", "ok"]
    for g, w in zip(got, want):
        assert (g.status, g.message) == (w.status, w.message)
        assert g.frames_with_face == w.frames_with_face
        if w.score is not None:
            assert g.score == pytest.approx(w.score, abs=1e-6)
            assert [p.boxes for p in g.people] == [p.boxes for p in w.people]


@needs_fork
def test_worker_processes_give_the_sequential_results_in_order(videos, tiny_checkpoint):
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    scanner = Scanner(backend, ScanOptions(batch_size=2, workers=2, descriptors=False))
    assert scanner.start_method == "fork" and scanner.uses_processes
    assert_sequential_results(scanner, videos)


def test_spawned_worker_processes_give_the_sequential_results(videos, tiny_checkpoint, monkeypatch):
    """Workers started afresh, as with a GPU detector, build their own stage from the
    scanner's picklable settings and give the same rows (here on the CPU)."""
    monkeypatch.setattr(Scanner, "start_method", property(lambda self: "spawn"))
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    scanner = Scanner(backend, ScanOptions(batch_size=2, workers=2, descriptors=False))
    assert scanner.uses_processes
    assert_sequential_results(scanner, videos)


def test_workers_are_spawned_where_faces_are_detected_on_a_gpu(tiny_checkpoint):
    """CUDA does not survive a fork: a GPU detector's workers start afresh, each with its
    own detector on that device."""
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    scanner = Scanner(backend, ScanOptions(detector_device="cuda:0"))
    assert scanner.start_method == "spawn"
    assert scanner.prepare_settings.detector_device == "cuda:0"
    on_cpu = Scanner(backend, ScanOptions())
    fork = "fork" in multiprocessing.get_all_start_methods()
    assert on_cpu.start_method == ("fork" if fork else None)


def test_workers_take_the_first_video_then_the_largest_frames(tiny_checkpoint, monkeypatch):
    """Past the next result, the workers get the largest frames first (unknown sizes first of
    all) of the videos read ahead, at most ``window`` (here 3) beyond those handed over: a
    large video met last does not run alone at the end. Rows keep the input order."""
    areas = {"s0": 100, "s1": 100, "big": 10_000, "s2": 100, "mid": 1_000, "unknown": None}
    monkeypatch.setattr(scan, "frame_area", lambda path: areas[path.name])
    monkeypatch.setattr(Scanner, "start_method", property(lambda self: None))  # threads
    taken = []

    def prepare(self, path):  # noqa: ANN001, ANN202
        taken.append(path.name)
        return scan.Prepared(path, "no_face", "no face", 0.0)

    monkeypatch.setattr(Scanner, "_prepare", prepare)
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    scanner = Scanner(backend, ScanOptions(batch_size=1, workers=1, descriptors=False))
    rows = list(scanner.results([Path(name) for name in areas]))
    assert [r.path for r in rows] == list(areas)
    # "unknown" is read only once s0, big and mid are out; s1 and s2 tie and keep their order
    assert taken == ["s0", "big", "mid", "unknown", "s1", "s2"]


@needs_fork
def test_a_video_whose_worker_process_dies_is_an_error_row(videos, tiny_checkpoint, monkeypatch):
    """The worker's death fails the calls of every video it had; they run again, and only the
    one that kills its worker again is an error row, in its place."""
    real = scan.prepare_video

    def crash_on_b(path, *args, **kw):  # noqa: ANN001, ANN202 - forked workers inherit it
        if path.name == "b.mp4":
            os._exit(3)
        return real(path, *args, **kw)

    monkeypatch.setattr(scan, "prepare_video", crash_on_b)
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    scanner = Scanner(backend, ScanOptions(batch_size=2, workers=2, descriptors=False))
    got = list(scanner.results(videos))
    assert [os.path.basename(r.path) for r in got] == ["a.mp4", "none.mp4", "b.mp4", "c.mp4"]
    assert [r.status for r in got] == ["ok", "no_face", "error", "ok"]
    assert "worker process" in got[2].message and "died" in got[2].message
    assert got[0].score == pytest.approx(got[3].score, abs=1e-6)  # the same clip


UNGUARDED_SCRIPT = """
import sys
import torch
from pathlib import Path
from scanner.backends import make_backend
from scanner.scan import Scanner, ScanOptions

# As with a GPU detector: workers started afresh (here, on the CPU).
Scanner.start_method = property(lambda self: None if self._threads_only else "spawn")
backend = make_backend(Path(sys.argv[1]), "torch", torch.device("cpu"))
scanner = Scanner(backend, ScanOptions(batch_size=2, workers=2, descriptors=False))
for r in scanner.results([Path(p) for p in sys.argv[2:]]):
    print(r.status, r.score is not None)
"""


def test_a_script_without_a_main_guard_scans_with_threads(videos, tiny_checkpoint, tmp_path):
    """A spawned worker imports the script that started it again; without
    ``if __name__ == "__main__":`` it dies before starting. The scan says why and goes on
    with worker threads: every video gets its row."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), str(tiny_checkpoint), *map(str, videos)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[:4] == ["ok True", "no_face False", "ok True", "ok True"]
    assert "worker processes could not start" in run.stderr
    assert 'if __name__ == "__main__":' in run.stderr


@pytest.mark.parametrize(("cores", "workers"), [(1, 2), (2, 2), (4, 2), (16, 14)])
def test_default_workers_are_the_cores_less_two_at_least_two(monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert scan.default_workers() == workers
    assert ScanOptions().workers == workers


@pytest.mark.parametrize(
    ("cores", "workers", "threads"), [(2, 2, 1), (1, 2, 1), (16, 14, 1), (16, 4, 4), (16, 1, 16)]
)
def test_worker_decoders_share_out_the_cores(monkeypatch, cores, workers, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert scan.decoder_threads(workers) == threads


def test_a_worker_process_sets_its_threads_and_its_decoders(tiny_checkpoint, monkeypatch):
    """What ``_worker_start`` does in a new worker, run here with everything it changes put
    back: one torch thread, the decoder threads it is given, its own stage."""
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    settings = Scanner(backend, ScanOptions(workers=2, descriptors=False)).prepare_settings
    monkeypatch.setattr(scan, "_worker", None)
    monkeypatch.setattr(OnnxNets, "_shared", OnnxNets._shared)  # the worker drops it
    started = multiprocessing.get_context().Event()
    torch_threads = torch.get_num_threads()
    try:
        scan._worker_start(settings, started, 3)
        assert torch.get_num_threads() == scan.WORKER_TORCH_THREADS
        assert video._decoder_threads == 3
    finally:
        torch.set_num_threads(torch_threads)
        video.set_decoder_threads(None)
    assert started.is_set() and isinstance(scan._worker, scan.Preparer)


@needs_fork
def test_a_worker_dying_while_the_model_runs_is_an_error_row(
    tmp_path, face_clip, tiny_checkpoint, monkeypatch
):
    """The pool breaks while the scan is busy scoring; the next video submitted to it meets
    a broken pool, which is recovered from like a death seen while waiting."""
    real = scan.prepare_video
    crashed = tmp_path / "crashed"

    def crash_on_b(path, *args, **kw):  # noqa: ANN001, ANN202 - forked workers inherit it
        if path.name == "b.mp4":
            crashed.touch()
            os._exit(3)
        return real(path, *args, **kw)

    names = ["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4", "f.mp4"]
    for name in names:
        shutil.copyfile(face_clip, tmp_path / name)
    monkeypatch.setattr(scan, "prepare_video", crash_on_b)
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    # One worker, one clip a call: three videos in flight, the rest submitted as results come.
    scanner = Scanner(backend, ScanOptions(batch_size=1, workers=1, descriptors=False))
    forward = scanner._forward

    def slow_forward(clips):  # noqa: ANN001, ANN202 - the worker dies on b.mp4 meanwhile
        deadline = time.monotonic() + 60
        while not crashed.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # for the pool's manager thread to see the death
        return forward(clips)

    monkeypatch.setattr(scanner, "_forward", slow_forward)
    got = list(scanner.results([tmp_path / n for n in names]))
    assert [os.path.basename(r.path) for r in got] == names
    assert [r.status for r in got] == ["ok", "error", "ok", "ok", "ok", "ok"]


def test_a_preparer_looks_for_the_face_descriptor_once(tiny_checkpoint, monkeypatch):
    """Without dlib the embedder is None, and that answer is kept, not looked up per video."""
    calls = []
    monkeypatch.setattr(scan.FaceEmbedder, "load", classmethod(lambda cls: calls.append(1)))
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    preparer = scan.Preparer(Scanner(backend, ScanOptions()).prepare_settings)
    assert preparer.embedder is None and preparer.embedder is None
    assert calls == [1]
    no_descriptors = Scanner(backend, ScanOptions(descriptors=False)).prepare_settings
    assert scan.Preparer(no_descriptors).embedder is None and calls == [1]


def test_a_non_finite_score_is_an_error_row_not_a_verdict(videos, tiny_checkpoint, monkeypatch):
    """NaN compares false with the threshold: it would have read REAL. Only its own video
    fails; the batch's others keep their scores."""
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    scanner = Scanner(backend, ScanOptions(batch_size=4, workers=1, descriptors=False))
    prepared = [scanner._prepare(v) for v in videos]
    want = scanner.score(prepared)
    forward = scanner._forward

    def overflowing(clips):  # noqa: ANN001, ANN202 - the second clip (b.mp4) overflows
        probs, attention = forward(clips)
        probs = probs.copy()
        probs[1] = float("nan")
        return probs, attention

    monkeypatch.setattr(scanner, "_forward", overflowing)
    got = scanner.score(prepared)
    assert [r.status for r in got] == ["ok", "no_face", "error", "ok"]
    assert got[2].score is None and got[2].label is None and "non-finite" in got[2].message
    assert got[0].score == want[0].score and got[3].score == want[3].score
