"""Find labelled videos in the dataset layouts people keep on disk, and split them.

Five layouts are understood: FaceForensics++ (``ffpp``), Celeb-DF v2 (``celebdf``), the DFDC
Kaggle parts (``dfdc``), plain ``real/`` + ``fake/`` folders (``folders``) and a CSV manifest
(``manifest``). Every video becomes a :class:`VideoItem` whose ``source`` is an identity key:
splitting by source keeps a face from showing up both in training and in evaluation, which is
what inflates deepfake benchmarks when it leaks. The key is only as good as the layout's
names: DFDC's metadata names no actors, so its key is the source video (a fake goes with its
original, but one actor's several source videos can fall into different splits), and a
manifest's ``source`` column is whatever its author wrote (the same person under two keys
leaks as surely). Nothing is decoded here; only names are read.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanner.video import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

LAYOUTS = ("ffpp", "celebdf", "dfdc", "folders", "manifest")
SPLITS = ("train", "val", "test")
FFPP_QUALITIES = ("c0", "c23", "c40", "raw")
PAPER_RATIOS = (0.8, 0.1, 0.1)  # Su et al. 2021 split 80:10:10

REAL, FAKE = 0, 1
LABEL_NAMES = {REAL: "real", FAKE: "fake"}

_CELEBDF_FOLDERS = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}
_CELEBDF_TEST_LIST = "List_of_testing_videos.txt"
_FFPP_PAIR = re.compile(r"^(\d+)_(\d+)$")  # 953_974: target 953, face from 974
_DFD_FAKE = re.compile(r"^(\d+)_(\d+)__")  # 01_02__exit_phone_room__YVGY8LOK
_DFD_REAL = re.compile(r"^(\d+)__")  # 01__exit_phone_room
_CELEB_ID = re.compile(r"^id\d+$")
_MANIFEST_COLUMNS = ("path", "label", "group", "source", "split")
_MANIFEST_LABELS = {"0": REAL, "1": FAKE, "real": REAL, "fake": FAKE}
_EXAMPLES = 3  # how many skipped names a warning quotes


class DatasetError(ValueError):
    """A dataset that cannot be read as asked: unknown layout, bad metadata, nothing found."""


@dataclass(frozen=True)
class VideoItem:
    """One labelled video."""

    path: Path
    label: int  # 0 = real (pristine), 1 = fake
    group: str  # what per-group metrics are reported by, e.g. "Deepfakes/c23"
    source: str  # identity key; items sharing it always land in the same split
    split: str | None = None  # "train" | "val" | "test" when the layout itself says

    def __post_init__(self) -> None:
        if self.label not in (REAL, FAKE):
            raise ValueError(f"label must be 0 (real) or 1 (fake), got {self.label!r}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {self.split!r}")


# ---------------------------------------------------------------------------------------------
# Layout detection


def detect_layout(root: Path) -> str:
    """Name the layout of ``root`` (a dataset folder, or a ``.csv`` manifest)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset path does not exist: {root}")
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "manifest"
        raise DatasetError(
            f"{root} is a file but not a .csv manifest (header path,label[,group][,source][,split])"
        )
    if (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir():
        return "ffpp"
    if any((root / name).is_dir() for name in _CELEBDF_FOLDERS):
        return "celebdf"
    if _dfdc_parts(root):
        return "dfdc"
    if _label_folders(root):
        return "folders"
    raise DatasetError(
        f"no known dataset layout in {root}; looked for: "
        "ffpp: original_sequences/ or manipulated_sequences/ (FaceForensics++); "
        f"celebdf: {', '.join(f'{n}/' for n in _CELEBDF_FOLDERS)} (Celeb-DF v2); "
        "dfdc: metadata.json in the folder or in its part subfolders (DFDC); "
        "folders: real/ and/or fake/ subfolders (any case); "
        "manifest: a .csv file with header path,label[,group][,source][,split]"
    )


def load_dataset(
    root: Path,
    layout: str = "auto",
    *,
    quality: str | None = None,
    methods: Sequence[str] | None = None,
) -> list[VideoItem]:
    """Every labelled video under ``root``, sorted by path.

    ``quality`` (c0/c23/c40/raw) and ``methods`` (manipulation folder names, any case) filter
    FaceForensics++ only; real videos are kept whatever ``methods`` says.
    """
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; expected 'auto' or one of {LAYOUTS}")
    elif not root.exists():
        raise DatasetError(f"dataset path does not exist: {root}")
    if layout != "ffpp" and (quality is not None or methods is not None):
        raise DatasetError(f"quality and methods filter FaceForensics++ only, not {layout!r}")

    if layout == "ffpp":
        items = _load_ffpp(root, quality, methods)
    elif layout == "celebdf":
        items = _load_celebdf(root)
    elif layout == "dfdc":
        items = _load_dfdc(root)
    elif layout == "folders":
        items = _load_folders(root)
    else:
        items = _load_manifest(root)

    if not items:
        raise DatasetError(f"no videos found in {root} (layout {layout!r})")
    items.sort(key=lambda item: item.path)
    log.info("%s: %d videos (%s layout)", root, len(items), layout)
    return items


# ---------------------------------------------------------------------------------------------
# Splitting


def split_items(
    items: Iterable[VideoItem],
    *,
    ratios: Sequence[float] = PAPER_RATIOS,
    seed: int = 0,
) -> dict[str, list[VideoItem]]:
    """Train/val/test lists. Declared splits are kept, with every other video of the same
    source (a source declared in two splits is a DatasetError); the rest is split by whole
    sources.

    Undeclared items are spread over all three splits by ``ratios``, counted in sources. To keep
    an official test set (Celeb-DF's list) the only test data, pass a zero test ratio.

    The split is stratified: sources are grouped by what they hold (real videos, fake videos,
    and with several manipulation methods each method), and every group is spread over the
    splits in proportion. Then every split with a positive ratio is given at least one source
    with real videos, one with fake videos and, where the data allows, one of each
    manipulation method, by taking a source from a split that holds several (swapped for a
    source the receiving split can spare, so the counts stay, or else moved). Data of one kind
    (real videos only) splits exactly as an unstratified split would. Whether the result can
    train, calibrate and test is :func:`check_splits`'s question.
    """
    weights = _check_ratios(ratios, len(SPLITS))
    items = list(items)
    person = person_keys(item.source for item in items)
    out: dict[str, list[VideoItem]] = {name: [] for name in SPLITS}
    by_source: dict[str, list[VideoItem]] = defaultdict(list)
    declared_of: dict[str, set[str]] = defaultdict(set)  # source -> splits declared for it
    for item in items:
        if item.split is not None:
            out[item.split].append(item)
            declared_of[person[item.source]].add(item.split)
        else:
            by_source[person[item.source]].append(item)
    # A person is in one split only: declared in two, an error; the undeclared videos of a
    # person with declared ones go where those are.
    for source, declared in declared_of.items():
        if len(declared) > 1:
            raise DatasetError(
                f"source {source!r} is declared in several splits ({', '.join(sorted(declared))})"
                ": a person's videos must stay in one split"
            )
        out[next(iter(declared))].extend(by_source.pop(source, []))

    sources = _shuffled(by_source, seed)
    methods = _methods_matter(items)
    tags = _source_tags(by_source, methods)
    order = _stratified_order(sources, tags, seed)
    counts = _apportion(len(sources), weights)
    assigned: list[list[str]] = []
    start = 0
    for count in counts:
        assigned.append(order[start : start + count])
        start += count
    declared = [_tags_of(out[name], methods) for name in SPLITS]
    rank = {source: i for i, source in enumerate(sources)}
    _cover(assigned, declared, tags, [w > 0 for w in weights], counts, by_source, rank)
    for name, part in zip(SPLITS, assigned):
        for source in part:
            out[name].extend(by_source[source])
    for name in SPLITS:
        out[name].sort(key=lambda item: item.path)
    return out


def kfold_items(
    items: Iterable[VideoItem], k: int, seed: int = 0
) -> list[tuple[list[VideoItem], list[VideoItem]]]:
    """``k`` (train, held-out) folds; every source is held out exactly once.

    Declared splits are ignored: cross-validation uses all items. Folds are stratified like
    :func:`split_items`: a source goes to a fold that lacks what it holds (real videos, fake
    videos, a manipulation method) while one does, else to the fold with the fewest items, since
    sources differ in size (an FF++ identity has one real and many fakes).
    """
    items = list(items)
    person = person_keys(item.source for item in items)
    by_source: dict[str, list[VideoItem]] = defaultdict(list)
    for item in items:
        by_source[person[item.source]].append(item)
    if k < 2:
        raise DatasetError(f"k-fold needs k >= 2, got {k}")
    if k > len(by_source):
        raise DatasetError(f"k-fold with k={k} needs at least {k} sources, got {len(by_source)}")

    # Shuffle first so equal sources fall to folds by seed; then the sources of the rarest
    # tags, largest first (stable: ties keep the shuffle).
    sources = _shuffled(by_source, seed)
    tags = _source_tags(by_source, _methods_matter(items))
    carriers = Counter(t for source in sources for t in tags[source])
    sources.sort(key=lambda s: (min((carriers[t] for t in tags[s]), default=0), -len(by_source[s])))
    folds: list[list[VideoItem]] = [[] for _ in range(k)]
    fold_tags: list[set[str]] = [set() for _ in range(k)]
    for source in sources:
        best = min(range(k), key=lambda i: (-len(tags[source] - fold_tags[i]), len(folds[i]), i))
        folds[best].extend(by_source[source])
        fold_tags[best] |= tags[source]

    result = []
    for i, held_out in enumerate(folds):
        train = [item for j, fold in enumerate(folds) if j != i for item in fold]
        result.append((sorted(train, key=lambda x: x.path), sorted(held_out, key=lambda x: x.path)))
    return result


class SplitError(DatasetError):
    """A split that cannot serve its purpose: empty, or without real or without fake videos.

    ``split`` names it (train, val, test), ``lacking`` says what it lacks: "real", "fake" or
    "videos" (empty).
    """

    def __init__(self, message: str, split: str, lacking: str) -> None:
        super().__init__(message)
        self.split = split
        self.lacking = lacking


def check_splits(
    splits: dict[str, Sequence[VideoItem]],
    *,
    pseudo_fakes: bool = False,
    test_required: bool = True,
) -> None:
    """Raise :class:`SplitError` unless the splits can train, calibrate and test a detector.

    Training needs real and fake videos; calibration (val) needs real videos, to hold the
    false-positive rate, and fake videos; a test split is only worth its name with both.
    ``pseudo_fakes``: fakes are self-blended from real videos in every split, so real videos
    suffice. ``test_required=False`` lets the test split be empty (no test wanted); a test split
    that has videos must still hold both classes. The message names the split, what it lacks
    and how many identities of that class the data has for how many splits.
    """
    wanted = ["real"] if pseudo_fakes else ["real", "fake"]
    owners: dict[str, set[str]] = {name: set() for name in LABEL_NAMES.values()}
    for part in splits.values():
        for item in part:
            owners[LABEL_NAMES[item.label]].add(item.source)
    needing = [n for n in SPLITS if n != "test" or test_required or splits.get("test")]
    for name in needing:
        part = list(splits.get(name, []))
        if not part:
            total = len(set().union(*owners.values()))
            raise SplitError(
                f"the {name} split has no videos ({_identities(total)} in all for "
                f"{len(needing)} splits: {', '.join(needing)})",
                name,
                "videos",
            )
        present = {LABEL_NAMES[item.label] for item in part}
        for kind in wanted:
            if kind in present:
                continue
            have = sorted(owners[kind], key=_natural_key)
            if have:
                examples = ", ".join(have[:_EXAMPLES]) + (", ..." if len(have) > _EXAMPLES else "")
                supply = f"the data has {_identities(len(have))} with {kind} videos ({examples})"
            else:
                supply = f"the data has no {kind} videos"
            raise SplitError(
                f"the {name} split has no {kind} videos (it holds {_describe(part)}); {supply} "
                f"for {len(needing)} splits that need them: {', '.join(needing)}",
                name,
                kind,
            )


def _identities(n: int) -> str:
    return f"{n} identit{'y' if n == 1 else 'ies'}"


def _describe(part: Sequence[VideoItem]) -> str:
    counts = Counter(LABEL_NAMES[item.label] for item in part)
    videos = " and ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    return f"{videos} video{'s' if len(part) != 1 else ''} of " + _identities(
        len({item.source for item in part})
    )


