"""Builders for tests/test_datasets.py: real textile copies, odd image files and hostile zips, made in tmp."""
from __future__ import annotations

import io
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import TEXTILE_CLASSES, textile_root
from PIL import Image


def real_jpgs(cls: str, n: int, offset: int = 0) -> list[Path]:
    return sorted((textile_root() / cls).glob("*.jpg"))[offset:offset + n]


def copy_real(dest: Path, per_class: int, classes=TEXTILE_CLASSES) -> Path:
    for cls in classes:
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for f in real_jpgs(cls, per_class):
            shutil.copy(f, dest / cls / f.name)
    return dest


def tiny_png(path: Path, colour=(200, 30, 30), size=(20, 20)) -> Path:
    """A small valid image; colour varies per call site so files are not accidental duplicates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def noise_png(path: Path, seed: int, size=(20, 20)) -> Path:
    """A unique small image (random pixels), so duplicate detection never fires by accident."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def blank_png_bytes(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size, built row by row so a huge one costs no memory and little disk."""
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(folder).as_posix())
    return zip_path


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)  # S_IFLNK | 0777, as `zip --symlinks` writes it
    return info


def png_bytes(colour=(10, 200, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def textile10(tmp_path_factory) -> Path:
    """3 real classes x 10 textile images."""
    return copy_real(tmp_path_factory.mktemp("textile10"), 10)


@pytest.fixture(scope="session")
def zip_bomb(tmp_path_factory) -> Path:
    """One member of 300 MB of zeros, about 300 KB on disk (streamed, never held in memory)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    chunk = bytes(2 ** 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("cats/zeros.png", "w", force_zip64=True) as out:
            for _ in range(300):
                out.write(chunk)
    return path
