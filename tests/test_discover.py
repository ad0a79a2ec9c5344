import os

import pytest

from scanner.discover import discover_videos


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_recursive_with_video_extensions_only(tmp_path):
    a = touch(tmp_path / "a.mp4")
    b = touch(tmp_path / "sub dir" / "ünï code" / "B.MOV")
    touch(tmp_path / "notes.txt")
    touch(tmp_path / ".hidden.mp4")
    touch(tmp_path / "sub dir" / "._b.mp4")
    assert discover_videos([tmp_path]) == [a, b]


def test_files_named_directly_are_kept_whatever_the_extension(tmp_path):
    txt = touch(tmp_path / "clip.bin")
    assert discover_videos([txt]) == [txt]


def test_directory_given_twice_and_overlapping_inputs(tmp_path):
    a = touch(tmp_path / "d" / "a.mp4")
    found = discover_videos([tmp_path / "d", tmp_path, tmp_path / "d" / "a.mp4", tmp_path / "d"])
    assert found == [a]


def test_symlink_loops_terminate(tmp_path):
    a = touch(tmp_path / "d" / "a.mp4")
    os.symlink(tmp_path, tmp_path / "d" / "loop")
    os.symlink(tmp_path / "d", tmp_path / "d" / "self")
    assert discover_videos([tmp_path]) == [a]


def test_a_dangling_symlink_in_a_folder_is_listed_for_its_error_row(tmp_path):
    a = touch(tmp_path / "a.mp4")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "dangling.mp4")
    found = discover_videos([tmp_path])
    assert sorted(found) == [a, tmp_path / "dangling.mp4"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory; permissions untestable")
def test_unreadable_directory_is_skipped(tmp_path):
    a = touch(tmp_path / "a.mp4")
    locked = tmp_path / "locked"
    touch(locked / "b.mp4")
    locked.chmod(0)
    try:
        assert discover_videos([tmp_path]) == [a]
    finally:
        locked.chmod(0o755)
