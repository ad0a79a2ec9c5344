"""Dataset discovery and splitting, on mock trees of empty files (nothing is decoded)."""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.datasets import (
    DatasetError,
    SplitError,
    VideoItem,
    check_splits,
    detect_layout,
    kfold_items,
    load_dataset,
    split_items,
)


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def by_name(items: list[VideoItem], root: Path) -> dict[str, VideoItem]:
    return {item.path.relative_to(root).as_posix(): item for item in items}


# ---------------------------------------------------------------------------------------------
# FaceForensics++


def make_ffpp(root: Path) -> None:
    for q in ("c23", "c40"):
        touch(root, *(f"original_sequences/youtube/{q}/videos/{i}.mp4" for i in ("000", "001")))
        touch(root, *(f"original_sequences/youtube/{q}/videos/{i}.mp4" for i in ("002", "003")))
        touch(
            root,
            *(
                f"manipulated_sequences/Deepfakes/{q}/videos/{p}.mp4"
                for p in ("000_001", "001_000", "002_003", "003_002")
            ),
        )
    touch(
        root,
        "manipulated_sequences/Face2Face/c23/videos/000_001.mp4",
        "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4",  # masks are not videos to use
        "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walk__ABCDEFGH.mp4",
        "original_sequences/actors/c23/videos/01__walk.mp4",
        "original_sequences/actors/c23/videos/02__walk.mp4",
        "original_sequences/actors/c23/videos/03__walk.mp4",
        "original_sequences/youtube/c23/videos/notes.txt",
    )


def test_ffpp_labels_groups_sources(tmp_path: Path) -> None:
    make_ffpp(tmp_path)
    assert detect_layout(tmp_path) == "ffpp"
    items = by_name(load_dataset(tmp_path), tmp_path)

    assert len(items) == 4 * 2 + 4 * 2 + 1 + 1 + 3
    assert not any("masks" in name for name in items)
    real = items["original_sequences/youtube/c23/videos/001.mp4"]
    assert (real.label, real.group, real.source, real.split) == (0, "original/c23", "000", None)
    fake = items["manipulated_sequences/Deepfakes/c40/videos/003_002.mp4"]
    assert (fake.label, fake.group, fake.source) == (1, "Deepfakes/c40", "002")
    assert items["original_sequences/youtube/c40/videos/003.mp4"].source == "002"
    assert items["manipulated_sequences/Face2Face/c23/videos/000_001.mp4"].group == "Face2Face/c23"

    dfd = items["manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walk__ABCDEFGH.mp4"]
    assert (dfd.label, dfd.group, dfd.source) == (1, "DeepFakeDetection/c23", "actors/01")
    actor2 = items["original_sequences/actors/c23/videos/02__walk.mp4"]
    assert (actor2.label, actor2.group, actor2.source) == (0, "actors/c23", "actors/01")
    assert items["original_sequences/actors/c23/videos/03__walk.mp4"].source == "actors/03"


def test_ffpp_quality_and_methods_filters(tmp_path: Path) -> None:
    make_ffpp(tmp_path)
    c40 = load_dataset(tmp_path, quality="c40")
    assert {item.group for item in c40} == {"original/c40", "Deepfakes/c40"}
    assert len(c40) == 8

    only_df = load_dataset(tmp_path, methods=["deepfakes"])  # method names match in any case
    groups = Counter(item.group for item in only_df)
    assert set(groups) == {
        "original/c23",
        "original/c40",
        "actors/c23",
        "Deepfakes/c23",
        "Deepfakes/c40",
    }
    assert groups["Deepfakes/c23"] == 4

    both = load_dataset(tmp_path, quality="c23", methods=["Face2Face"])
    assert {item.group for item in both} == {"original/c23", "actors/c23", "Face2Face/c23"}

    with pytest.raises(DatasetError, match="NeuralTextures.*Deepfakes"):
        load_dataset(tmp_path, methods=["NeuralTextures"])
    with pytest.raises(DatasetError, match="quality"):
        load_dataset(tmp_path, quality="c99")


