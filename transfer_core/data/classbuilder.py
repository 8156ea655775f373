"""Making a data set by hand: classes a person names, filled one upload or photo at a time, and corrections
from the Predict page added to the person's own copy of the data.

A data set here is a folder of class folders (the layout uploads use) in the person's workspace. Names come
from people and pictures from anywhere, so a class or picture is only ever found among the folder's own
entries (a hostile name matches none), every new path is checked to lie inside the data set, and the shared
demo pictures and server folders are refused for writing: a person changes only their own copy.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from PIL import Image

from transfer_core.core.i18n import N_
from transfer_core.data import datarefs
from transfer_core.data.datafiles import (
    IMAGE_EXTENSIONS,
    DatasetError,
    _ignored,
    _inside,
    _safe_parts,
)
from transfer_core.data.datasets import (
    TRAIN_FOLDER_NAMES,
    VAL_FOLDER_NAMES,
    _entries,
    _split_folders,
    _unwrap,
    demo_dataset_path,
)
from transfer_core.data.imagechecks import check_image

SETS = "sets"  # a workspace's own data sets: workspace/sets/<name>/<class>/<picture>
SET_FILE = ".set.json"  # the set's label and what it was copied from; hidden, so scans and zips skip it
MAX_NAME_CHARS = 60
MIN_SIDE = 16  # scan_dataset's default: a smaller picture would be skipped when training
MAX_PICTURE_BYTES = 50 * 2 ** 20
# A class and a person's sets are capped, so one tab left recording bursts (or a script) cannot fill the
# server's disk. 2,000 per class leaves room above the demo's largest class (1,000) in a copy of it.
MAX_CLASS_PICTURES = 2_000
MAX_SETS_BYTES = 2 * 2 ** 30  # all of one workspace's own sets together (workspace/sets/)
# Path separators, control characters, and what Windows refuses in a name (a zip of the set opens anywhere).
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_SPLIT_NAMES = frozenset(TRAIN_FOLDER_NAMES + VAL_FOLDER_NAMES)
_WINDOWS_DEVICES = frozenset({"con", "prn", "aux", "nul"} | {f"{d}{i}" for d in ("com", "lpt") for i in range(1, 10)})
_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}

Progress = Callable[[int, int, str], None]


# ---------------------------------------------------------------------------------------------- names
def clean_class_name(name: str) -> str:
    """The folder name for a class a person typed: any language, one line, no path in it.

    Separators and control characters become spaces and leading dots go ('../etc' -> 'etc'), so a name can
    never reach outside the data set nor hide; empty, reserved and system names are refused in words."""
    text = " ".join(_UNSAFE.sub(" ", unicodedata.normalize("NFC", str(name))).split())
    text = text.strip(". ")[:MAX_NAME_CHARS].rstrip(". ")  # Windows drops trailing dots and spaces anyway
    if not text:
        raise DatasetError(N_("A class needs a name with at least one letter or digit (for example 'cat' or '猫')."))
    if text.casefold() in _SPLIT_NAMES:
        raise DatasetError(N_("'{text}' cannot be a class name: a folder of that name is read as the training or "
                              "validation part of a data set. Choose another name, e.g. 'my {text}'.").format(
                                  text=text))
    if _ignored(text) or text.casefold() in _WINDOWS_DEVICES:
        raise DatasetError(N_("'{text}' is a name computers keep for themselves. Choose another class name.").format(
            text=text))
    return text


def _key(name: str) -> str:
    """What makes two names the same class: 'Cat', 'cat' and 'ｃａｔ' would be one folder on some systems."""
    return unicodedata.normalize("NFKC", name).casefold()


def _new_name(parent: Path, name: str, keep: Path | None = None) -> str:
    clean = clean_class_name(name)
    taken = {_key(d.name): d.name for d in _class_folders(parent) if d != keep}
    if _key(clean) in taken:
        raise DatasetError(N_("There is already a class '{value}'. Choose a different name.").format(
            value=taken[_key(clean)]))
    return clean


# ---------------------------------------------------------------------------------------------- where things are
def _writable_root(dataset_dir: str | Path) -> Path:
    """The data set's real folder, if a person may change it: never the shared demo, and never a server
    folder unless the folder is inside the workspaces (a server that shares its workspaces folder)."""
    root = Path(dataset_dir).resolve()
    if not root.is_dir():
        raise DatasetError(N_("This data set no longer exists. Choose your pictures again on the Data page."))
    own = datarefs.workspaces_root() in root.parents
    if any(_overlaps(root, d) for d in _demo()) or (not own and any(_overlaps(root, s) for s in datarefs.data_roots())):
        raise DatasetError(N_("These pictures are shared by everyone and are never changed. Make your own copy to "
                              "change them (correcting an answer on the Predict page makes one)."))
    return root


def _demo() -> list[Path]:
    try:
        return [demo_dataset_path().resolve()]
    except DatasetError:
        return []


def _overlaps(a: Path, b: Path) -> bool:
    """One folder is the other or holds it: changing `a` could change `b`."""
    return a == b or b in a.parents or a in b.parents


def _class_parent(root: Path) -> Path:
    """The folder that holds the class folders, as scanning sees it (wrappers stepped into, train/ chosen)."""
    inner = _unwrap(root)
    splits = _split_folders(inner)
    return splits[0] if splits else inner


def _class_folders(parent: Path) -> list[Path]:
    return [d for d in _entries(parent) if d.is_dir() and not d.is_symlink()]


def class_dir(dataset_dir: str | Path, class_name: str) -> Path:
    """The existing folder of `class_name` in the data set (found among its folders, never built from the name)."""
    root = Path(dataset_dir).resolve()
    wanted = unicodedata.normalize("NFC", str(class_name))
    found = [d for d in _class_folders(_class_parent(root)) if unicodedata.normalize("NFC", d.name) == wanted]
    if not found or _inside(root, found[0].relative_to(root).parts) is None:
        raise DatasetError(N_("There is no class '{class_name}' in this data set. Make it first, or choose one of its "
                              "classes.").format(class_name=class_name))
    return found[0]


def _picture(folder: Path, picture: str) -> Path:
    found = [p for p in folder.iterdir() if p.name == picture and p.is_file() and not p.is_symlink()]
    if not found or _ignored(picture):
        raise DatasetError(N_("There is no picture '{picture}' in '{name}' (any more).").format(
            picture=picture, name=folder.name))
    return found[0]


def free_name(folder: Path, name: str) -> Path:
    """`name` in `folder`, with a number added while it is taken: nothing is ever overwritten."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = folder / name, 1
    while candidate.exists() or candidate.is_symlink():
        candidate, n = folder / f"{stem}-{n}{suffix}", n + 1
    if _inside(folder.resolve(), (candidate.name,)) is None:
        raise DatasetError(N_("'{name}' cannot be written inside this data set.").format(name=name))
    return candidate