def _methods_matter(items: Sequence[VideoItem]) -> bool:
    """Whether manipulation methods are coverage targets: the fakes come in several groups."""
    return len({item.group for item in items if item.label == FAKE}) > 1


def _tags_of(items: Iterable[VideoItem], methods: bool) -> set[str]:
    """What a source holds, as coverage targets: "real", "fake", "fake:<group>" per method."""
    tags = set()
    for item in items:
        tags.add(LABEL_NAMES[item.label])
        if methods and item.label == FAKE:
            tags.add(f"fake:{item.group}")
    return tags


def _source_tags(by_source: dict[str, list[VideoItem]], methods: bool) -> dict[str, frozenset[str]]:
    return {source: frozenset(_tags_of(part, methods)) for source, part in by_source.items()}


def _stratified_order(sources: list[str], tags: dict[str, frozenset[str]], seed: int) -> list[str]:
    """``sources`` (shuffled) reordered so that each stratum is spread evenly over the order.

    The j-th of a stratum's n sources sits at (j + u) / n with u uniform in [0, 1) per stratum
    (systematic sampling with a random start), so cutting the order into consecutive pieces
    gives every piece its proportional share of every stratum, up to one. A single stratum
    keeps the shuffled order.
    """
    strata: dict[frozenset[str], list[str]] = defaultdict(list)
    for source in sources:
        strata[tags[source]].append(source)
    if len(strata) < 2:
        return list(sources)
    rng = np.random.default_rng([seed, len(strata)])
    position: dict[str, tuple[float, int]] = {}
    for rank, members in enumerate(strata.values()):
        offset = rng.random()
        for j, source in enumerate(members):
            position[source] = ((j + offset) / len(members), rank)
    return sorted(sources, key=lambda source: position[source])


