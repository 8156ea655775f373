"""A person's own copy of shared pictures (the demo, a server folder), and where a correction from Predict or
Live goes: into the person's own data set, after copying shared pictures once. The original is only read."""
from __future__ import annotations

import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from transfer_core.core.i18n import N_
from transfer_core.data import datarefs
from transfer_core.data.classbuilder import (
    SETS,
    Progress,
    check_room,
    clean_class_name,
    data_files,
    free_name,
    set_info,
    write_info,
)
from transfer_core.data.datafiles import DatasetError
from transfer_core.data.imagecache import Stopped


@dataclass(frozen=True)
class CorrectionTarget:
    """Where a correction from the Predict page goes: the person's own data set now, or after copying."""
    dataset: Path | None  # the person's own data set to add to; None until `copy_from` is copied
    copy_from: Path | None  # the shared pictures (demo, server folder) to copy into the workspace first
    source: str  # the run's data reference; a copy remembers it, so it is made once


def correction_target(data_ref: str, workspace_dir: str | Path, runs_dir: str | Path | None = None) -> CorrectionTarget:
    """Where corrections of a run trained on `data_ref` belong, for the person with this workspace."""
    real = Path(datarefs.resolve(data_ref, runs_dir)).resolve()
    workspace = Path(workspace_dir).resolve()
    if real == workspace or workspace in real.parents:
        return CorrectionTarget(real, None, data_ref)
    if not str(data_ref).startswith(("demo:", "shared:")):
        raise DatasetError(N_("This run learned from someone else's pictures ({value}), which stay theirs. Corrections "
                              "go into your own pictures: train a run on them first.").format(
                                  value=datarefs.label(data_ref)))
    existing = find_own_copy(workspace / SETS, data_ref)
    return CorrectionTarget(existing, None if existing else real, data_ref)


def find_own_copy(sets_dir: str | Path, source: str) -> Path | None:
    """The person's copy of the data `source` (a data reference), if they made one."""
    sets_dir = Path(sets_dir)
    if not sets_dir.is_dir():
        return None
    return next((d for d in sorted(sets_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")
                 and set_info(d).get("copied_from") == source), None)


def own_copy(source_dir: str | Path, sets_dir: str | Path, *, name: str, label: str, source: str,
             progress: Progress | None = None, stop: threading.Event | None = None) -> Path:
    """Copy the pictures of `source_dir` (its layout kept) into a new set below `sets_dir`; returns it.

    The copy is made in a hidden folder and renamed at the end, so a stopped or failed copy never shows
    up as a half data set; the original is only read."""
    src, sets_dir = Path(source_dir).resolve(), Path(sets_dir)
    sets_dir.mkdir(parents=True, exist_ok=True)
    if sets_dir.resolve() == src or src in sets_dir.resolve().parents:
        raise DatasetError(N_("A data set cannot be copied into itself."))
    files = data_files(src)
    check_room(sets_dir, None, sum(path.stat().st_size for path, _ in files))
    partial = sets_dir / f".copying-{secrets.token_hex(4)}"
    try:
        _copy_files(files, partial, progress or (lambda *_: None), stop)
        write_info(partial, {"label": label, "copied_from": source})
        final = free_name(sets_dir, clean_class_name(name))
        partial.rename(final)
        return final
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _copy_files(files: list[tuple[Path, tuple[str, ...]]], dest: Path, progress: Progress,
                stop: threading.Event | None) -> None:
    dest.mkdir()
    for i, (path, parts) in enumerate(files):
        if stop is not None and stop.is_set():
            raise Stopped()
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if i % 50 == 0 or i + 1 == len(files):
            progress(i + 1, len(files), "copying pictures")