# ---------------------------------------------------------------------------------------------- classes
def ensure_set(sets_dir: str | Path, name: str, label: str) -> Path:
    """The person's own data set `name` below their sets folder, made empty the first time."""
    folder = Path(sets_dir) / clean_class_name(name)
    if not (folder / SET_FILE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_info(folder, {"label": label})
    return folder


def set_info(dataset_dir: str | Path) -> dict:
    """What the set says about itself: {"label": ..., "copied_from": data reference} (empty when nothing)."""
    try:
        info = json.loads((Path(dataset_dir) / SET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def write_info(folder: Path, info: dict) -> None:
    (folder / SET_FILE).write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")


def list_classes(dataset_dir: str | Path) -> dict[str, list[str]]:
    """Class name -> its pictures' file names, both sorted (only picture files; hidden ones left out)."""
    parent = _class_parent(Path(dataset_dir).resolve())
    return {unicodedata.normalize("NFC", d.name): sorted(p.name for p in _entries(d) if _is_picture(p))
            for d in sorted(_class_folders(parent), key=lambda d: _key(d.name))}


def _is_picture(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.is_symlink()


def create_class(dataset_dir: str | Path, name: str) -> str:
    """Make an empty class folder; returns the name it got (see clean_class_name)."""
    parent = _class_parent(_writable_root(dataset_dir))
    clean = _new_name(parent, name)
    (parent / clean).mkdir()
    return clean


def rename_class(dataset_dir: str | Path, old: str, new: str) -> str:
    """Give a class a new name (its pictures move with it); returns the name it got."""
    folder = class_dir(_writable_root(dataset_dir), old)
    clean = _new_name(folder.parent, new, keep=folder)
    folder.rename(folder.parent / clean)
    return clean


def delete_class(dataset_dir: str | Path, name: str) -> int:
    """Remove a class and its pictures; returns how many pictures went with it."""
    folder = class_dir(_writable_root(dataset_dir), name)
    count = sum(1 for p in folder.iterdir() if _is_picture(p))
    shutil.rmtree(folder)
    return count


# ---------------------------------------------------------------------------------------------- pictures
def add_picture(dataset_dir: str | Path, class_name: str, data: bytes, name: str = "picture.jpg") -> Path:
    """Add one picture (its bytes, from an upload or the camera) to a class; returns where it was saved.

    The bytes are decoded in full first, as scanning would: a damaged or unusable picture is refused in
    words instead of being skipped later at training. A full class or a full workspace is refused in words
    too (MAX_CLASS_PICTURES, MAX_SETS_BYTES)."""
    root = _writable_root(dataset_dir)
    folder = class_dir(root, class_name)
    check_room(_space(root), folder, len(data))
    return save_picture(folder, data, name)


def _space(root: Path) -> Path:
    """The folder whose size the workspace cap counts: all the person's sets, or this data set alone."""
    return root.parent if root.parent.name == SETS else root


def _bytes_under(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def check_room(space: Path, folder: Path | None, adding_bytes: int, adding_pictures: int = 1) -> None:
    """Refuse in words what would take the class `folder` past MAX_CLASS_PICTURES, or the person's sets
    (`space`, see _space) past MAX_SETS_BYTES."""
    if folder is not None:
        held = sum(1 for p in _entries(folder) if _is_picture(p))
        if held + adding_pictures > MAX_CLASS_PICTURES:
            raise DatasetError(N_("'{name}' already holds {held:,} pictures, the most one class can hold here "
                                  "({most:,}). Remove some it does not need, or make another class.").format(
                                      name=folder.name, held=held, most=MAX_CLASS_PICTURES))
    used = _bytes_under(space)
    if used + adding_bytes > MAX_SETS_BYTES:
        raise DatasetError(N_("Your pictures already take {value:,.0f} MB of the {most} your workspace may hold, so "
                              "nothing more was added. Remove pictures or classes you no longer need (download a set "
                              "as .zip first to keep it).").format(value=used / 2 ** 20, most=_size(MAX_SETS_BYTES)))


def _size(n: int) -> str:
    return f"{n / 2 ** 30:g} GB" if n >= 2 ** 30 else f"{n / 2 ** 20:g} MB"


def save_picture(folder: Path, data: bytes, name: str) -> Path:
    """add_picture's checks and writing, into any folder already known to be the person's own."""
    shown = Path(str(name).replace("\\", "/")).name or "The picture"
    if len(data) > MAX_PICTURE_BYTES:
        raise DatasetError(N_("'{shown}' was not added: it is larger than {value} MB.").format(
            shown=shown, value=MAX_PICTURE_BYTES // 2 ** 20))
    trial = folder / f".adding-{secrets.token_hex(4)}"  # hidden: never seen by a scan while it is checked
    try:
        trial.write_bytes(data)
        reason = check_image(trial, MIN_SIDE, MAX_PICTURE_BYTES).reason
        if reason is not None:
            raise DatasetError(N_("'{shown}' was not added: {reason}.").format(shown=shown, reason=reason))
        target = free_name(folder, _picture_name(shown, trial))
        trial.rename(target)
        return target
    finally:
        trial.unlink(missing_ok=True)


def _picture_name(name: str, saved: Path) -> str:
    stem = " ".join(_UNSAFE.sub(" ", unicodedata.normalize("NFC", Path(name).stem)).split()).strip(". ")[:80]
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:  # "camera photo", "image.heic.bin": named by what the bytes are
        with Image.open(saved) as im:
            suffix = _FORMAT_SUFFIX.get(im.format or "", ".png")
    return (stem or "picture") + suffix


def remove_picture(dataset_dir: str | Path, class_name: str, picture: str) -> None:
    """Delete one picture of a class (the person's own set: nothing shared is ever touched)."""
    _picture(class_dir(_writable_root(dataset_dir), class_name), picture).unlink()


def move_picture(dataset_dir: str | Path, class_name: str, picture: str, to_class: str) -> Path:
    """Move one picture to another class of the same data set; returns its new path."""
    root = _writable_root(dataset_dir)
    source, target = class_dir(root, class_name), class_dir(root, to_class)
    if source == target:
        raise DatasetError(N_("'{picture}' is already in '{to_class}'.").format(picture=picture, to_class=to_class))
    src = _picture(source, picture)
    check_room(_space(root), target, 0)
    dest = free_name(target, src.name)
    src.rename(dest)
    return dest


# ---------------------------------------------------------------------------------------------- zip
def write_zip(dataset_dir: str | Path, out: IO[bytes]) -> int:
    """The set as a zip (<set>/<class>/<picture>, stored: pictures hardly compress); returns the pictures."""
    root = Path(dataset_dir).resolve()
    files = data_files(root)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for path, parts in files:
            zf.write(path, "/".join((root.name, *parts)))
    return len(files)


def zip_bytes(dataset_dir: str | Path) -> bytes:
    buffer = io.BytesIO()
    write_zip(dataset_dir, buffer)
    return buffer.getvalue()


def data_files(root: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """Every picture below `root` with its parts there; links and hidden or system files left out, so a link
    in a shared folder can never carry a file from elsewhere on the server into a copy or a zip."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d) and not (folder / d).is_symlink())
        for name in sorted(filenames):
            parts = _safe_parts((folder / name).relative_to(root).as_posix())
            if parts is not None and _is_picture(folder / name):
                found.append((folder / name, parts))
    return found
