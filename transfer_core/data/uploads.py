"""Uploads and zips come from strangers: no name or size they declare is trusted. Unpacked safely, within
limits (ZipLimits), never outside their own folder."""
from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Sequence

from transfer_core.core.i18n import N_
from transfer_core.data.datafiles import (
    DatasetError,
    _human,
    _inside,
    _name_clash,
    _safe_parts,
)

_RATIO_FLOOR = 2 ** 20  # tiny files (blank masks, empty notes) compress enormously and harmlessly
_CHUNK = 2 ** 20


@dataclass(frozen=True)
class ZipLimits:
    max_files: int = 50_000
    max_total_bytes: int = 4 * 2 ** 30
    max_ratio: float = 200.0
    max_file_bytes: int = 200 * 2 ** 20


# ---------------------------------------------------------------------------------------------- zips/uploads
def _check_sizes(what: str, sizes: Sequence[tuple[str, int]], limits: ZipLimits) -> None:
    if len(sizes) > limits.max_files:
        raise DatasetError(N_("This {what} holds {n:,} files, more than the {max_files:,} limit. Split it into smaller "
                              "parts or leave out files you don't need.").format(
                                  what=what, n=len(sizes), max_files=limits.max_files))
    total = sum(size for _, size in sizes)
    if total > limits.max_total_bytes:
        verb = N_("would unpack to") if what == "zip" else N_("adds up to")
        raise DatasetError(N_("This {what} {verb} {value}, more than the {value2} limit. Use fewer or smaller images.").format(what=what, verb=verb, value=_human(total), value2=_human(limits.max_total_bytes)))
    for name, size in sizes:
        if size > limits.max_file_bytes:
            raise DatasetError(N_("'{name}' in this {what} is {value}, more than the {value2} limit for one file. Leave it "
                                  "out or make it smaller.").format(
                                      name=name, what=what, value=_human(size), value2=_human(limits.max_file_bytes)))


def _check_ratios(infos: Sequence[zipfile.ZipInfo], limits: ZipLimits) -> None:
    rows = [(i.filename, i.file_size, i.compress_size) for i in infos]
    rows.append((N_("the zip as a whole"), sum(r[1] for r in rows), sum(r[2] for r in rows)))
    for name, size, packed in rows:
        if size > _RATIO_FLOOR and size > limits.max_ratio * max(packed, 1):
            raise DatasetError(N_("{value} would grow {value2:,.0f} times when unpacked (the limit is {max_ratio:,.0f}). "
                                  "That looks like a zip bomb, so nothing was unpacked; a real image dataset hardly "
                                  "compresses.").format(
                                      value=name if name.startswith('the zip') else repr(name),
                                      value2=size / max(packed, 1), max_ratio=limits.max_ratio))


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
            raise DatasetError(N_("This zip is password-protected. Unzip it yourself and upload the folder instead."))
        plan.append((info, parts))
    files = [info for info, _ in plan if not info.is_dir()]
    _check_sizes("zip", [(i.filename, i.file_size) for i in files], limits)
    _check_ratios(files, limits)
    return plan


def _damaged_zip(name: str) -> DatasetError:
    return DatasetError(N_("'{name}' is not a zip file or it is damaged. Make the zip again (e.g. right-click the "
                           "folder > Compress) and try once more.").format(name=name))


def safe_extract_zip(zip_path: str | Path, dest: str | Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Unpack `zip_path` below `dest` without ever writing outside it; returns `dest`.

    Unsafe entries (absolute, "..", drive letters, symlinks) and system litter are skipped. Limits are
    checked on the declared sizes first, then again on the bytes actually produced, because headers lie.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if not zip_path.is_file():
        raise DatasetError(N_("'{zip_path}' does not exist. Check the path or upload the zip again.").format(
            zip_path=zip_path))
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
                    raise DatasetError(N_("'{filename}' in '{zip_name}' holds more data than the zip declares or than the limits "
                                          "allow, so unpacking stopped. Make the zip again.").format(
                                              filename=info.filename, zip_name=zip_name))
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
        raise DatasetError(N_("This zip is {value}, more than the {value2} limit.").format(
            value=_human(len(data)), value2=_human(limits.max_total_bytes)))
    stem = (_safe_parts(Path(name.replace("\\", "/")).stem) or ("unzipped",))[-1]
    zip_path = dest / ".upload.zip"  # hidden, so a later scan of dest never lists it
    zip_path.write_bytes(data)
    try:
        return safe_extract_zip(zip_path, dest / stem, limits)
    finally:
        zip_path.unlink(missing_ok=True)
