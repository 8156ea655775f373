"""Outputs of the frozen part of the network, computed once wherever that gives the same result.

- Without augmentation: the frozen stages' output (pooled features when everything is frozen) for
  every training image is computed once; an epoch then runs only the layers that learn.
- With augmentation and `feature_views` = V > 0: V augmented views of each image go through the frozen
  stages once, and every epoch each image is shown one of its V views at random. Cheap variety.
- With augmentation and `feature_views` = 0: a fresh view every batch; the frozen stages then run on
  every batch, but without autograd, so no graph is kept and no gradient is computed for them.
- Validation images are never augmented, so their frozen-part output is always cached.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .augment import eval_view, train_view
from .device import plan_for

if TYPE_CHECKING:
    from .trainer import Trainer


class FeatureCache:
    def __init__(self, trainer: "Trainer"):
        self.t = trainer
        self.depth = -1
        self.train: torch.Tensor | None = None  # views x images x (activation shape)
        self.val: torch.Tensor | None = None
        self.start = 0

    # ---- planning -------------------------------------------------------------------------------
    def prepare(self, depth: int) -> None:
        self.depth, self.train, self.val = depth, None, None
        net = self.t.net
        if depth == 0:
            self.start = 0
            return
        self.start = net.num_stages + 1 if depth >= net.num_stages else depth
        budget = self._budget_bytes()
        per_item = self._bytes_per_item()
        views = self._train_views()
        if per_item * len(self.t.val_samples) <= budget:
            self.val = self._compute(self.t.val_store, lambda b: eval_view(b, self.t.prep))
            budget -= per_item * len(self.t.val_samples)
        if views and per_item * len(self.t.train_samples) * views <= budget:
            self.train = torch.stack([self._compute(self.t.train_store, self._view_fn()) for _ in range(views)])

    def _train_views(self) -> int:
        """How many training views to cache: 0 means the frozen part must run on every batch."""
        if any(cb.needs_images for cb in self.t.callbacks):
            return 0
        return 1 if self.t.config.augment == "none" else self.t.config.feature_views

    def _view_fn(self):
        cfg = self.t.config
        return lambda b: train_view(b, self.t.prep, cfg.augment, self.t.gen)

    def _budget_bytes(self) -> int:
        used = self.t.train_store.nbytes + self.t.val_store.nbytes
        return max(0, self.t.config.cache_mb * 2 ** 20 - used)

    @torch.no_grad()
    def _bytes_per_item(self) -> int:
        probe = torch.zeros(1, 3, self.t.prep.crop, self.t.prep.crop, device=self.t.device)
        self.t.net.eval()
        out, _ = self.run_frozen(probe, self.depth)
        return out.numel() * out.element_size()

    @torch.no_grad()
    def _compute(self, store, view_fn) -> torch.Tensor:
        self.t.net.eval()
        bs, n, parts = 32, len(store), []  # small chunks: early layers' maps stay in the CPU cache
        for i in range(0, n, bs):
            self.t._check_stop()
            idx = torch.arange(i, min(i + bs, n))
            images = view_fn(store.batch(idx).to(self.t.device, non_blocking=True))
            parts.append(self.run_frozen(images, self.depth)[0])
            self.t._progress("preparing", min(i + bs, n), n)
        return torch.cat(parts) if parts else torch.zeros(0)

    def describe(self) -> str:
        if self.depth == 0:
            return "Every batch goes through the whole network."
        if self.train is not None:
            what = "features" if self.start > self.t.net.num_stages else "frozen-layer outputs"
            views = f" for {len(self.train)} augmented views of each image" if len(self.train) > 1 else ""
            return f"The {what} were computed once{views}, so each epoch only runs the layers that learn."
        return "Frozen layers run without gradients on each freshly augmented batch."

    # ---- use ------------------------------------------------------------------------------------
    @torch.no_grad()
    def run_frozen(self, images: torch.Tensor, depth: int) -> tuple[torch.Tensor, int]:
        net = self.t.net
        if plan_for(self.t.device).channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if depth == 0:
            return images, 0
        out = net.run_stages(images, 0, depth)
        if depth >= net.num_stages:
            return net.pool(out), net.num_stages + 1
        return out, depth

    def train_inputs(self, idx: torch.Tensor, epoch: int) -> tuple[torch.Tensor, int] | None:
        if self.train is None:
            return None
        if len(self.train) == 1:
            return self.train[0][idx], self.start
        view = torch.randint(len(self.train), (len(idx),), generator=self.t.gen)
        return self.train[view, idx], self.start

    def val_inputs(self, idx: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        return None if self.val is None else (self.val[idx], self.start)