@pytest.mark.parametrize("folder", ["splits", "."])
def test_ffpp_official_split_files(tmp_path: Path, folder: str) -> None:
    make_ffpp(tmp_path)
    splits = tmp_path / folder
    splits.mkdir(exist_ok=True)
    (splits / "train.json").write_text(json.dumps([["000", "001"]]))
    (splits / "test.json").write_text(json.dumps([["003", "002"]]))

    items = by_name(load_dataset(tmp_path), tmp_path)
    assert items["original_sequences/youtube/c23/videos/001.mp4"].split == "train"
    assert items["manipulated_sequences/Deepfakes/c40/videos/001_000.mp4"].split == "train"
    assert items["original_sequences/youtube/c40/videos/002.mp4"].split == "test"
    assert items["manipulated_sequences/Deepfakes/c23/videos/002_003.mp4"].split == "test"
    assert items["original_sequences/actors/c23/videos/01__walk.mp4"].split is None

    parts = split_items(items.values(), seed=3)
    assert items["manipulated_sequences/Deepfakes/c23/videos/002_003.mp4"] in parts["test"]
    assert items["original_sequences/youtube/c23/videos/000.mp4"] in parts["train"]
    assert sum(len(v) for v in parts.values()) == len(items)


def test_ffpp_split_files_conflicting_with_pairs(tmp_path: Path) -> None:
    make_ffpp(tmp_path)
    touch(tmp_path, "manipulated_sequences/Deepfakes/c23/videos/000_002.mp4")  # links 000 and 002
    (tmp_path / "train.json").write_text(json.dumps([["000", "001"]]))
    (tmp_path / "test.json").write_text(json.dumps([["002", "003"]]))
    with pytest.raises(DatasetError, match="one split"):
        load_dataset(tmp_path)


def test_ffpp_id_in_two_split_files(tmp_path: Path) -> None:
    make_ffpp(tmp_path)
    (tmp_path / "train.json").write_text(json.dumps([["000", "001"]]))
    (tmp_path / "val.json").write_text(json.dumps([["001", "005"]]))
    with pytest.raises(DatasetError, match="'001'.*train.json.*val.json"):
        load_dataset(tmp_path)


def test_ffpp_without_split_files_keeps_pairs_together(tmp_path: Path) -> None:
    make_ffpp(tmp_path)
    items = load_dataset(tmp_path)
    assert all(item.split is None for item in items)
    for seed in range(5):
        parts = split_items(items, ratios=(0.4, 0.3, 0.3), seed=seed)
        assert_sources_disjoint(parts)


# ---------------------------------------------------------------------------------------------
# Celeb-DF v2


def make_celebdf(root: Path) -> None:
    touch(
        root,
        "Celeb-real/id0_0000.mp4",
        "Celeb-real/id1_0000.mp4",
        "Celeb-real/id2_0001.mp4",
        "Celeb-real/id10_0000.mp4",
        "Celeb-synthesis/id0_id1_0000.mp4",
        "Celeb-synthesis/id2_id3_0000.mp4",
        "Celeb-synthesis/id10_id9_0000.mp4",
        "YouTube-real/00170.mp4",
        "YouTube-real/00171.mp4",
    )
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id2_id3_0000.mp4\n1 Celeb-real/gone.mp4\n\n"
    )