def _cover(
    assigned: list[list[str]],
    declared: list[set[str]],
    tags: dict[str, frozenset[str]],
    open_splits: list[bool],
    counts: list[int],
    by_source: dict[str, list[VideoItem]],
    rank: dict[str, int],
) -> None:
    """Give every open split a source of each tag, from a split that can spare one.

    Tags are taken real and fake first, then methods from the rarest; splits in order train,
    val, test, which is also their priority (training needs both classes, then calibration,
    then testing). A source is taken from the split with most sources of the tag if that split
    keeps what it has (its classes; for a method, its methods too), else from a split of lower
    priority even if it holds the only one.
    The receiving split hands back a source it can spare, if it grew past its count, so that
    the counts stay as the ratios made them where they can.
    """

    def carriers(i: int, tag: str) -> int:
        return sum(tag in tags[s] for s in assigned[i]) + (tag in declared[i])

    def keeps(i: int, source: str, kept: Iterable[str]) -> bool:
        # split i keeps each of ``kept`` that it has when ``source`` leaves it
        return all(carriers(i, t) > 1 for t in tags[source] if t in kept)

    def cheapest(candidates: list[str]) -> str:
        return min(candidates, key=lambda s: (len(tags[s]), len(by_source[s]), rank[s]))

    def take(i: int, tag: str, kept: set[str]) -> None:
        others = sorted(
            (j for j in range(len(assigned)) if j != i and carriers(j, tag)),
            key=lambda j: (-carriers(j, tag), -len(assigned[j]), j),
        )
        for lose_tag in (False, True):
            for j in others:
                if lose_tag and j < i:
                    continue  # never at the cost of a split that matters more
                keep = kept - {tag} if lose_tag else kept
                movable = [s for s in assigned[j] if tag in tags[s] and keeps(j, s, keep)]
                if not movable:
                    continue
                source = cheapest(movable)
                assigned[j].remove(source)
                assigned[i].append(source)
                if len(assigned[i]) > counts[i]:
                    back = [s for s in assigned[i] if s != source and keeps(i, s, kept)]
                    if back:
                        returned = cheapest(back)
                        assigned[i].remove(returned)
                        assigned[j].append(returned)
                return

    every = Counter(t for part in assigned for s in part for t in tags[s])
    classes = [t for t in LABEL_NAMES.values() if t in every]
    methods = sorted((t for t in every if t not in classes), key=lambda t: (every[t], t))
    for tag in classes + methods:
        # Covering a class never costs a split a class; methods count once classes are done.
        kept = set(classes) if tag in classes else set(every)
        for i, is_open in enumerate(open_splits):
            if is_open and not carriers(i, tag):
                take(i, tag, kept)


