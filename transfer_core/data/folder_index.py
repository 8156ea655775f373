"""A data folder's class folders and picture counts, kept between page redraws and re-listed only when a
folder below it changed.

Adding, removing or moving a file changes the time of the folder it happens in (on Linux, macOS and
Windows alike), so while every folder's time is what it was at the last listing, so are the files: a redraw
stats the folders (a few dozen for a class-per-folder set) and lists no file, however many pictures there
are. Times on disk come from a coarse clock (a few ms): a listing made within RACY_S of a folder's last
change is not trusted and is made again next time, so a change in that same tick is not missed (git's
"racy" entries). Listing only: no picture is opened here (the scan does that, as a task).
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from transfer_core.data.datasets import (
    DatasetError,
    _class_name,
    _entries,
    _ignored,
    _is_image_name,
    _split_folders,
    _unwrap,
)

RACY_S = 0.05  # well above the file clock's tick (1-10 ms)
_KEEP = 64  # folders remembered (the app's people pick a few each)


@dataclass(frozen=True)
class FolderCounts:
    """What a listing of the folder found."""
    pictures: dict[str, int]  # class -> picture-named files below its folder (as class_folders picks them)
    files: int  # every file below the folder, pictures or not
    latest: float  # the newest folder time (s): with `files`, changes whenever a file is added, removed or moved
    stamps: tuple[tuple[str, int], ...] = field(repr=False, default=())  # each folder's mtime_ns at the listing

    @property
    def class_folders(self) -> tuple[str, ...]:
        return tuple(sorted(name for name, n in self.pictures.items() if n))


_known: OrderedDict[str, tuple[FolderCounts, bool]] = OrderedDict()  # folder -> (counts, trusted)
_lock = threading.Lock()


def folder_counts(source: str | Path) -> FolderCounts | None:
    """The folder's counts, listed again only when one of its folders changed; None for a .zip, a missing
    path or a folder that cannot be read."""
    key = str(source)
    with _lock:
        known = _known.get(key)
    if known is not None and known[1] and all(_mtime_ns(d) == t for d, t in known[0].stamps):
        with _lock:
            _known.move_to_end(key)
        return known[0]
    started = time.time_ns()
    counts = _list(Path(source))
    if counts is None:
        return None
    trusted = all(started - t > RACY_S * 1e9 for _d, t in counts.stamps)
    with _lock:
        _known[key] = (counts, trusted)
        while len(_known) > _KEEP:
            _known.popitem(last=False)
    return counts


def class_folders(source: str | Path) -> tuple[str, ...] | None:
    """datasets.class_folders' answer, from the index: a page may ask on every redraw."""
    counts = folder_counts(source)
    return None if counts is None else counts.class_folders


def _list(path: Path) -> FolderCounts | None:
    if not path.is_dir():
        return None
    stamps, files, listed = [], 0, {}
    for dirpath, _dirs, names in os.walk(path):  # one walk: the stamps and every folder's file names
        stamps.append((dirpath, _mtime_ns(dirpath)))  # the time first: a change during the listing shows
        files += len(names)
        listed[dirpath] = names
    try:
        pictures = _pictures_per_class(path, listed)
    except DatasetError:
        return None
    return FolderCounts(pictures, files, max(t for _d, t in stamps) / 1e9, tuple(stamps))


def _pictures_per_class(path: Path, listed: dict[str, list[str]]) -> dict[str, int]:
    """As datasets.class_folders finds them (below a lone wrapping folder, in train/ when split), counted
    from the walk's names rather than a walk per class."""
    root = _unwrap(path)
    splits = _split_folders(root)
    parent = splits[0] if splits else root
    return {_class_name(d.name): _pictures_below(str(d), listed) for d in _entries(parent) if d.is_dir()}


def _pictures_below(folder: str, listed: dict[str, list[str]]) -> int:
    n = 0
    for dirpath, names in listed.items():
        inside = os.path.relpath(dirpath, folder)
        if inside == os.pardir or inside.startswith(os.pardir + os.sep):
            continue
        if inside != os.curdir and any(_ignored(part) for part in Path(inside).parts):
            continue
        n += sum(1 for name in names if not _ignored(name) and _is_image_name(Path(name)))
    return n


def _mtime_ns(folder: str) -> int:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return -1
