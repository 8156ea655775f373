"""Pictures of a person's own set that have no class yet, waiting to be labelled (by hand or with help from
quality/labelling.py's suggestions).

They live in a hidden folder at the set's top: scanning, class lists and zips skip hidden folders, so a
picture without a class can never be trained on, nor be taken for a class called "unlabelled". Labelling
one moves it into a class folder (a move, not a copy: it leaves the pile).
"""
from __future__ import annotations

from pathlib import Path

from transfer_core.core.i18n import N_
from transfer_core.data.classbuilder import (
    _is_picture,
    _picture,
    _writable_root,
    class_dir,
    free_name,
    list_classes,
    save_picture,
)
from transfer_core.data.datafiles import DatasetError
from transfer_core.data.datasets import _entries

UNLABELLED = ".unlabelled"  # hidden on purpose: see the module's docstring


def unlabelled_dir(dataset_dir: str | Path) -> Path:
    """The set's pile of pictures without a class (made the first time)."""
    folder = _writable_root(dataset_dir) / UNLABELLED
    folder.mkdir(exist_ok=True)
    return folder


def list_unlabelled(dataset_dir: str | Path) -> list[Path]:
    """The pictures still waiting for a class, sorted by name (none when the pile was never made)."""
    folder = Path(dataset_dir).resolve() / UNLABELLED
    if not folder.is_dir() or folder.is_symlink():
        return []
    return [p for p in _entries(folder) if _is_picture(p)]


def add_unlabelled(dataset_dir: str | Path, data: bytes, name: str = "picture.jpg") -> Path:
    """Add one picture without a class; checked in full like any other picture (see classbuilder)."""
    return save_picture(unlabelled_dir(dataset_dir), data, name)


def label_picture(dataset_dir: str | Path, picture: str, class_name: str) -> Path:
    """Give a waiting picture its class: it moves into that class folder. Returns its new path."""
    root = _writable_root(dataset_dir)
    target = class_dir(root, class_name)
    source = _picture(unlabelled_dir(root), picture)
    dest = free_name(target, source.name)
    source.rename(dest)
    return dest


def labelled_pictures(dataset_dir: str | Path) -> dict[str, list[Path]]:
    """Class -> paths of its pictures: what a suggestion learns from."""
    root = Path(dataset_dir).resolve()
    return {name: [class_dir(root, name) / p for p in pictures] for name, pictures in list_classes(root).items()}


def ready_to_suggest(labelled: dict[str, list[Path]]) -> str | None:
    """Why suggestions cannot be made yet, in words; None when they can."""
    filled = [c for c, pictures in labelled.items() if pictures]
    if len(filled) >= 2:
        return None
    if len(labelled) < 2:
        return N_("Suggestions need at least two classes: make a second class first.")
    return (N_("Suggestions need at least one picture in each of two classes: give a class to a picture "
               "or two by hand first") + (N_(" (only '{value}' has pictures so far).").format(
                   value=filled[0]) if filled else "."))


def require_ready(labelled: dict[str, list[Path]]) -> None:
    reason = ready_to_suggest(labelled)
    if reason is not None:
        raise DatasetError(reason)