def _check_ratios(ratios: Sequence[float], n: int) -> np.ndarray:
    weights = np.asarray(ratios, dtype=float)
    if weights.shape != (n,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise DatasetError(f"ratios must be {n} non-negative numbers, got {tuple(ratios)}")
    if weights.sum() <= 0:
        raise DatasetError(f"ratios must not all be zero, got {tuple(ratios)}")
    return weights / weights.sum()


def person_keys(sources: Iterable[str]) -> dict[str, str]:
    """Each source key -> the key of its person: keys that differ only in letter case or
    spacing ("Alice", "alice ", "ALICE") are one person, named by the first of them in
    natural order, with a warning (typed by hand, they would put a person in two splits)."""
    spellings: dict[str, set[str]] = defaultdict(set)
    for source in sources:
        spellings[" ".join(source.split()).casefold()].add(source)
    person = {}
    for names in spellings.values():
        ordered = sorted(names, key=_name_order)
        if len(ordered) > 1:
            log.warning("identity keys %s name one person, kept in one split", ordered)
        person.update(dict.fromkeys(ordered, ordered[0]))
    return person


def _shuffled(by_source: dict[str, list[VideoItem]], seed: int) -> list[str]:
    # Sorting before the permutation makes the result independent of input order.
    ordered = sorted(by_source, key=_name_order)
    rng = np.random.default_rng(seed)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def _apportion(n: int, weights: np.ndarray) -> list[int]:
    """Split ``n`` into counts proportional to ``weights`` (largest remainder method)."""
    exact = weights * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    # A split asked for (weight > 0) should not come out empty just from rounding.
    for i in np.flatnonzero((weights > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return [int(c) for c in counts]


# ---------------------------------------------------------------------------------------------
# FaceForensics++


def _load_ffpp(root: Path, quality: str | None, methods: Sequence[str] | None) -> list[VideoItem]:
    if quality is not None and quality not in FFPP_QUALITIES:
        raise DatasetError(f"unknown FaceForensics++ quality {quality!r}; use {FFPP_QUALITIES}")
    qualities = FFPP_QUALITIES if quality is None else (quality,)

    originals = root / "original_sequences"
    manipulated = root / "manipulated_sequences"
    method_dirs = _subdirs(manipulated)
    if methods is not None:
        wanted = {m.lower() for m in methods}
        available = {d.name.lower() for d in method_dirs}
        if unknown := sorted(m for m in methods if m.lower() not in available):
            raise DatasetError(
                f"unknown FaceForensics++ methods {unknown}; found "
                f"{sorted(d.name for d in method_dirs)} in {manipulated}"
            )
        method_dirs = [d for d in method_dirs if d.name.lower() in wanted]

    # (path, label, group, identity nodes); nodes are (namespace, id) so that YouTube ids and
    # DeepFakeDetection actor ids never merge.
    found: list[tuple[Path, int, str, list[tuple[str, str]]]] = []
    for dataset_dir in _subdirs(originals):
        namespace = dataset_dir.name
        prefix = "original" if namespace == "youtube" else namespace
        for q, video in _ffpp_videos(dataset_dir, qualities):
            found.append((video, REAL, f"{prefix}/{q}", _ffpp_real_nodes(video.stem, namespace)))
    for method_dir in method_dirs:
        for q, video in _ffpp_videos(method_dir, qualities):
            nodes = _ffpp_fake_nodes(video.stem)
            found.append((video, FAKE, f"{method_dir.name}/{q}", nodes))

    components = _UnionFind()
    for path, _, _, nodes in found:
        if not nodes:  # a name we cannot parse is its own identity
            nodes.append(("file", str(path.relative_to(root))))
        components.add(nodes)

    id_split = _ffpp_split_files(root)
    component_split: dict[tuple[str, str], str] = {}
    for node in components.nodes():
        split = id_split.get(node[1]) if node[0] == "youtube" else None
        if split is None:
            continue
        rep = components.representative(node)
        other = component_split.setdefault(rep, split)
        if other != split:
            raise DatasetError(
                f"FaceForensics++ split files put ids paired with {_source_key(rep)} in both "
                f"{other!r} and {split!r}; a fake pair must sit in one split"
            )

    items = []
    for path, label, group, nodes in found:
        rep = components.representative(nodes[0])
        items.append(VideoItem(path, label, group, _source_key(rep), component_split.get(rep)))
    return items


def _ffpp_videos(folder: Path, qualities: Sequence[str]) -> Iterable[tuple[str, Path]]:
    for q in qualities:
        # Only the quality folders: methods also hold masks/videos/, which are not faces.
        yield from ((q, video) for video in _videos_in(folder / q / "videos"))


def _ffpp_real_nodes(stem: str, namespace: str) -> list[tuple[str, str]]:
    if namespace == "youtube" and stem.isdigit():
        return [("youtube", stem)]
    if match := _DFD_REAL.match(stem):
        return [("actors", match.group(1))]
    return []


def _ffpp_fake_nodes(stem: str) -> list[tuple[str, str]]:
    if match := _FFPP_PAIR.match(stem):
        return [("youtube", match.group(1)), ("youtube", match.group(2))]
    if match := _DFD_FAKE.match(stem):
        return [("actors", match.group(1)), ("actors", match.group(2))]
    return []


def _source_key(node: tuple[str, str]) -> str:
    namespace, ident = node
    return ident if namespace in ("youtube", "celeb", "stem") else f"{namespace}/{ident}"


def _ffpp_split_files(root: Path) -> dict[str, str]:
    """Video id -> split from the official ``train/val/test.json`` pair lists, if present."""
    for folder in (root / "splits", root):
        files = {name: folder / f"{name}.json" for name in SPLITS}
        files = {name: path for name, path in files.items() if path.is_file()}
        if files:
            break
    else:
        return {}

    id_split: dict[str, str] = {}
    for split, path in files.items():
        pairs = _read_json(path)
        if not isinstance(pairs, list):
            raise DatasetError(f'{path}: expected a JSON list of id pairs like ["953", "974"]')
        for pair in pairs:
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, str) for i in pair)
            ):
                raise DatasetError(f"{path}: expected pairs of string ids, got {pair!r}")
            for ident in pair:
                other = id_split.setdefault(ident, split)
                if other != split:
                    raise DatasetError(f"id {ident!r} is in both {other}.json and {split}.json")
    log.info("FaceForensics++ official splits from %s", sorted(str(p) for p in files.values()))
    return id_split


