"""Checking each picture of a scan: it opens, is not too small or too large, and what its contents' hash is.

A file checked before and unchanged since is not opened again (scancache.py): the Data page's scan, the
data check's and training's read each picture once between them.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transfer_core.core.i18n import N_
from transfer_core.data import scancache
from transfer_core.data.datafiles import BadImage, _human, load_rgb
from transfer_core.data.nearcopies import thumbprint

if TYPE_CHECKING:
    from PIL import Image

PROGRESS_EVERY = 64  # files opened between two progress reports


@dataclass(frozen=True)
class CheckedImage:
    path: Path
    reason: str | None  # None: usable
    digest: str = ""  # of the file's bytes, for finding identical copies
    thumbprint: bytes = b""  # the picture in 8 x 8 greys, for finding near-copies (nearcopies.py)


# Given each picture a check decodes and finds usable, with its digest: training's scan hands them to the
# decoded-picture store (imagecache.StoreKeeper), so a new picture is decoded once per run, not twice.
Keep = Callable[[str, "Image.Image"], None]


def check_image(path: Path, min_side: int, max_bytes: int, keep: Keep | None = None) -> CheckedImage:
    """Decode one file fully, so a damaged picture is reported now rather than failing an epoch later."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return CheckedImage(path, N_("file too large ({size}; at most {most})").format(
                size=_human(size), most=_human(max_bytes)))
        data = path.read_bytes()
        image = load_rgb(io.BytesIO(data))
        width, height = image.size
    except BadImage as exc:
        return CheckedImage(path, str(exc))
    except OSError as exc:
        return CheckedImage(path, N_("cannot be read ({why})").format(why=exc.strerror or type(exc).__name__))
    if min(width, height) < min_side:
        return CheckedImage(path, N_("image too small ({width}x{height} px; at least {min}x{min})").format(
            width=width, height=height, min=min_side))
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if keep is not None:
        keep(digest, image)
    return CheckedImage(path, None, digest, thumbprint(image))


def check_images(paths: Sequence[Path], min_side: int, max_bytes: int,
                 progress: Callable[[int, int], None] | None = None, keep: Keep | None = None) -> list[CheckedImage]:
    """check_image of each file, in the input order, opening only those not checked before as they are now.
    progress(done, n) as files are opened (it may raise to stop); keep: see Keep."""
    keys = [scancache.file_key(p, (min_side, max_bytes)) for p in paths]
    found = {i: CheckedImage(paths[i], *answer) for i, answer in scancache.recall(keys).items()}
    missing = [i for i in range(len(paths)) if i not in found]
    found.update(zip(missing, _check_all([paths[i] for i in missing], min_side, max_bytes, progress, keep)))
    # Kept as (reason, digest, thumbprint), the path being in the key. A file that could not be read may be
    # readable in a moment (a network share coming back): not remembered.
    scancache.remember({keys[i]: (found[i].reason, found[i].digest, found[i].thumbprint) for i in missing
                        if keys[i] is not None and _settled(found[i])})
    return [found[i] for i in range(len(paths))]


def _settled(checked: CheckedImage) -> bool:
    return checked.reason is None or not checked.reason.startswith("cannot be read")


def _check_all(paths: Sequence[Path], min_side: int, max_bytes: int,
               progress: Callable[[int, int], None] | None = None, keep: Keep | None = None) -> list[CheckedImage]:
    """Decode every file once, in threads (Pillow releases the GIL while decoding); keeps the input order."""
    if not paths:
        return []
    workers = max(1, min(8, 2 * (os.cpu_count() or 1), len(paths)))
    checked = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for checked_image in pool.map(lambda p: check_image(p, min_side, max_bytes, keep), paths, chunksize=16):
                checked.append(checked_image)
                if progress is not None and (len(checked) % PROGRESS_EVERY == 0 or len(checked) == len(paths)):
                    progress(len(checked), len(paths))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # stopped: the files not opened yet are not opened
            raise
    return checked