def test_celebdf(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_celebdf(tmp_path)
    assert detect_layout(tmp_path) == "celebdf"
    with caplog.at_level(logging.WARNING, logger="training.datasets"):
        items = by_name(load_dataset(tmp_path), tmp_path)
    assert "gone.mp4" in caplog.text
    assert len(items) == 9

    def row(name: str) -> tuple[int, str, str, str | None]:
        item = items[name]
        return item.label, item.group, item.source, item.split

    assert row("Celeb-real/id1_0000.mp4") == (0, "Celeb-real", "id0", None)
    assert row("Celeb-synthesis/id0_id1_0000.mp4") == (1, "Celeb-synthesis", "id0", None)
    assert row("Celeb-synthesis/id2_id3_0000.mp4") == (1, "Celeb-synthesis", "id2", "test")
    assert row("Celeb-real/id2_0001.mp4") == (0, "Celeb-real", "id2", None)
    assert row("YouTube-real/00170.mp4") == (0, "YouTube-real", "00170", "test")
    assert row("YouTube-real/00171.mp4") == (0, "YouTube-real", "00171", None)
    # id9 < id10 as numbers, not as strings
    assert row("Celeb-real/id10_0000.mp4") == (0, "Celeb-real", "id9", None)


def test_celebdf_bad_test_list_line(tmp_path: Path) -> None:
    make_celebdf(tmp_path)
    (tmp_path / "List_of_testing_videos.txt").write_text("1 YouTube-real/00170.mp4\nreal x.mp4\n")
    with pytest.raises(DatasetError, match="line 2"):
        load_dataset(tmp_path)


def test_celebdf_without_test_list(tmp_path: Path) -> None:
    make_celebdf(tmp_path)
    (tmp_path / "List_of_testing_videos.txt").unlink()
    assert all(item.split is None for item in load_dataset(tmp_path))


# ---------------------------------------------------------------------------------------------
# DFDC


def write_metadata(part: Path, metadata: dict[str, dict[str, object]]) -> None:
    part.mkdir(parents=True, exist_ok=True)
    (part / "metadata.json").write_text(json.dumps(metadata))


def make_dfdc(root: Path) -> None:
    write_metadata(
        root / "dfdc_train_part_0",
        {
            "aaa.mp4": {"label": "REAL", "split": "train", "original": None},
            "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
            "ccc.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        },
    )
    write_metadata(
        root / "dfdc_train_part_1",
        {
            "ddd.mp4": {"label": "REAL", "split": "train", "original": None},
            "eee.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        },
    )
    touch(root / "dfdc_train_part_0", "aaa.mp4", "bbb.mp4")  # ccc.mp4 is missing
    touch(root / "dfdc_train_part_1", "ddd.mp4", "eee.mp4", "unlisted.mp4")


def test_dfdc(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_dfdc(tmp_path)
    assert detect_layout(tmp_path) == "dfdc"
    with caplog.at_level(logging.WARNING, logger="training.datasets"):
        items = by_name(load_dataset(tmp_path), tmp_path)
    assert "ccc.mp4" in caplog.text
    assert set(items) == {
        "dfdc_train_part_0/aaa.mp4",
        "dfdc_train_part_0/bbb.mp4",
        "dfdc_train_part_1/ddd.mp4",
        "dfdc_train_part_1/eee.mp4",
    }
    fake = items["dfdc_train_part_1/eee.mp4"]
    assert (fake.label, fake.group, fake.source) == (1, "dfdc_train_part_1", "aaa")
    real = items["dfdc_train_part_0/aaa.mp4"]
    assert (real.label, real.group, real.source) == (0, "dfdc_train_part_0", "aaa")
    # every Kaggle training video says "train": that is no partition, so nothing is declared
    assert all(item.split is None for item in items.values())


def test_dfdc_part_folder_as_root(tmp_path: Path) -> None:
    make_dfdc(tmp_path)
    part = tmp_path / "dfdc_train_part_1"
    assert detect_layout(part) == "dfdc"
    items = load_dataset(part)
    assert [item.path.name for item in items] == ["ddd.mp4", "eee.mp4"]
    assert {item.group for item in items} == {"dfdc_train_part_1"}


def test_dfdc_partitioning_metadata_is_honoured(tmp_path: Path) -> None:
    write_metadata(
        tmp_path,
        {
            "a.mp4": {"label": "REAL", "split": "train", "original": None},
            "b.mp4": {"label": "FAKE", "split": "test", "original": "a.mp4"},
        },
    )
    touch(tmp_path, "a.mp4", "b.mp4")
    assert [item.split for item in load_dataset(tmp_path)] == ["train", "test"]


def test_dfdc_bad_label(tmp_path: Path) -> None:
    write_metadata(tmp_path, {"a.mp4": {"label": "MAYBE"}})
    touch(tmp_path, "a.mp4")
    with pytest.raises(DatasetError, match="a.mp4"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------------------------------------
# real/ + fake/ folders


def test_folders(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "REAL/a.mp4",
        "REAL/b.MOV",
        "REAL/readme.txt",
        "REAL/._a.mp4",
        "fake/c.avi",
        "fake/person1/x.mp4",
        "fake/person1/deeper/y.webm",
    )
    assert detect_layout(tmp_path) == "folders"
    items = by_name(load_dataset(tmp_path), tmp_path)
    assert set(items) == {
        "REAL/a.mp4",
        "REAL/b.MOV",
        "fake/c.avi",
        "fake/person1/x.mp4",
        "fake/person1/deeper/y.webm",
    }
    rows = {name: (i.label, i.group, i.source, i.split) for name, i in items.items()}
    assert rows["REAL/b.MOV"] == (0, "real", "b", None)
    assert rows["fake/c.avi"] == (1, "fake", "c", None)
    assert rows["fake/person1/x.mp4"] == (1, "fake", "person1", None)
    assert rows["fake/person1/deeper/y.webm"] == (1, "fake", "person1", None)


def test_folders_without_videos_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path, "real/notes.txt")
    with pytest.raises(DatasetError, match="no videos"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------------------------------------
# CSV manifest


def test_manifest(tmp_path: Path) -> None:
    touch(tmp_path, "clips/a.mp4", "clips/b.mp4", "clips/c.mp4")
    elsewhere = tmp_path / "other" / "d.mkv"
    touch(tmp_path, "other/d.mkv")
    manifest = tmp_path / "clips" / "list.csv"
    manifest.write_text(
        "path,label,group,source,split\n"
        "a.mp4,0,studio,alice,train\n"
        "b.mp4,FAKE,,,\n"
        "\n"
        f"{elsewhere},Real,,bob,TEST\n"
        "c.mp4,1,,,\n"
    )
    assert detect_layout(manifest) == "manifest"
    items = by_name(load_dataset(manifest), tmp_path)
    rows = {name: (i.label, i.group, i.source, i.split) for name, i in items.items()}
    assert rows == {
        "clips/a.mp4": (0, "studio", "alice", "train"),
        "clips/b.mp4": (1, "fake", "b", None),
        "clips/c.mp4": (1, "fake", "c", None),
        "other/d.mkv": (0, "real", "bob", "test"),
    }


def test_manifest_minimal_header(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("label,path\nreal,a.mp4\n")
    [item] = load_dataset(manifest, "manifest")
    assert (item.label, item.group, item.source, item.split) == (0, "real", "a", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("path,label\na.mp4,0\nb.mp4,maybe\n", r"line 3: label"),
        ("path,label\na.mp4,0\n\nmissing.mp4,1\n", r"line 4: video not found"),
        ("path,label,split\na.mp4,0,holdout\n", r"line 2: split"),
        ("path,label\na.mp4,0\na.mp4,1\n", r"line 3: .*already listed on line 2"),
        ("path,label\na.mp4,0\nsub/../a.mp4,1\n", r"line 3: .*already listed on line 2"),
        ("path,label\na.mp4\n", r"line 2: expected 2 fields"),
        ("path,label\nnotes.txt,0\n", r"line 2: .*video extension"),
        ("path,label,sorce\na.mp4,0,x\n", r"line 1: unknown columns \['sorce'\]"),
        ("file,label\na.mp4,0\n", r"line 1: header must name path and label"),
    ],
)
def test_manifest_errors_name_the_line(tmp_path: Path, body: str, message: str) -> None:
    touch(tmp_path, "a.mp4", "b.mp4", "notes.txt")
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text(body)
    with pytest.raises(DatasetError, match=message):
        load_dataset(manifest)


# ---------------------------------------------------------------------------------------------
# Detection and argument errors


def test_unknown_layout_names_what_was_looked_for(tmp_path: Path) -> None:
    touch(tmp_path, "videos/a.mp4")
    with pytest.raises(DatasetError) as error:
        detect_layout(tmp_path)
    message = str(error.value)
    for expected in (
        "original_sequences",
        "manipulated_sequences",
        "Celeb-real",
        "Celeb-synthesis",
        "metadata.json",
        "real/",
        "fake/",
        ".csv",
    ):
        assert expected in message
    with pytest.raises(DatasetError, match="no known dataset layout"):
        load_dataset(tmp_path)
    assert issubclass(DatasetError, ValueError)


def test_path_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    touch(tmp_path, "a.mp4")
    with pytest.raises(DatasetError, match="not a .csv"):
        detect_layout(tmp_path / "a.mp4")
    with pytest.raises(DatasetError, match="unknown layout 'kinetics'"):
        load_dataset(tmp_path, "kinetics")


def test_ffpp_filters_rejected_for_other_layouts(tmp_path: Path) -> None:
    touch(tmp_path, "real/a.mp4")
    with pytest.raises(DatasetError, match="FaceForensics"):
        load_dataset(tmp_path, quality="c23")


def test_explicit_layout_overrides_detection(tmp_path: Path) -> None:
    # Celeb-DF folders would win detection; asking for folders reads only real/ and fake/.
    touch(tmp_path, "Celeb-real/id0_0000.mp4", "real/a.mp4")
    assert detect_layout(tmp_path) == "celebdf"
    assert [item.path.name for item in load_dataset(tmp_path, "folders")] == ["a.mp4"]


def test_load_is_sorted_and_deterministic(tmp_path: Path) -> None:
    make_ffpp(tmp_path)
    first = load_dataset(tmp_path)
    assert [item.path for item in first] == sorted(item.path for item in first)
    assert load_dataset(tmp_path) == first


def test_video_item_validates() -> None:
    with pytest.raises(ValueError, match="label"):
        VideoItem(Path("a.mp4"), 2, "real", "a", None)
    with pytest.raises(ValueError, match="split"):
        VideoItem(Path("a.mp4"), 0, "real", "a", "holdout")


# ---------------------------------------------------------------------------------------------
# Splitting


def synthetic(n_sources: int, declared: dict[int, str] | None = None) -> list[VideoItem]:
    """``n_sources`` identities with 1-3 videos each; ``declared`` maps source index -> split."""
    declared = declared or {}
    items = []
    for s in range(n_sources):
        for v in range(1 + s % 3):
            path = Path(f"/data/s{s:03d}_{v}.mp4")
            items.append(VideoItem(path, v % 2, "g", f"src{s}", declared.get(s)))
    return items


def assert_sources_disjoint(parts: dict[str, list[VideoItem]]) -> None:
    owner: dict[str, str] = {}
    for name, items in parts.items():
        for item in items:
            assert owner.setdefault(item.source, name) == name, f"{item.source} leaks"


def test_split_items_sources_disjoint_and_ratios() -> None:
    items = synthetic(100)
    parts = split_items(items, seed=0)
    assert set(parts) == {"train", "val", "test"}
    assert_sources_disjoint(parts)
    assert sorted(i.path for p in parts.values() for i in p) == sorted(i.path for i in items)
    n_sources = {name: len({i.source for i in p}) for name, p in parts.items()}
    assert n_sources == {"train": 80, "val": 10, "test": 10}
    for p in parts.values():
        assert [i.path for i in p] == sorted(i.path for i in p)

    parts = split_items(items, ratios=(0.6, 0.2, 0.2), seed=1)
    n_sources = {name: len({i.source for i in p}) for name, p in parts.items()}
    assert n_sources == {"train": 60, "val": 20, "test": 20}


def test_split_items_deterministic_per_seed() -> None:
    items = synthetic(100)
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    a = split_items(items, seed=5)
    assert split_items(items, seed=5) == a
    assert split_items(shuffled, seed=5) == a  # input order does not matter
    assert split_items(items, seed=6) != a


def test_split_items_ignore_order_with_names_of_one_natural_key() -> None:
    """'1', '01' and '001' compare equal as numbers: their order in the input still does not
    change the split (a cache index and a sorted list must rebuild the same one)."""
    names = ["1", "01", "001", "2", "02", "3", "03", "4", "04", "5"]
    items = [
        VideoItem(Path(f"/data/{n}_{label}.mp4"), label, "g", n) for n in names for label in (0, 1)
    ]
    for seed in range(5):
        forward = split_items(items, ratios=(0.4, 0.3, 0.3), seed=seed)
        assert split_items(items[::-1], ratios=(0.4, 0.3, 0.3), seed=seed) == forward


def test_identity_keys_of_one_person_in_other_case_or_spacing_share_a_split(caplog) -> None:
    """'Alice', 'alice' and 'alice ' are one person (typed by hand): one split, a warning."""
    items = synthetic(30)
    people = ["Alice", "alice", " ALICE", "Bob", "bob"]
    items += [VideoItem(Path(f"/data/p{i}.mp4"), i % 2, "g", p) for i, p in enumerate(people)]
    caplog.set_level(logging.WARNING)
    for seed in range(6):
        parts = split_items(items, ratios=(0.4, 0.3, 0.3), seed=seed)
        where = {i.source: name for name, part in parts.items() for i in part}
        assert where["Alice"] == where["alice"] == where[" ALICE"]
        assert where["Bob"] == where["bob"]
    assert "[' ALICE', 'Alice', 'alice'] name one person" in caplog.text


def test_split_items_keeps_declared_splits() -> None:
    items = synthetic(50, declared={0: "test", 1: "test", 2: "val", 3: "train"})
    for seed in range(4):
        parts = split_items(items, ratios=(0.9, 0.1, 0.0), seed=seed)
        test_sources = {i.source for i in parts["test"]}
        assert test_sources == {"src0", "src1"}
        assert "src2" in {i.source for i in parts["val"]}
        assert "src3" in {i.source for i in parts["train"]}
        assert_sources_disjoint(parts)


def test_split_items_keeps_a_partly_declared_person_in_one_split() -> None:
    """A split list that names some of a person's videos (Celeb-DF's test list names
    videos, not people) takes that person's other videos along; one person declared in two
    splits is refused."""
    items = synthetic(30)
    src5 = [i for i in items if i.source == "src5"]
    assert len(src5) == 3
    items = [replace(i, split="test") if i == src5[0] else i for i in items]
    for seed in range(4):
        parts = split_items(items, ratios=(0.8, 0.1, 0.1), seed=seed)
        assert_sources_disjoint(parts)
        assert {i.path for i in src5} <= {i.path for i in parts["test"]}
    items = [replace(i, split="val") if i == src5[1] else i for i in items]
    with pytest.raises(DatasetError, match="src5"):
        split_items(items, seed=0)


def test_split_items_small_sets_fill_every_asked_split() -> None:
    parts = split_items(synthetic(3), seed=0)
    assert {name: len({i.source for i in p}) for name, p in parts.items()} == {
        "train": 1,
        "val": 1,
        "test": 1,
    }


def test_split_items_rejects_bad_ratios() -> None:
    with pytest.raises(DatasetError):
        split_items(synthetic(5), ratios=(0.8, 0.2))
    with pytest.raises(DatasetError):
        split_items(synthetic(5), ratios=(1.0, -0.1, 0.1))


def test_kfold_each_source_held_out_once() -> None:
    items = synthetic(23)
    folds = kfold_items(items, 5, seed=0)
    assert len(folds) == 5
    held_counts: Counter[str] = Counter()
    for train, held in folds:
        train_sources = {i.source for i in train}
        held_sources = {i.source for i in held}
        assert not train_sources & held_sources
        assert sorted(i.path for i in train + held) == sorted(i.path for i in items)
        held_counts.update(held_sources)
    assert held_counts == Counter({f"src{s}": 1 for s in range(23)})
    sizes = [len(held) for _, held in folds]
    assert max(sizes) - min(sizes) <= 3  # balanced by items, within one source's size

    assert kfold_items(items, 5, seed=0) == folds
    assert kfold_items(items, 5, seed=1) != folds


def test_kfold_bad_k() -> None:
    with pytest.raises(DatasetError, match="k >= 2"):
        kfold_items(synthetic(5), 1)
    with pytest.raises(DatasetError, match="at least 6 sources"):
        kfold_items(synthetic(5), 6)


# ---------------------------------------------------------------------------------------------
# Stratified splits and their check


def folders_items(real: str, fake: str, clips: int = 2) -> list[VideoItem]:
    """The README's folders layout: one subfolder (identity) per letter, ``clips`` videos each."""
    return [
        VideoItem(Path(f"/data/{kind}/{person}/clip{c}.mp4"), label, kind, person)
        for kind, label, people in (("real", 0, real), ("fake", 1, fake))
        for person in people
        for c in range(clips)
    ]


def kinds(part: list[VideoItem]) -> set[str]:
    return {"fake" if item.label else "real" for item in part}


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.34, 0.33, 0.33), (0.6, 0.2, 0.2)])
def test_split_items_gives_every_split_real_and_fake(ratios: tuple[float, ...]) -> None:
    """Three real and three fake identities: each split gets one of each, whatever the seed
    (unstratified, the 80:10:10 split left validation without fakes)."""
    items = folders_items("abc", "xyz")
    for seed in range(10):
        parts = split_items(items, ratios=ratios, seed=seed)
        assert_sources_disjoint(parts)
        assert {name: kinds(part) for name, part in parts.items()} == {
            name: {"real", "fake"} for name in ("train", "val", "test")
        }
        check_splits(parts)


def test_split_items_spreads_each_kind_in_proportion() -> None:
    items = [VideoItem(Path(f"/data/real/r{i:02d}.mp4"), 0, "real", f"r{i:02d}") for i in range(50)]
    items += [
        VideoItem(Path(f"/data/fake/f{i:02d}.mp4"), 1, "fake", f"f{i:02d}") for i in range(20)
    ]
    for seed in range(5):
        parts = split_items(items, ratios=(0.6, 0.2, 0.2), seed=seed)
        for name, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
            for label, total in ((0, 50), (1, 20)):
                n = len({i.source for i in parts[name] if i.label == label})
                assert abs(n - share * total) <= 1, (seed, name, label, n)


def test_split_items_of_one_kind_is_a_plain_shuffle() -> None:
    """Real-only data (self-blending) splits as before stratification: the shuffled sources
    cut in order, so the splits of earlier runs and recipes stay the same."""
    sources = [f"id{i}" for i in range(20)]
    items = [VideoItem(Path(f"/data/{s}_{v}.mp4"), 0, "real", s) for s in sources for v in (0, 1)]
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(sorted(sources, key=natural))
        expected = {"train": order[:12], "val": order[12:16], "test": order[16:]}
        parts = split_items(items, ratios=(0.6, 0.2, 0.2), seed=seed)
        assert {n: {i.source for i in p} for n, p in parts.items()} == {
            n: set(s) for n, s in expected.items()
        }


def natural(text: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def test_split_items_gives_val_and_test_every_method(tmp_path: Path) -> None:
    """FaceForensics++: a method with few identities still reaches validation and test."""
    names = []
    for i in range(0, 40, 2):
        a, b = f"{i:03d}", f"{i + 1:03d}"
        names += [f"original_sequences/youtube/c23/videos/{a}.mp4"]
        names += [f"manipulated_sequences/Deepfakes/c23/videos/{a}_{b}.mp4"]
        if i < 6:  # NeuralTextures for three pairs only
            names += [f"manipulated_sequences/NeuralTextures/c23/videos/{a}_{b}.mp4"]
    touch(tmp_path, *names)
    items = load_dataset(tmp_path)
    for seed in range(8):
        parts = split_items(items, seed=seed)
        assert_sources_disjoint(parts)
        for name, part in parts.items():
            groups = {i.group for i in part}
            assert {"original/c23", "Deepfakes/c23", "NeuralTextures/c23"} <= groups, (seed, name)


def test_split_items_keeps_declared_splits_and_covers_the_rest() -> None:
    """A declared test list that holds only fakes stays as declared; the check names it."""
    items = folders_items("abcd", "wxyz")
    items = [
        VideoItem(i.path, i.label, i.group, i.source, "test" if i.source == "z" else None)
        for i in items
    ]
    parts = split_items(items, ratios=(0.5, 0.5, 0.0), seed=0)
    assert {i.source for i in parts["test"]} == {"z"}
    assert kinds(parts["train"]) == kinds(parts["val"]) == {"real", "fake"}
    with pytest.raises(SplitError, match="test split has no real videos") as error:
        check_splits(parts)
    assert (error.value.split, error.value.lacking) == ("test", "real")


def test_split_items_favours_training_then_validation_when_short() -> None:
    """Two real identities for three splits: train and val get one, test goes without, and
    the check says so with the identities the data has."""
    items = folders_items("ab", "xyz")
    for seed in range(6):
        parts = split_items(items, seed=seed)
        assert kinds(parts["train"]) == kinds(parts["val"]) == {"real", "fake"}
        assert kinds(parts["test"]) == {"fake"}
        with pytest.raises(SplitError) as error:
            check_splits(parts)
        message = str(error.value)
        assert message.startswith("the test split has no real videos (it holds 2 fake videos")
        assert "2 identities with real videos (a, b) for 3 splits" in message
        assert "\n" not in message
        check_splits(split_items(items, ratios=(0.9, 0.1, 0.0), seed=seed), test_required=False)


def test_check_splits_with_self_blended_fakes() -> None:
    """Real-only data: self-blending makes every split's fakes, so real videos suffice."""
    items = folders_items("abc", "")
    parts = split_items(items, seed=0)
    check_splits(parts, pseudo_fakes=True)
    with pytest.raises(SplitError, match="train split has no fake videos .*data has no fake"):
        check_splits(parts)
    with pytest.raises(SplitError, match="val split has no videos"):
        check_splits({"train": items, "val": [], "test": []}, pseudo_fakes=True)
    check_splits(
        {"train": items[:2], "val": items[2:], "test": []}, pseudo_fakes=True, test_required=False
    )
    with pytest.raises(SplitError, match="test split has no videos"):
        check_splits({"train": items[:2], "val": items[2:], "test": []}, pseudo_fakes=True)


def test_kfold_is_stratified() -> None:
    items = folders_items("abc", "xyz")
    for seed in range(5):
        folds = kfold_items(items, 3, seed=seed)
        assert all(kinds(held) == {"real", "fake"} for _, held in folds)
        folds = kfold_items(items, 4, seed=seed)  # six identities cannot fill four folds
        assert sorted(len({i.source for i in held}) for _, held in folds) == [1, 1, 2, 2]
    unbalanced = folders_items("abcdefgh", "xy")
    for _, held in kfold_items(unbalanced, 2, seed=0):
        assert kinds(held) == {"real", "fake"}


def test_kfold_keeps_spellings_of_one_person_in_one_fold() -> None:
    """'Alice' and 'alice' are one person in k-fold too: never trained on and held out."""
    from training.datasets import kfold_items

    items = synthetic(12)
    items += [
        VideoItem(Path(f"/data/al{i}.mp4"), i % 2, "g", p) for i, p in enumerate(["Alice", "alice"])
    ]
    for seed in range(4):
        for train, held in kfold_items(items, 3, seed=seed):
            trained = {i.source for i in train}
            assert not (
                {"Alice", "alice"} & trained and {"Alice", "alice"} & {i.source for i in held}
            )


def test_a_manifest_group_named_all_is_refused(tmp_path: Path) -> None:
    """'all' names every video in the reports: a group of that name is refused at load."""
    touch(tmp_path, "a.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,group\na.mp4,1,All\n")
    with pytest.raises(DatasetError, match="group 'all'"):
        load_dataset(manifest)