# ---------------------------------------------------------------------------------------------
# Celeb-DF v2


def _load_celebdf(root: Path) -> list[VideoItem]:
    found: dict[Path, tuple[int, str]] = {}  # path -> (label, group)
    for folder, label in _CELEBDF_FOLDERS.items():
        for video in _videos_in(root / folder):
            found[video] = (label, folder)

    # Celeb ids: id0_0000 is a real of id0; id0_id16_0000 is id0's video with id16's face.
    components = _UnionFind()
    nodes: dict[Path, list[tuple[str, str]]] = {}
    for video, (_, folder) in found.items():
        tokens = video.stem.split("_")
        ids = [t for t in tokens if _CELEB_ID.match(t)] if folder != "YouTube-real" else []
        nodes[video] = [("celeb", t) for t in ids] or [("stem", video.stem)]
        components.add(nodes[video])

    test = _celebdf_test_list(root, found)
    return [
        VideoItem(
            video,
            label,
            group,
            _source_key(components.representative(nodes[video][0])),
            "test" if video in test else None,
        )
        for video, (label, group) in found.items()
    ]


def _celebdf_test_list(root: Path, found: dict[Path, tuple[int, str]]) -> set[Path]:
    path = root / _CELEBDF_TEST_LIST
    if not path.is_file():
        return set()
    test: set[Path] = set()
    missing: list[str] = []
    mislabelled: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetError(f"{path}, line {number}: expected '<1|0> <path>', got {line!r}")
        video = root / parts[1].strip()
        if video not in found:
            missing.append(parts[1].strip())
            continue
        test.add(video)
        # The list's own convention is inverted: 1 = real, 0 = fake.
        if (REAL if parts[0] == "1" else FAKE) != found[video][0]:
            mislabelled.append(parts[1].strip())
    _warn_skipped(missing, f"listed in {path} but not found among the Celeb-DF videos")
    if mislabelled:
        log.warning(
            "%d videos in %s carry a label that disagrees with their folder; the folder wins "
            "(e.g. %s)",
            len(mislabelled),
            path,
            ", ".join(mislabelled[:_EXAMPLES]),
        )
    return test


