"""Decode each image once, at training resolution, into one uint8 tensor; stream when it won't fit.

Decoding and resizing a JPEG costs about as much as a MobileNet forward pass on a small CPU, so doing
it every epoch (the plain ImageFolder recipe) makes the data, not the model, the bottleneck.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from transfer_core.data.datasets import load_rgb
from transfer_core.models.preprocessing import Preprocessing


class Stopped(Exception):
    """The user asked the run to stop."""


def decode(path: Path, prep: Preprocessing) -> np.ndarray:
    return prep.resized_square(load_rgb(path))


def _workers() -> int:
    return max(2, min(8, (torch.get_num_threads() or 2)))


class ImageStore:
    """uint8 N x 3 x S x S images (S = prep.resize), held in memory when they fit `budget_bytes`.

    Beyond the budget the images are decoded again for each batch (streaming): slower, but a data set
    of any size trains, and a batch is the same tensor either way. `pin_memory` (for a GPU) hands out
    batches in page-locked memory, so `.to(cuda, non_blocking=True)` overlaps the copy with compute.
    """

    def __init__(self, paths: Sequence[Path], prep: Preprocessing, *, budget_bytes: int,
                 progress: Callable[[int, int], None] | None = None, stop: threading.Event | None = None,
                 pin_memory: bool = False):
        self.paths, self.prep, self.pin_memory = list(paths), prep, pin_memory
        side = prep.resize
        self.item_bytes = 3 * side * side
        self.in_memory = self.item_bytes * len(self.paths) <= budget_bytes
        self.data: torch.Tensor | None = None
        if self.in_memory:
            self.data = self._decode_all(progress, stop)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def nbytes(self) -> int:
        return self.item_bytes * len(self.paths) if self.in_memory else 0

    def _decode_all(self, progress, stop) -> torch.Tensor:
        side = self.prep.resize
        out = torch.empty((len(self.paths), side, side, 3), dtype=torch.uint8)
        done = 0
        with ThreadPoolExecutor(_workers()) as pool:  # PIL releases the GIL while decoding
            for i, arr in enumerate(pool.map(lambda p: decode(p, self.prep), self.paths)):
                out[i] = torch.from_numpy(arr)
                done += 1
                if stop is not None and stop.is_set():
                    raise Stopped()
                if progress and (done % 64 == 0 or done == len(self.paths)):
                    progress(done, len(self.paths))
        return out.permute(0, 3, 1, 2).contiguous()

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 len(idx) x 3 x S x S, in the order of `idx`."""
        if self.data is not None:
            if not self.pin_memory:
                return self.data[idx]
            # Gather straight into page-locked memory: one copy, not index-then-pin's two.
            out = torch.empty((len(idx), *self.data.shape[1:]), dtype=torch.uint8, pin_memory=True)
            return torch.index_select(self.data, 0, idx, out=out)
        with ThreadPoolExecutor(_workers()) as pool:
            arrs = list(pool.map(lambda i: decode(self.paths[i], self.prep), idx.tolist()))
        out = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()
        return out.pin_memory() if self.pin_memory else out
