"""`dfscan scan --engine ray` on a local Ray instance (2 CPUs, one per test module): the same
rows as the local engine on hostile files and on the shared clips, resume after an
interrupted Ray scan, a scoring actor that crashes on one video, and Ray missing."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import main
from scanner.discover import discover_videos

from helpers import HOSTILE_STATUSES, SHARED_VIDEOS, needs_shared_videos, write_hostile_files

SCORE_TOLERANCE = 1e-4  # the same backend on the same CPU, at another thread count


def rows_of(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def details_of(path: Path) -> dict[str, dict]:
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    return {d["path"]: d for d in lines}


def assert_same_rows(local: dict[str, dict], ray: dict[str, dict]) -> None:
    """Every column but the wall time equal; scores within SCORE_TOLERANCE."""
    assert set(ray) == set(local)
    for path, want in local.items():
        got = ray[path]
        for key in want:
            if key == "seconds":
                continue
            if key == "score" and want[key]:
                assert abs(float(got[key]) - float(want[key])) <= SCORE_TOLERANCE, path
            else:
                assert got[key] == want[key], (path, key, got[key], want[key])


def assert_close(got: object, want: object, where: str) -> None:
    """Equal JSON values, numbers within SCORE_TOLERANCE."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert abs(got - want) <= SCORE_TOLERANCE, (where, got, want)
    else:
        assert got == want, (where, got, want)