# ---------------------------------------------------------------------------------------------
# DFDC


def _dfdc_parts(root: Path) -> list[Path]:
    if (root / "metadata.json").is_file():
        return [root]
    return [d for d in _subdirs(root) if (d / "metadata.json").is_file()]


def _load_dfdc(root: Path) -> list[VideoItem]:
    parts = _dfdc_parts(root)
    if not parts:
        raise DatasetError(f"no metadata.json in {root} or its subfolders (DFDC layout)")
    entries: list[tuple[Path, int, str, str, str | None]] = []
    for part in parts:
        metadata_path = part / "metadata.json"
        metadata = _read_json(metadata_path)
        if not isinstance(metadata, dict):
            raise DatasetError(f"{metadata_path}: expected an object mapping file name -> info")
        missing = []
        for name, info in sorted(metadata.items()):
            tag = str(info.get("label", "")).upper() if isinstance(info, dict) else ""
            if tag not in ("REAL", "FAKE"):
                raise DatasetError(
                    f'{metadata_path}: entry {name!r} needs "label": "REAL" or "FAKE"'
                )
            video = part / name
            if not video.is_file():
                missing.append(name)
                continue
            label = FAKE if tag == "FAKE" else REAL
            original = info.get("original")
            source = Path(original).stem if label == FAKE and original else video.stem
            split = info.get("split")
            entries.append((video, label, part.name, source, split if split else None))
        _warn_skipped(missing, f"listed in {metadata_path} but missing on disk")

    # Every video of the Kaggle training parts says "train": that is the release it came from,
    # not a partition. Splits are honoured only when the metadata actually partitions the data.
    declared = {split for *_, split in entries}
    honour = len(declared - {None}) > 1
    if honour and (unknown := declared - set(SPLITS) - {None}):
        raise DatasetError(f"DFDC metadata uses splits {sorted(unknown)}; expected {SPLITS}")
    return [
        VideoItem(video, label, group, source, split if honour else None)
        for video, label, group, source, split in entries
    ]


