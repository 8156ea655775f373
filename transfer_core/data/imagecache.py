"""A run's pictures, decoded once at training resolution: read by batch from the shared store on disk
(picturestore.py), and held in memory as one uint8 tensor only when they fit the run's memory budget.

Decoding and resizing a JPEG costs about as much as a MobileNet forward pass on a small CPU, so doing
it every epoch (the plain ImageFolder recipe) makes the data, not the model, the bottleneck; holding every
decoded picture in memory makes the data set's size the limit. Here neither: a picture is decoded once per
data set (later runs, processes and data sets holding the same file read its record), and the memory a run
holds for pictures is its batches, or the budget it was given.
"""
from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from transfer_core.data.datasets import load_rgb
from transfer_core.data.picturestore import PictureStore, content_key, store_for
from transfer_core.models.preprocessing import Preprocessing

_CHUNK = 64  # pictures decoded before they are written to the store: the memory decoding holds


class Stopped(Exception):
    """The user asked the run to stop."""


def decode(path: Path | io.BytesIO, prep: Preprocessing) -> np.ndarray:
    """uint8 H x W x 3 at the preprocessing's resize side (centred square)."""
    return prep.resized_square(load_rgb(path))


def decode_chw(data: bytes, prep: Preprocessing) -> np.ndarray:
    return np.ascontiguousarray(decode(io.BytesIO(data), prep).transpose(2, 0, 1))


def _workers() -> int:
    return max(2, min(8, (torch.get_num_threads() or 2)))


def picture_store(prep: Preprocessing) -> PictureStore:
    return store_for(f"{prep.resize}-{prep.interpolation}", prep.resize)


class StoreKeeper:
    """imagechecks.Keep for a scan before training: each picture the scan decodes goes into the store at
    training resolution too (in chunks), so training does not decode it again."""

    def __init__(self, prep: Preprocessing):
        self.prep, self.store = prep, picture_store(prep)
        self.pending: list[tuple[str, np.ndarray]] = []
        self.lock = threading.Lock()

    def __call__(self, digest: str, image) -> None:
        item = (digest, np.ascontiguousarray(self.prep.resized_square(image).transpose(2, 0, 1)))
        with self.lock:
            self.pending.append(item)
            full = len(self.pending) >= _CHUNK
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            items, self.pending = self.pending, []
        self.store.add(items)


class ImageStore:
    """uint8 N x 3 x S x S images (S = prep.resize): records of the shared picture store, read by batch, or
    all held in memory when they fit `budget_bytes`.

    A batch is the same tensor either way. `pin_memory` (for a GPU) hands out batches in page-locked memory,
    so `.to(cuda, non_blocking=True)` overlaps the copy with compute. `decodes` counts the pictures this
    store decoded (those already in the shared store cost none).
    """

    def __init__(self, paths: Sequence[Path], prep: Preprocessing, *, budget_bytes: int,
                 progress: Callable[[int, int], None] | None = None, stop: threading.Event | None = None,
                 pin_memory: bool = False):
        self.paths, self.prep, self.pin_memory = list(paths), prep, pin_memory
        side = prep.resize
        self.item_bytes = 3 * side * side
        self.store = picture_store(prep)
        self.decodes = 0
        self.slots = self._stored(progress, stop)  # None: past the store's disk cap, decoded when read
        self.in_memory = self.item_bytes * len(self.paths) <= budget_bytes
        self.data: torch.Tensor | None = None
        if self.in_memory:
            self.data = torch.from_numpy(self._read(range(len(self.paths))))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def nbytes(self) -> int:
        return self.item_bytes * len(self.paths) if self.in_memory else 0

    # ---- making sure every picture is in the store ----------------------------------------------
    def _stored(self, progress, stop) -> list[int | None]:
        """Each picture's record, decoding (in threads: Pillow releases the GIL) those not stored yet."""
        n = len(self.paths)
        with ThreadPoolExecutor(_workers()) as pool:
            keys = list(pool.map(lambda p: content_key(Path(p).read_bytes()), self.paths, chunksize=64))
            found = self.store.slots_of(keys)
            missing = [i for i, k in enumerate(keys) if k not in found]
            done = n - len(missing)
            if progress and done:
                progress(done, n)
            for start in range(0, len(missing), _CHUNK):
                if stop is not None and stop.is_set():
                    raise Stopped()
                part = missing[start:start + _CHUNK]
                arrays = pool.map(lambda i: decode_chw(Path(self.paths[i]).read_bytes(), self.prep), part)
                found.update(self.store.add(zip((keys[i] for i in part), arrays)))
                self.decodes += len(part)
                done += len(part)
                if progress:
                    progress(done, n)
        return [found.get(k) for k in keys]

    # ---- reading ---------------------------------------------------------------------------------
    def _read(self, idx: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
        side = self.prep.resize
        if out is None:
            out = np.empty((len(idx), 3, side, side), dtype=np.uint8)
        stored = [(j, self.slots[i]) for j, i in enumerate(idx) if self.slots[i] is not None]
        if stored:
            rows, slots = zip(*stored)
            if list(rows) == list(range(len(idx))):
                self.store.read(slots, out)
            else:
                out[list(rows)] = self.store.read(slots)
        for j, i in enumerate(idx):
            if self.slots[i] is None:  # past the store's disk cap: decoded again
                out[j] = decode_chw(Path(self.paths[i]).read_bytes(), self.prep)
        return out

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 len(idx) x 3 x S x S, in the order of `idx`."""
        if self.data is not None:
            if not self.pin_memory:
                return self.data[idx]
            # Gather straight into page-locked memory: one copy, not index-then-pin's two.
            out = torch.empty((len(idx), *self.data.shape[1:]), dtype=torch.uint8, pin_memory=True)
            return torch.index_select(self.data, 0, idx, out=out)
        if self.pin_memory:
            out = torch.empty((len(idx), 3, self.prep.resize, self.prep.resize), dtype=torch.uint8, pin_memory=True)
            self._read(idx.tolist(), out.numpy())
            return out
        return torch.from_numpy(self._read(idx.tolist()))
