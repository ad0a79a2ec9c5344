"""Files and cache folders are published whole: a reader never sees part of one; of two
writers of a file the last to finish wins, of a cache folder the first whole copy is kept."""

import pytest

from scanner.files import replacing, replacing_folder


def test_replacing_folder_publishes_whole_or_not_at_all(tmp_path) -> None:
    folder = tmp_path / "cache" / "entry"

    def whole() -> bool:
        return (folder / "a.bin").is_file()

    with pytest.raises(RuntimeError):
        with replacing_folder(folder, whole) as scratch:
            (scratch / "a.bin").write_bytes(b"half")
            raise RuntimeError("export failed")
    assert not folder.exists() and list(folder.parent.iterdir()) == []  # no scratch left

    folder.mkdir()  # an earlier failure's leftover: replaced
    with replacing_folder(folder, whole) as scratch:
        (scratch / "a.bin").write_bytes(b"first")
    assert (folder / "a.bin").read_bytes() == b"first"

    with replacing_folder(folder, whole) as scratch:  # another writer's whole copy: kept
        (scratch / "a.bin").write_bytes(b"second")
    assert (folder / "a.bin").read_bytes() == b"first"
    assert [p.name for p in folder.parent.iterdir()] == ["entry"]


def test_replacing_writes_through_a_private_synced_temporary_file(tmp_path, monkeypatch) -> None:
    """Two writers of one path each get their own temporary file (the last to finish wins);
    the file is synced to disk before the rename; a name near the file system's 255-byte
    limit still has room for its temporary suffix; a failed write leaves the old file."""
    import os

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = tmp_path / "out.csv"
    with replacing(target) as first, replacing(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first" and len(synced) == 2  # the outer block ended last
    long = tmp_path / ("x" * 250)
    with replacing(long) as tmp:
        assert len(tmp.name) <= 255
        tmp.write_text("long")
    assert long.read_text() == "long"
    wide = tmp_path / ("\u5f71" * 84)  # 252 bytes in UTF-8: the limit is in bytes
    with replacing(wide) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255
        tmp.write_text("wide")
    assert wide.read_text() == "wide"
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == [
        "out.csv",
        "x" * 250,
        "\u5f71" * 84,
    ]
