"""Cache folders are published whole: a reader never sees part of one, and the first whole
copy of two writers is kept."""

import pytest

from scanner.files import replacing_folder


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