def assert_same_details(local: Path, ray: Path) -> None:
    """The details lines of the same videos alike, and their face crops: the same files
    (named after the video's path and person) with the same JPEG bytes."""
    want, got = details_of(local), details_of(ray)
    assert set(got) == set(want)
    for path in want:
        for a, b in zip(want[path]["people"], got[path]["people"]):
            assert (local.parent / a["crops"]).read_bytes() == (
                ray.parent / b["crops"]
            ).read_bytes()
            a["crops"], b["crops"] = Path(a["crops"]).name, Path(b["crops"]).name
        assert_close(got[path], want[path], path)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module: 2 CPUs, a small object store, no dashboard;
    workers at this process's priority (Ray's default nice 15 starves them beside other
    work on a small machine)."""
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "dfscan[ray]")')
    pytest.importorskip("ray.data", reason='Ray Data is not installed (pip install "ray[data]")')
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 2**20,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _system_config={"worker_niceness": 0},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory, face_image, face_clip, noface_clip):
    """Files the scan must give each its status (``helpers.HOSTILE_STATUSES``)."""
    return write_hostile_files(
        tmp_path_factory.mktemp("hostile"), face_image, face_clip, noface_clip
    )


HOSTILE = HOSTILE_STATUSES


def scan(inputs, weights, out, *more):
    args = ["scan", *map(str, inputs), "--weights", str(weights), "--out", str(out)]
    args += ["--details", str(out.with_suffix(".jsonl")), "--no-progress", *more]
    return CliRunner().invoke(main, args)


@pytest.fixture(scope="module")
def local_hostile(hostile_dir, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "local.csv"
    res = scan([hostile_dir], tiny_checkpoint, out, "--batch-size", "3")
    assert res.exit_code == 3, res.output
    return out


def test_ray_gives_the_local_rows_on_hostile_files(
    ray_instance, hostile_dir, local_hostile, tiny_checkpoint, tmp_path
):
    out = tmp_path / "ray.csv"
    res = scan([hostile_dir], tiny_checkpoint, out, "--batch-size", "3", "--engine", "ray")
    assert res.exit_code == 3, res.output  # some inputs failed, as locally
    rows = rows_of(out)
    statuses = {Path(p).relative_to(hostile_dir).as_posix(): r["status"] for p, r in rows.items()}
    assert statuses == HOSTILE
    assert_same_rows(rows_of(local_hostile), rows)
    assert_same_details(local_hostile.with_suffix(".jsonl"), out.with_suffix(".jsonl"))
    crops = sorted(p.name for p in (tmp_path / "ray.crops").iterdir())
    assert len(crops) == 2  # one strip per scored person: the two face clips


def test_interrupted_ray_scan_resumes(
    ray_instance, hostile_dir, local_hostile, tiny_checkpoint, tmp_path, monkeypatch
):
    """Ctrl-C after two rows: exit 130 with those rows kept; --resume on Ray finishes the
    rest, each video once, the local rows."""
    import scanner.report

    out = tmp_path / "ray.csv"
    real_write = scanner.report.ResultWriter.write
    written = []

    def write_then_interrupt(self, result):
        if len(written) == 2:
            raise KeyboardInterrupt
        real_write(self, result)
        written.append(result.path)

    monkeypatch.setattr(scanner.report.ResultWriter, "write", write_then_interrupt)
    res = scan([hostile_dir], tiny_checkpoint, out, "--batch-size", "3", "--engine", "ray")
    assert res.exit_code == 130, res.output
    assert set(rows_of(out)) == set(written) and len(written) == 2
    monkeypatch.setattr(scanner.report.ResultWriter, "write", real_write)

    res = scan([hostile_dir], tiny_checkpoint, out, "--engine", "ray", "--resume")
    assert res.exit_code == 3, res.output
    assert "resuming: 2 of 8 videos" in res.output
    with open(out, newline="", encoding="utf-8") as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    assert len(paths) == len(set(paths)) == len(HOSTILE)
    assert_same_rows(rows_of(local_hostile), rows_of(out))
    assert_same_details(local_hostile.with_suffix(".jsonl"), out.with_suffix(".jsonl"))


def test_a_crashing_scoring_actor_is_retried_then_an_error_row(
    ray_instance, hostile_dir, local_hostile, face_clip, tiny_checkpoint, tmp_path, monkeypatch
):
    """The scoring actor's process exits on one video: Ray restarts it and runs the call
    again, then runs the batch's videos one by one; the others get their local rows, the
    crashing one an error row that says why."""
    from scanner.api import load_backend
    from scanner.ray_engine import CRASH_ON_ENV, ModelSpec, RayOptions, scan_ray
    from scanner.scan import ScanOptions

    crash = tmp_path / "crash_me.mp4"
    crash.write_bytes(face_clip.read_bytes())
    videos = [crash, hostile_dir / "portrait.mp4", hostile_dir / "noface.mp4"]
    monkeypatch.setenv(CRASH_ON_ENV, "crash_me.mp4")
    loaded = load_backend(tiny_checkpoint, "auto", "cpu")
    results = list(
        scan_ray(
            videos,
            ScanOptions(batch_size=3),  # all three in one scoring call
            ModelSpec(tiny_checkpoint, "auto", "cpu"),
            loaded,
            RayOptions(task_retries=1),
        )
    )
    by_path = {r.path: r for r in results}
    assert len(results) == len(by_path) == 3
    lost = by_path[str(crash)]
    assert lost.status == "error" and lost.score is None
    assert "died each time this video ran (2 times in a batch, then alone)" in lost.message
    local = rows_of(local_hostile)
    for video in videos[1:]:
        got, want = by_path[str(video)], local[str(video)]
        assert got.status == want["status"], video
        if want["score"]:
            assert abs(got.score - float(want["score"])) <= SCORE_TOLERANCE


def test_a_failing_model_device_on_ray_stops_the_scan_and_resume_finishes(
    ray_instance, hostile_dir, local_hostile, tiny_checkpoint, tmp_path, monkeypatch
):
    """The scoring actor's device fails (a GPU gone, as onnxruntime's DeviceReset): the scan
    stops with exit 1 and keeps the rows it has, instead of an error row for every video left
    as if its worker had died; --resume finishes with the local rows."""
    from scanner.ray_engine import DEVICE_FAILS_ON_ENV

    out = tmp_path / "ray.csv"
    monkeypatch.setenv(DEVICE_FAILS_ON_ENV, "portrait.mp4")
    res = scan([hostile_dir], tiny_checkpoint, out, "--batch-size", "1", "--engine", "ray")
    assert res.exit_code == 1, res.output
    assert "the model's device failed" in res.output and "simulated" in res.output
    rows = rows_of(out)
    assert str(hostile_dir / "portrait.mp4") not in rows
    assert not any("worker died" in r["message"] for r in rows.values())
    monkeypatch.delenv(DEVICE_FAILS_ON_ENV)
    res = scan(
        [hostile_dir], tiny_checkpoint, out, "--batch-size", "1", "--engine", "ray", "--resume"
    )
    assert res.exit_code == 3, res.output
    assert_same_rows(rows_of(local_hostile), rows_of(out))


@pytest.mark.slow
@needs_shared_videos
def test_ray_gives_the_local_rows_on_the_shared_clips(ray_instance, tiny_checkpoint, tmp_path):
    local, ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert scan([SHARED_VIDEOS], tiny_checkpoint, local).exit_code == 0
    res = scan([SHARED_VIDEOS], tiny_checkpoint, ray, "--engine", "ray")
    assert res.exit_code == 0, res.output
    rows = rows_of(ray)
    assert len(rows) == len(discover_videos([SHARED_VIDEOS]))
    assert {r["status"] for r in rows.values()} == {"ok", "no_face"}
    assert_same_rows(rows_of(local), rows)
    assert_same_details(local.with_suffix(".jsonl"), ray.with_suffix(".jsonl"))


def local_path_of(uri: str) -> str:
    """The local path a ``file://`` URI names."""
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme == "file", uri
    return urllib.parse.unquote(parsed.path)


