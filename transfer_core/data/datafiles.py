"""Files of a data set: reading one picture safely (upright 8-bit RGB, or a plain reason why not), and
the small helpers for names and sizes that scanning and uploads share."""
from __future__ import annotations

import errno
import io
import os
import re
from pathlib import Path
from typing import IO, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from transfer_core.core.i18n import N_

# Reasons are kept in English where they are made (N_): they are cached, compared and saved with scans; the
# app shows them in each person's language (i18n.retranslate).

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                              ".ppm", ".pgm", ".pbm", ".pnm"})
_UNSUPPORTED = {".heic": N_("HEIC photos are not supported: convert them to JPEG"),
                ".heif": N_("HEIF photos are not supported: convert them to JPEG")}
MAX_PIXELS = 80_000_000  # ~ 9000 x 9000; larger files are almost always mistakes or attacks, and eat GBs of RAM
_IGNORED = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DatasetError(ValueError):
    """The data cannot be used as given; the message says what to change."""


class BadImage(ValueError):
    """One file cannot be used as an image; the message is the reason, in plain words."""


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
        raise BadImage(N_("not an image")) from None
    except MemoryError:
        raise
    except Exception as exc:  # Pillow's plugins raise many types (SyntaxError, struct.error, ...) on bad data
        raise BadImage(N_("file is damaged or cut short")) from exc


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
        raise BadImage(N_("image too large ({size} megapixels; at most {most})").format(
            size=f"{width * height / 1e6:.0f}", most=f"{MAX_PIXELS / 1e6:.0f}"))


def _too_large_reason(exc: Exception) -> str:
    numbers = re.findall(r"\d+", str(exc))
    if not numbers:
        return N_("image too large (too many pixels; at most {most})").format(most=f"{MAX_PIXELS / 1e6:.0f}")
    return N_("image too large ({size} megapixels; at most {most})").format(
        size=f"{int(numbers[0]) / 1e6:.0f}", most=f"{MAX_PIXELS / 1e6:.0f}")


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
        raise BadImage(N_("unsupported colour format ({mode})").format(mode=im.mode)) from None


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