# ---------------------------------------------------------------------------------------------
# real/ + fake/ folders


def _label_folders(root: Path) -> list[tuple[Path, int]]:
    labels = {"real": REAL, "fake": FAKE}
    return [(d, labels[d.name.lower()]) for d in _subdirs(root) if d.name.lower() in labels]


def _load_folders(root: Path) -> list[VideoItem]:
    items = []
    for folder, label in _label_folders(root):
        for video in _videos_under(folder):
            relative = video.relative_to(folder)
            # A subfolder per identity keeps that identity in one split.
            source = relative.parts[0] if len(relative.parts) > 1 else video.stem
            items.append(VideoItem(video, label, LABEL_NAMES[label], source))
    return items


# ---------------------------------------------------------------------------------------------
# CSV manifest


def _load_manifest(path: Path) -> list[VideoItem]:
    if not path.is_file():
        raise DatasetError(f"manifest must be a .csv file, got {path}")
    items = []
    seen: dict[Path, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a BOM
        reader = csv.reader(handle)
        header = [h.strip().lower() for h in next(reader, [])]
        if "path" not in header or "label" not in header:
            raise DatasetError(
                f"{path}, line 1: header must name path and label "
                f"(path,label[,group][,source][,split]), got {','.join(header)!r}"
            )
        # Unknown columns are rejected: a typo like 'sorce' would otherwise silently drop
        # the identity key and let identities leak across splits.
        if extra := [h for h in header if h not in _MANIFEST_COLUMNS]:
            raise DatasetError(
                f"{path}, line 1: unknown columns {extra}; allowed: {', '.join(_MANIFEST_COLUMNS)}"
            )
        if len(set(header)) != len(header):
            raise DatasetError(f"{path}, line 1: repeated column in header {header}")
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            item = _manifest_item(path, number, header, row)
            where = item.path.resolve()  # a/../b.mp4 and b.mp4 are one video
            if where in seen:
                raise DatasetError(
                    f"{path}, line {number}: {item.path} already listed on line {seen[where]}"
                )
            seen[where] = number
            items.append(item)
    return items


def _manifest_item(path: Path, number: int, header: list[str], row: list[str]) -> VideoItem:
    where = f"{path}, line {number}"
    if len(row) != len(header):
        raise DatasetError(f"{where}: expected {len(header)} fields, got {len(row)}")
    fields = {name: cell.strip() for name, cell in zip(header, row)}
    if not fields["path"]:
        raise DatasetError(f"{where}: empty path")
    video = Path(fields["path"])
    if not video.is_absolute():
        video = path.parent / video
    if video.suffix.lower() not in VIDEO_EXTENSIONS:
        raise DatasetError(f"{where}: {video.name} does not have a video extension")
    if not video.is_file():
        raise DatasetError(f"{where}: video not found: {video}")
    label = _MANIFEST_LABELS.get(fields["label"].lower())
    if label is None:
        raise DatasetError(f"{where}: label must be 0/1 or real/fake, got {fields['label']!r}")
    split = fields.get("split", "").lower() or None
    if split is not None and split not in SPLITS:
        raise DatasetError(f"{where}: split must be one of {SPLITS} or empty, got {split!r}")
    if fields.get("group", "").lower() == "all":
        raise DatasetError(f"{where}: group 'all' names every video in the reports: rename it")
    return VideoItem(
        video,
        label,
        fields.get("group") or LABEL_NAMES[label],
        fields.get("source") or video.stem,
        split,
    )


# ---------------------------------------------------------------------------------------------
# Helpers


class _UnionFind:
    """Connected identities; a component is named by its naturally smallest member."""

    def __init__(self) -> None:
        self._parent: dict[Hashable, Any] = {}

    def add(self, nodes: Sequence[tuple[str, str]]) -> None:
        for node in nodes:
            self._parent.setdefault(node, node)
        for node in nodes[1:]:
            a, b = self._root(nodes[0]), self._root(node)
            if a != b:
                # The smaller node becomes the root, so the root is the component's minimum.
                lo, hi = sorted((a, b), key=_node_key)
                self._parent[hi] = lo

    def nodes(self) -> list[Any]:
        return list(self._parent)

    def representative(self, node: Any) -> Any:
        return self._root(node)

    def _root(self, node: Any) -> Any:
        root = node
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[node] != root:  # path compression
            self._parent[node], node = root, self._parent[node]
        return root


def _natural_key(text: str) -> tuple[Any, ...]:
    # id2 < id10, and zero-padded FF++ ids still compare as numbers.
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _name_order(text: str) -> tuple[Any, ...]:
    """Natural order, names it ties ("1" and "01") ordered by their text."""
    return (_natural_key(text), text)


def _node_key(node: tuple[str, str]) -> tuple[Any, ...]:
    return (node[0], _natural_key(node[1]), node[1])


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _is_video(path: Path) -> bool:
    # Dot files include macOS "._name.mp4" resource forks, which copy along on external drives.
    return (
        path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".") and path.is_file()
    )


def _videos_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _is_video(p))


def _videos_under(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if _is_video(p) and not any(s.startswith(".") for s in p.relative_to(folder).parts)
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _warn_skipped(names: list[str], why: str) -> None:
    if names:
        log.warning("skipped %d videos %s (e.g. %s)", len(names), why, ", ".join(names[:_EXAMPLES]))
