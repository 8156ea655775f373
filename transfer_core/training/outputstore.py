"""Cached frozen-part outputs that do not fit the run's memory budget: kept on disk, read by batch.

The file is unlinked as soon as it is made: it lives exactly as long as the run that holds it open, so a
stopped, crashed or killed run leaves nothing behind. Reads go through pread() into the kernel's page cache,
which the kernel frees as it needs, so the run's own memory holds only the batch (picturestore.py says why
not numpy.memmap).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from transfer_core.data.picturestore import cache_root

DISK_SHARE = 0.5  # at most this share of the free disk for one run's outputs


class DiskOutputs:
    """N x (item shape) values of one dtype in an anonymous file; `[idx]` reads rows back as a tensor."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="outputs-", dir=folder)
        os.unlink(path)
        self.fd, self.shape, self.dtype = fd, tuple(shape), dtype
        self.row_bytes = math.prod(shape[1:]) * torch.empty(0, dtype=dtype).element_size()
        os.ftruncate(fd, shape[0] * self.row_bytes)

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self):
        try:
            os.close(self.fd)
        except (OSError, AttributeError):
            pass

    def write(self, start: int, values: torch.Tensor) -> None:
        data = values.detach().to("cpu", self.dtype).contiguous().numpy()
        os.pwrite(self.fd, memoryview(data.reshape(-1).view("uint8")), start * self.row_bytes)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            start, stop, step = idx.indices(len(self))
            rows = list(range(start, stop, step))
            if step == 1:
                out = torch.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
                self._read_into(out, start)
                return out
        else:
            rows = torch.as_tensor(idx).reshape(-1).tolist()
        out = torch.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for i, row in enumerate(rows):
            self._read_into(out[i:i + 1], row)
        return out

    def _read_into(self, out: torch.Tensor, first_row: int) -> None:
        view = memoryview(out.numpy().reshape(-1).view("uint8"))
        if os.preadv(self.fd, [view], first_row * self.row_bytes) != len(view):
            raise OSError("cached outputs cut short on disk")


def ram_bytes(*values) -> int:
    """Memory held by cached outputs: tensors count, those on disk do not (lists: their parts)."""
    total = 0
    for v in values:
        if isinstance(v, (list, tuple)):
            total += ram_bytes(*v)
        elif isinstance(v, torch.Tensor):
            total += v.numel() * v.element_size()
    return total


def place(n: int, item_shape: tuple[int, ...], dtype: torch.dtype, budget_bytes: int,
          device: torch.device | str = "cpu"):
    """Where n outputs go: a tensor on `device` when they fit the budget, else a file on disk when the disk
    has room, else None (the frozen part then runs on every batch)."""
    nbytes = n * math.prod(item_shape) * torch.empty(0, dtype=dtype).element_size()
    if nbytes <= budget_bytes:
        return torch.empty((n, *item_shape), dtype=dtype, device=device)
    if not disk_room(nbytes):
        return None
    return DiskOutputs((n, *item_shape), dtype, outputs_folder())


def outputs_folder() -> Path:
    folder = cache_root() / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def disk_room(nbytes: int) -> bool:
    """May a run keep this much on disk? (At most DISK_SHARE of what is free.)"""
    return nbytes <= DISK_SHARE * shutil.disk_usage(outputs_folder()).free


def store_rows(dest, start: int, values: torch.Tensor) -> None:
    if isinstance(dest, DiskOutputs):
        dest.write(start, values)
    else:
        dest[start:start + len(values)] = values