def test_a_file_uri_folder_gives_the_local_rows_under_its_uris(
    ray_instance, hostile_dir, local_hostile, tiny_checkpoint, tmp_path
):
    """The hostile folder named as a file:// URI: listed through pyarrow, read by the decode
    actors through a temporary copy; the local rows (but for the link to nothing, which
    pyarrow does not list), each under its URI; --resume finds them all done."""
    out = tmp_path / "uri.csv"
    uri = hostile_dir.as_uri() + "/"
    res = scan([uri], tiny_checkpoint, out, "--batch-size", "3", "--engine", "ray")
    assert res.exit_code == 3, res.output
    rows = rows_of(out)
    assert all(p.startswith(uri) for p in rows), list(rows)
    local = {p: r for p, r in rows_of(local_hostile).items() if not p.endswith("dangling.mp4")}
    by_path = {}
    for p, r in rows.items():
        by_path[local_path_of(p)] = {**r, "path": local_path_of(r["path"])}
    statuses = {
        Path(p).relative_to(hostile_dir).as_posix(): r["status"] for p, r in by_path.items()
    }
    assert statuses == {k: v for k, v in HOSTILE.items() if k != "dangling.mp4"}
    assert_same_rows(local, by_path)

    res = scan([uri], tiny_checkpoint, out, "--engine", "ray", "--resume")
    assert "resuming: 7 of 7 videos" in res.output, res.output
    assert rows_of(out) == rows


def test_a_missing_object_under_a_uri_is_an_error_row(ray_instance, tiny_checkpoint, tmp_path):
    out = tmp_path / "missing.csv"
    missing = "file:///nonexistent/dfscan/x.mp4"
    res = scan([missing], tiny_checkpoint, out, "--engine", "ray")
    assert res.exit_code == 3, res.output
    (row,) = rows_of(out).values()
    assert row["path"] == missing and row["status"] == "error"
    assert row["message"].startswith(f"cannot read {missing}: "), row["message"]


def test_a_uri_needs_the_ray_engine(tiny_checkpoint, tmp_path):
    out = tmp_path / "r.csv"
    res = scan(["s3://bucket/videos/"], tiny_checkpoint, out)
    assert res.exit_code == 2 and "pass --engine ray" in res.output, res.output
    assert not out.exists()


