"""The scan's worker processes: results in order, as the sequential stages give them, and a
worker that dies costs only its own video."""

import multiprocessing
import os
import shutil

import pytest
import torch

from scanner import scan
from scanner.backends import make_backend
from scanner.scan import Scanner, ScanOptions

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="worker processes need fork"
)


@pytest.fixture()
def videos(tmp_path, face_clip, noface_clip):
    names = ["a.mp4", "none.mp4", "b.mp4", "c.mp4"]
    sources = [face_clip, noface_clip, face_clip, face_clip]
    for name, source in zip(names, sources):
        shutil.copyfile(source, tmp_path / name)
    return [tmp_path / n for n in names]


def test_worker_processes_give_the_sequential_results_in_order(videos, tiny_checkpoint):
    backend = make_backend(tiny_checkpoint, "torch", torch.device("cpu"))
    scanner = Scanner(backend, ScanOptions(batch_size=2, workers=2, descriptors=False))
    assert scanner.uses_processes
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
