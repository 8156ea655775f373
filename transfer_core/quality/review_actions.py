"""The data check's review actions: move a picture to another class, exclude it, undo either.

Files are moved, never deleted; the demo pictures (shared by everyone) are never changed.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from transfer_core.core.i18n import _
from transfer_core.data.classbuilder import free_name
from transfer_core.data.datasets import (
    TRAIN_FOLDER_NAMES,
    VAL_FOLDER_NAMES,
    DatasetError,
    demo_dataset_path,
)


@dataclass(frozen=True)
class FileMove:
    """One review action, enough to undo it."""
    kind: str  # "move" (to another class) or "exclude"
    source: str
    destination: str


def move_to_class(data_root: str | Path, image: str | Path, new_class: str) -> FileMove:
    """Move an image into the folder of another (existing) class, beside its current class folder.

    In a train/val layout it stays in its split (train/a/x.jpg -> train/b/x.jpg). Never overwrites:
    a name already taken gets a number added.
    """
    root, src = _writable_image(data_root, image)
    current = _class_dir(root, src)
    target_dir = current.parent / new_class
    if "/" in new_class or "\\" in new_class or new_class in ("", ".", "..") or not target_dir.is_dir():
        raise DatasetError(_("There is no class '{new_class}' next to '{name}'. Choose one of the existing classes.").format(new_class=new_class, name=current.name))
    if target_dir.resolve() == current.resolve():
        raise DatasetError(_("'{name}' is already in '{new_class}'.").format(name=src.name, new_class=new_class))
    return _move(src, target_dir, "move")


def exclude_image(data_root: str | Path, image: str | Path, excluded_dir: str | Path) -> FileMove:
    """Take an image out of the data set by moving it to `excluded_dir` (keeping its path inside the data
    set, e.g. excluded/train/cat/x.jpg), so it is out of training but never lost. Logged in excluded.jsonl."""
    root, src = _writable_image(data_root, image)
    excluded = Path(excluded_dir).resolve()
    if excluded == root or root in excluded.parents:
        raise DatasetError(_("The folder for excluded pictures must be outside the data folder, or they would still "
                             "be found as training images."))
    move = _move(src, excluded / src.parent.relative_to(root), "exclude")
    with open(excluded / "excluded.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps({**asdict(move), "time": time.time()}) + "\n")
    return move


def undo_move(move: FileMove) -> FileMove:
    """Put a moved or excluded image back where it was (under its old name when that is still free)."""
    src = Path(move.destination)
    if not src.is_file():
        raise DatasetError(_("'{name}' is no longer at {parent}, so it cannot be put back.").format(
            name=src.name, parent=src.parent))
    back = _move(src, Path(move.source).parent, "undo", name=Path(move.source).name)
    return back


def _writable_image(data_root: str | Path, image: str | Path) -> tuple[Path, Path]:
    root, src = Path(data_root).resolve(), Path(image).resolve()
    if root not in src.parents or not src.is_file():
        raise DatasetError(_("'{name}' is not a picture inside the data folder {name2}.").format(
            name=Path(image).name, name2=root.name))
    _class_dir(root, src)
    try:
        demo = demo_dataset_path().resolve()
    except DatasetError:
        demo = None
    if demo is not None and (root == demo or demo in root.parents or root in demo.parents):
        raise DatasetError(_("The demo pictures are shared by everyone and cannot be changed. Upload a copy of them "
                             "to review them."))
    return root, src


def _class_dir(root: Path, src: Path) -> Path:
    """The class folder an image belongs to: root/<class> or, in a train/val layout, root/<split>/<class>."""
    parts = src.relative_to(root).parts
    split = len(parts) >= 3 and parts[0].lower() in TRAIN_FOLDER_NAMES + VAL_FOLDER_NAMES
    if len(parts) < 2:
        raise DatasetError(_("'{name}' is not inside a class folder, so it has no class to change.").format(
            name=src.name))
    return root / parts[0] / parts[1] if split else root / parts[0]


def _move(src: Path, target_dir: Path, kind: str, name: str | None = None) -> FileMove:
    target_dir.mkdir(parents=True, exist_ok=True)
    dest = free_name(target_dir, name or src.name)
    shutil.move(str(src), str(dest))
    return FileMove(kind, str(src), str(dest))
