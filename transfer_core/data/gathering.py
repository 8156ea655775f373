"""Several people's classes gathered into one new data set: a class's pictures are the pictures in the folder
of that name (whatever the set's layout: flat, train/ and val/, a wrapper folder), and classes of the same
name (`Cat`, `cat`) from different sets become one class. The sources are only read; nothing is ever
overwritten (a picture whose name is taken gets a number), and a stopped or failed gathering leaves no half
data set behind (it is built in a hidden folder, renamed at the end), as owncopies.own_copy does."""
from __future__ import annotations

import secrets
import shutil
import threading
from collections import Counter
from pathlib import Path

from transfer_core.core.i18n import N_
from transfer_core.data.classbuilder import (
    Progress,
    check_room,
    clean_class_name,
    data_files,
    free_name,
    write_info,
)
from transfer_core.data.datafiles import DatasetError
from transfer_core.data.imagecache import Stopped


def classed_pictures(folder: str | Path) -> list[tuple[Path, str]]:
    """(picture, its class) for every picture of a set: its class is the folder it is in, as a clean class
    name. Pictures outside any class folder (train/x.jpg, x.jpg) are not in a class."""
    found = []
    for path, parts in data_files(Path(folder).resolve()):
        if len(parts) < 2:
            continue
        try:
            found.append((path, clean_class_name(parts[-2])))
        except DatasetError:  # 'train', 'val', a name systems keep: not a class
            continue
    return found


def pictures_per_class(folder: str | Path) -> dict[str, int]:
    """How many pictures each class of a data set holds (found by listing: nothing is decoded)."""
    counts = Counter(cls for _, cls in classed_pictures(folder))
    return dict(sorted(counts.items(), key=lambda kv: kv[0].casefold()))


def gather_classes(sources: list[Path], sets_dir: str | Path, *, name: str, label: str,
                   progress: Progress | None = None, stop: threading.Event | None = None) -> Path:
    """Copy every class of every source set into one new set below `sets_dir`; returns its folder."""
    plan = _plan(sources)
    if not plan:
        raise DatasetError(N_("The chosen workspaces have no pictures in class folders yet: nothing to gather."))
    sets_dir = Path(sets_dir)
    sets_dir.mkdir(parents=True, exist_ok=True)
    check_room(sets_dir, None, sum(path.stat().st_size for path, _ in plan))
    partial = sets_dir / f".gathering-{secrets.token_hex(4)}"
    report = progress or (lambda *_: None)
    try:
        partial.mkdir()
        for i, (path, cls) in enumerate(plan):
            if stop is not None and stop.is_set():
                raise Stopped()
            folder = partial / cls
            folder.mkdir(exist_ok=True)
            shutil.copyfile(path, free_name(folder, path.name))
            if i % 50 == 0 or i + 1 == len(plan):
                report(i + 1, len(plan), "copying pictures")
        write_info(partial, {"label": label})
        final = free_name(sets_dir, clean_class_name(name))
        partial.rename(final)
        return final
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _plan(sources: list[Path]) -> list[tuple[Path, str]]:
    """(picture, class folder name) for every picture; the first spelling of a class name is kept."""
    spelling: dict[str, str] = {}
    return [(path, spelling.setdefault(cls.casefold(), cls)) for source in sources
            for path, cls in classed_pictures(source)]