def test_without_ray_the_engine_says_what_to_install(
    hostile_dir, tiny_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    out = tmp_path / "r.csv"
    res = scan([hostile_dir], tiny_checkpoint, out, "--engine", "ray")
    assert res.exit_code == 1
    assert 'pip install "dfscan[ray]"' in res.output
    assert not out.exists()


def test_ray_address_needs_the_ray_engine(hostile_dir, tiny_checkpoint, tmp_path):
    res = scan([hostile_dir], tiny_checkpoint, tmp_path / "r.csv", "--ray-address", "auto")
    assert res.exit_code == 2 and "--ray-address needs --engine ray" in res.output


def test_scan_help_does_not_import_ray():
    probe = (
        "import sys\n"
        "from scanner.cli import main\n"
        "try:\n"
        "    main(['scan', '--help'], prog_name='dfscan')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('ray imported:', 'ray' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert "--engine [local|ray]" in res.stdout
    assert res.stdout.rstrip().endswith("ray imported: False"), res.stdout[-300:]


class FakeRay:
    """What `connected` calls of the ray module: records ray.init's arguments, raises
    ``error`` from it when given."""

    def __init__(self, initialized: bool = False, error: Exception | None = None) -> None:
        self.initialized, self.error = initialized, error
        self.inits: list[dict] = []
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs) -> None:
        self.inits.append(kwargs)
        if self.error is not None:
            raise self.error
        self.initialized = True

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_without_an_address_the_engine_starts_its_own_instance(monkeypatch):
    """Not a cluster that `ray start` left running on the machine (ray.init's default when no
    address is given), whose settings the scan could not set; shut down afterwards."""
    from scanner.ray_engine import connected

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray = FakeRay()
    with connected(ray, None):
        pass
    assert [i["address"] for i in ray.inits] == ["local"] and ray.shutdowns == 1
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    ray = FakeRay()
    with connected(ray, None):
        pass
    assert ray.inits[0]["address"] is None  # ray.init reads RAY_ADDRESS itself
    ray = FakeRay(initialized=True)  # already connected: used as it is, left running
    with connected(ray, "elsewhere:6379"):
        pass
    assert ray.inits == [] and ray.shutdowns == 0


def test_a_cluster_that_cannot_be_reached_creates_no_output(
    hostile_dir, tiny_checkpoint, tmp_path, monkeypatch
):
    import scanner.ray_engine

    ray = FakeRay(error=ConnectionError("Could not find any running Ray instance."))
    monkeypatch.setattr(scanner.ray_engine, "import_ray", lambda: ray)
    out = tmp_path / "r.csv"
    res = scan([hostile_dir], tiny_checkpoint, out, "--engine", "ray", "--ray-address", "auto")
    assert res.exit_code == 1, res.output
    assert "cannot connect to the Ray cluster at auto" in res.output
    assert "Could not find any running Ray instance" in res.output
    assert not out.exists() and not out.with_suffix(".jsonl").exists()


def test_workers_are_the_ray_engines_decode_actors(
    hostile_dir, tiny_checkpoint, tmp_path, monkeypatch
):
    import scanner.ray_engine

    given = []

    def fake_scan_ray(videos, options, model, loaded, ray_options):
        given.append(ray_options)
        return iter(())

    monkeypatch.setattr(scanner.ray_engine, "import_ray", lambda: FakeRay(initialized=True))
    monkeypatch.setattr(scanner.ray_engine, "scan_ray", fake_scan_ray)
    for more, actors in ((["--workers", "3"], 3), ([], None)):
        out = tmp_path / f"r{len(more)}.csv"
        res = scan([hostile_dir], tiny_checkpoint, out, "--engine", "ray", *more)
        assert res.exit_code == 0, res.output
        assert given[-1].decode_actors == actors  # None: the cluster's CPUs less the scorers'


def test_relative_paths_reach_the_workers_and_come_back_as_given(
    ray_instance, hostile_dir, tiny_checkpoint, monkeypatch
):
    """Ray's workers do not share the driver's folder: a relative video path and relative
    weights are sent as absolute paths, and the row keeps the path as given."""
    import os

    from scanner.api import load_backend
    from scanner.ray_engine import ModelSpec, scan_ray
    from scanner.scan import ScanOptions

    loaded = load_backend(tiny_checkpoint, "auto", "cpu")
    monkeypatch.chdir(hostile_dir)  # after the instance started elsewhere
    weights = Path(os.path.relpath(tiny_checkpoint))
    model = ModelSpec(weights, "auto", "cpu")
    (result,) = scan_ray([Path("portrait.mp4")], ScanOptions(), model, loaded)
    assert (result.path, result.status) == ("portrait.mp4", "ok"), result.message


def test_scoring_actors_that_cannot_load_the_model_stop_the_scan_in_one_line(
    ray_instance, hostile_dir, tiny_checkpoint, tmp_path
):
    """The driver could load the model, the scoring actors cannot (a path another node does
    not have): the scan stops with RayFailure naming the actor's error, not a Ray traceback."""
    from scanner.api import load_backend
    from scanner.errors import RayFailure
    from scanner.ray_engine import ModelSpec, RayOptions, scan_ray
    from scanner.scan import ScanOptions

    loaded = load_backend(tiny_checkpoint, "auto", "cpu")
    model = ModelSpec(tmp_path / "only-on-the-driver.safetensors", "auto", "cpu")
    with pytest.raises(RayFailure, match="the Ray pipeline failed: .*only-on-the-driver"):
        list(
            scan_ray(
                [hostile_dir / "portrait.mp4"],
                ScanOptions(),
                model,
                loaded,
                RayOptions(task_retries=0),
            )
        )


def test_resume_with_nothing_left_needs_no_cluster(
    hostile_dir, tiny_checkpoint, tmp_path, monkeypatch
):
    """Every video already has a row: --resume on Ray finishes (exit 0) without reaching
    for a cluster that may be gone by now."""
    import scanner.ray_engine

    out = tmp_path / "r.csv"
    portrait = hostile_dir / "portrait.mp4"
    assert scan([portrait], tiny_checkpoint, out).exit_code == 0
    ray = FakeRay(error=ConnectionError("Could not find any running Ray instance."))
    monkeypatch.setattr(scanner.ray_engine, "import_ray", lambda: ray)
    res = scan([portrait], tiny_checkpoint, out, "--engine", "ray", "--resume")
    assert res.exit_code == 0, res.output
    assert len(rows_of(out)) == 1


def test_a_failed_ray_pipeline_is_one_line_and_keeps_the_rows(
    hostile_dir, tiny_checkpoint, tmp_path, monkeypatch
):
    import scanner.ray_engine
    from scanner.errors import RayFailure

    def failing(videos, options, model, loaded, ray_options):
        raise RayFailure("the Ray pipeline failed: CheckpointError: checkpoint not found: w")
        yield  # a generator, as scan_ray is

    monkeypatch.setattr(scanner.ray_engine, "import_ray", lambda: FakeRay(initialized=True))
    monkeypatch.setattr(scanner.ray_engine, "scan_ray", failing)
    out = tmp_path / "r.csv"
    res = scan([hostile_dir], tiny_checkpoint, out, "--engine", "ray")
    assert res.exit_code == 1, res.output
    assert "the Ray pipeline failed: CheckpointError" in res.output and "--resume" in res.output
    assert "Traceback" not in res.output and out.exists()
