"""Find, check and split an image-classification dataset (class folders, or train/ and val/ folders).

Every image is decoded once while scanning, so a damaged file is reported here with its reason instead
of failing an epoch later; a file unchanged since an earlier scan in this process is not decoded again
(imagechecks.py, scancache.py). Reading one picture is datafiles.py's job, unpacking uploads uploads.py's,
the advice in words dataadvice.py's.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import tempfile
import unicodedata
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transfer_core.core.i18n import N_
from transfer_core.data.dataadvice import (  # noqa: F401
    FEW_IMAGES,
    IMBALANCE,
    _balance_warnings,
    _duplicate_warnings,
    _empty_warnings,
    _single_image_warnings,
    _split_gaps,
    together_notes,
)

# Re-exported: these lived here before the module was split, and callers import them from here.
from transfer_core.data.datafiles import (  # noqa: F401
    _CONTROL,
    _DRIVE,
    _IGNORED,
    _UNSUPPORTED,
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    BadImage,
    DatasetError,
    _check_pixels,
    _decode,
    _file_size,
    _high_depth_to_rgb,
    _human,
    _ignored,
    _inside,
    _name_clash,
    _names,
    _on_white,
    _rel,
    _remaining_bytes,
    _safe_parts,
    _to_rgb,
    _too_large_reason,
    _upright,
    load_rgb,
)
from transfer_core.data.imagechecks import CheckedImage, check_images
from transfer_core.data.nearcopies import deal as _deal
from transfer_core.data.nearcopies import groups_of as _groups_of
from transfer_core.data.uploads import (  # noqa: F401
    _CHUNK,
    _RATIO_FLOOR,
    ZipLimits,
    _check_ratios,
    _check_sizes,
    _copy_member,
    _damaged_zip,
    _extract_member,
    _is_symlink,
    _plan_zip,
    _write_zip_upload,
    safe_extract_zip,
    write_uploads,
)

LAYOUT_CLASSES = "class folders"
LAYOUT_SPLITS = "train/val folders"
# From this many pictures in every class, a test share is kept apart (DatasetReport.test).
TEST_MIN_PER_CLASS = 50
TRAIN_FOLDER_NAMES = ("train", "training")
VAL_FOLDER_NAMES = ("val", "valid", "validation", "test", "testing")  # first match wins: "val" beats "test"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    group: int = -1  # pictures of one group of near-copies share it (nearcopies.py); -1: not grouped


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to the dataset root, as shown to the user
    reason: str


@dataclass(frozen=True)
class DatasetReport:
    root: Path
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...]
    layout: str  # LAYOUT_CLASSES or LAYOUT_SPLITS
    # Held out from the validation share when every class has TEST_MIN_PER_CLASS pictures: nothing is tuned
    # on these (the validation pictures choose the best epoch and fit the confidence), so their figure is
    # the honest one.
    test: tuple[Sample, ...] = ()
    notes: tuple[str, ...] = ()  # what the split did that the person should know, not a problem (nearcopies.py)

    def counts(self) -> dict[str, dict[str, int]]:
        """class -> {"train": n, "val": n, "total": n}"""
        out = {c: {"train": 0, "val": 0, "test": 0, "total": 0} for c in self.classes}
        for split, samples in (("train", self.train), ("val", self.val), ("test", self.test)):
            for s in samples:
                row = out[self.classes[s.label]]
                row[split] += 1
                row["total"] += 1
        return out

    def fingerprint(self) -> str:
        """Identifies the data: changes when a file is added, removed, resized or relabelled."""
        rows = sorted((_rel(s.path, self.root), _file_size(s.path), s.label)
                      for s in self.train + self.val + self.test)
        digest = hashlib.sha256()
        for rel, size, label in rows:
            digest.update(f"{rel}\0{size}\0{label}\n".encode("utf-8", "replace"))
        return digest.hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"root": str(self.root), "layout": self.layout, "classes": list(self.classes),
                "counts": self.counts(), "num_train": len(self.train), "num_val": len(self.val),
                "num_test": len(self.test),
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "warnings": list(self.warnings), "notes": list(self.notes), "fingerprint": self.fingerprint()}


# ---------------------------------------------------------------------------------------------- finding files
def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not _ignored(p.name))
    except OSError as exc:
        raise DatasetError(N_("The folder '{folder}' cannot be read ({why}).").format(
            folder=folder, why=exc.strerror or exc)) from None


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _non_image_reason(path: Path) -> str:
    return _UNSUPPORTED.get(path.suffix.lower(), N_("not an image file"))


def _walk(folder: Path, root: Path) -> tuple[list[Path], list[Skipped]]:
    """Image files anywhere below `folder` (sorted), and the other files as skipped."""
    images, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if _ignored(name):
                continue
            if _is_image_name(path):
                images.append(path)
            else:
                skipped.append(Skipped(_rel(path, root), _non_image_reason(path)))
    return images, skipped


def _unwrap(folder: Path) -> Path:
    """Step into lone wrapping folders ("upload/data/cats" -> "upload/data"), as zips and uploads add them."""
    for _ in range(8):
        entries = _entries(folder)
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) != 1 or any(_is_image_name(e) for e in entries if not e.is_dir()):
            break
        if not any(e.is_dir() for e in _entries(dirs[0])):
            break  # a lone folder of pictures is a class (the only one), not a wrapper
        folder = dirs[0]
    return folder


def _split_folders(root: Path) -> tuple[Path, Path, list[str]] | None:
    """(train, val, notes) when `root` holds train/ and val/ (or valid/, test/...) folders."""
    dirs = {d.name.lower(): d for d in _entries(root) if d.is_dir()}
    train = next((dirs[n] for n in TRAIN_FOLDER_NAMES if n in dirs), None)
    val = next((dirs[n] for n in VAL_FOLDER_NAMES if n in dirs), None)
    if train is None or val is None:
        return None
    unused = sorted(d.name for d in dirs.values() if d not in (train, val))
    notes = [N_("Folder(s) {names} were not used: with '{train}' and '{val}' folders, "
                "only those two are read.").format(names=_names(unused), train=train.name, val=val.name)
             ] if unused else []
    return train, val, notes


def _resolve(source: str | Path, extract_to: str | Path | None, limits: ZipLimits) -> Path:
    if source is None or not str(source).strip():
        raise DatasetError(N_("No dataset chosen. Give a folder with one folder of images per class, or a .zip of it."))
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(N_("'{source}' does not exist. Check the path, or upload the folder again.").format(
            source=source))
    if path.is_dir():
        return path.absolute()
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return safe_extract_zip(path, _extract_dir(extract_to), limits).absolute()
    raise DatasetError(N_("'{source}' is a file, not a folder or a .zip. Choose the folder that holds one folder "
                          "of images per class.").format(source=source))


def _extract_dir(extract_to: str | Path | None) -> Path:
    if extract_to is None:
        return Path(tempfile.mkdtemp(prefix="transfer_studio_data_"))
    path = Path(extract_to)
    if path.is_dir() and any(path.iterdir()):
        return Path(tempfile.mkdtemp(prefix="unzipped_", dir=path))  # never mix with earlier contents
    return path


# ---------------------------------------------------------------------------------------------- scanning
@dataclass
class _Found:
    """Candidate images as (class, split, path), before decoding."""
    candidates: list[tuple[str, str, Path]]
    skipped: list[Skipped]
    class_names: set[str]


def _class_name(folder_name: str) -> str:
    # macOS writes accents decomposed; without this "café" from a Mac zip and from Windows are two classes.
    return unicodedata.normalize("NFC", folder_name)


def _gather(folder: Path, root: Path, split: str, found: _Found) -> None:
    for entry in _entries(folder):
        if entry.is_dir():
            name = _class_name(entry.name)
            found.class_names.add(name)
            images, skipped = _walk(entry, root)
            found.candidates += [(name, split, p) for p in images]
            found.skipped += skipped
        else:
            reason = NOT_IN_CLASS if _is_image_name(entry) else _non_image_reason(entry)
            found.skipped.append(Skipped(_rel(entry, root), reason))


def scan_dataset(source: str | Path, *, val_split: float = 0.2, seed: int = 0,
                 extract_to: str | Path | None = None, limits: ZipLimits = ZipLimits(),
                 min_side: int = 16, test_share: bool = True,
                 progress: Callable[[int, int], None] | None = None, keep=None) -> DatasetReport:
    """Find the classes and images of a folder (or .zip), check every image, split train/validation, and
    (test_share, every class with TEST_MIN_PER_CLASS pictures) half the validation share into a test share.
    progress(done, n) as the pictures are opened; it may raise to stop the scan. keep: imagechecks.Keep."""
    if not 0 <= val_split < 1:
        raise DatasetError(N_("The validation share must be between 0 and 1 (e.g. 0.2), not {value}.").format(
            value=val_split))
    root = _unwrap(_resolve(source, extract_to, limits))
    splits = _split_folders(root)
    found = _Found([], [], set())
    notes = []
    if splits:
        train_dir, val_dir, notes = splits
        _gather(train_dir, root, "train", found)
        _gather(val_dir, root, "val", found)
    else:
        _gather(root, root, "", found)
    checked = check_images([p for _, _, p in found.candidates], min_side, limits.max_file_bytes, progress, keep)
    usable: dict[str, dict[str, list[CheckedImage]]] = defaultdict(lambda: defaultdict(list))
    for (name, split, path), result in zip(found.candidates, checked):
        if result.reason is None:
            usable[name][split].append(result)
        else:
            found.skipped.append(Skipped(_rel(path, root), result.reason))
    skipped = tuple(sorted(found.skipped, key=lambda s: s.path))
    classes = tuple(sorted(usable))
    if len(classes) < 2:
        raise DatasetError(_too_few_classes(root, classes, found, skipped))
    labels = {name: i for i, name in enumerate(classes)}
    together = 0
    if splits:
        train, val = _as_given(usable, labels)
        test = []
        notes += _split_gaps(usable, classes, splits[0].name, splits[1].name)
    else:
        with_test = test_share and all(len(usable[c][""]) >= TEST_MIN_PER_CLASS for c in classes)
        train, val, test, together = _stratified(usable, labels, val_split, seed, with_test)
        notes += _single_image_warnings(usable, classes)
    warnings = notes + _empty_warnings(found.class_names - set(classes)) + _balance_warnings(usable, classes)
    warnings += _duplicate_warnings(usable, root)
    return DatasetReport(root=root, classes=classes, train=tuple(train), val=tuple(val), skipped=skipped,
                         warnings=tuple(warnings), layout=LAYOUT_SPLITS if splits else LAYOUT_CLASSES,
                         test=tuple(test), notes=tuple(together_notes(together)))


def class_folders(source: str | Path) -> tuple[str, ...] | None:
    """The class folders that hold at least one picture-named file, found by listing only (no decoding):
    cheap enough for a page to tell at once that a choice cannot train. None for a .zip or a missing path."""
    path = Path(source)
    if not path.is_dir():
        return None
    root = _unwrap(path)
    splits = _split_folders(root)
    parent = splits[0] if splits else root
    return tuple(sorted(_class_name(d.name) for d in _entries(parent) if d.is_dir() and _walk(d, root)[0]))


def _too_few_classes(root: Path, classes: Sequence[str], found: _Found, skipped: Sequence[Skipped]) -> str:
    hint = " " + _skipped_hint(skipped) if skipped else ""
    need = N_("Training needs at least two classes, each a folder of images, side by side (for example "
              "photos/good/ and photos/scratched/).")
    if len(classes) == 1:
        first = N_("Only one class found ('{name}'): add a second class folder beside it.").format(name=classes[0])
    elif not found.class_names and any(s.reason == NOT_IN_CLASS for s in skipped):
        first = N_("This folder holds images but no class folders.")
    else:
        first = N_("No class folder with usable images was found.")
    return f"{first} {need}{hint}"


NOT_IN_CLASS = N_("not inside a class folder")


def _skipped_hint(skipped: Sequence[Skipped]) -> str:
    return N_("{n} file(s) were skipped, e.g. '{path}': {reason}.").format(
        n=len(skipped), path=skipped[0].path, reason=skipped[0].reason)


def _sorted_paths(results: Sequence[CheckedImage]) -> list[Path]:
    return sorted(r.path for r in results)


def _as_given(usable, labels) -> tuple[list[Sample], list[Sample]]:
    train, val = [], []
    for name, label in labels.items():
        train += [Sample(p, label) for p in _sorted_paths(usable[name]["train"])]
        val += [Sample(p, label) for p in _sorted_paths(usable[name]["val"])]
    return train, val


def _stratified(usable, labels, val_split: float, seed: int,
                with_test: bool = False) -> tuple[list[Sample], list[Sample], list[Sample], int]:
    """Per class: about round(n * val_split) images held out, at least 1 and leaving at least 1 to train on;
    with a test share, the first half of them (in shuffled order) are test pictures, the rest validation.
    Near-copies (nearcopies.py) move as one group, so none is on two sides; the last value is how many
    groups of more than one picture were kept together."""
    train, val, test, together, first = [], [], [], 0, 0
    for name, label in labels.items():
        results = sorted(usable[name][""], key=lambda r: r.path)
        groups = _groups_of(results)
        together += sum(len(g) > 1 for g in groups)
        n = len(results)
        k = min(max(round(n * val_split), 1), n - 1) if n >= 2 else 0
        # Seeded per class, so adding images to one class leaves the others' split unchanged.
        random.Random(f"{seed}/{name}").shuffle(groups)
        t = k // 2 if with_test else 0  # the training pictures are the same with or without a test share
        number = {p: first + i for i, g in enumerate(groups) for p in g}  # one per group, over all classes
        first += len(groups)
        for side, out in zip(_deal(groups, t, k), (test, val, train)):
            out += [Sample(p, label, number[p]) for p in sorted(side)]
    return train, val, test, together


def scan_unlabelled(source: str | Path, *, extract_to: str | Path | None = None, limits: ZipLimits = ZipLimits(),
                    min_side: int = 16) -> tuple[list[Path], list[Skipped]]:
    """Every usable image anywhere below a folder (or .zip), sorted, and the files skipped with reasons."""
    root = _unwrap(_resolve(source, extract_to, limits))
    images, skipped = _walk(root, root)
    checked = check_images(images, min_side, limits.max_file_bytes)
    skipped += [Skipped(_rel(c.path, root), c.reason) for c in checked if c.reason is not None]
    usable = [c.path for c in checked if c.reason is None]
    if not usable:
        raise DatasetError(N_("No usable images were found in '{source}'. Choose a folder of images (.jpg, .png...).")
                           .format(source=source) + (" " + _skipped_hint(skipped) if skipped else ""))
    return usable, sorted(skipped, key=lambda s: s.path)


def demo_dataset_path() -> Path:
    """The bundled textile-defect images (classes global, local, nominal)."""
    spec = importlib.util.find_spec("conformal_clip_data")
    hint = N_("Install them with: pip install conformal-clip-data")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(N_("The demo images are not installed.") + " " + hint)
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "textile_images" / "simulated"
    if not path.is_dir():
        raise DatasetError(N_("The demo images are missing from the installed package ({path}).").format(path=path)
                           + " " + hint)
    return path
