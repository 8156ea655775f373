"""Outputs of the frozen part of the network, computed once wherever that gives the same result.

- Without augmentation: the frozen stages' output (pooled features when everything is frozen) for
  every training image is computed once; an epoch then runs only the layers that learn.
- With augmentation and `feature_views` = V > 0: V augmented views of each image go through the frozen
  stages once, and every epoch each image is shown one of its V views at random. Cheap variety.
- With augmentation and `feature_views` = 0: a fresh view every batch; the frozen stages then run on
  every batch, but without autograd, so no graph is kept and no gradient is computed for them.
- Validation images are never augmented, so their frozen-part output is always cached.
- Outputs that do not fit the run's memory budget (cache_mb) are kept on disk and read back by batch
  (outputstore.py): a data set of any size is cached, at the cost of reading it from the page cache.
"""
from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from transfer_core.core.device import plan_for
from transfer_core.core.i18n import _
from transfer_core.inference.novelty import pool_any
from transfer_core.models.augment import eval_view, train_view
from transfer_core.training.outputstore import disk_room, place, ram_bytes, store_rows


class FeatureCache:
    """Given its inputs explicitly: the network, the decoded pictures, how training views are drawn, and
    two functions to call back (check_stop between chunks, progress as chunks are done)."""

    def __init__(self, net, prep, device: torch.device, train_store, val_store, *, gen: torch.Generator,
                 augment: str, train_views: int, cache_mb: int, check_stop: Callable[[], None],
                 progress: Callable[[int, int], None]):
        self.net, self.prep, self.device, self.gen = net, prep, device, gen
        self.train_store, self.val_store = train_store, val_store
        self.augment = augment
        self.train_views = train_views  # views of each training picture to cache; 0: run frozen layers per batch
        self.cache_mb = cache_mb
        self.check_stop, self.progress = check_stop, progress
        self.depth = -1
        self.train: list | None = None  # one per view: images x (activation shape), a tensor or DiskOutputs
        self.val = None  # images x (activation shape)
        self.start = 0
        self.kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # a shallower depth's outputs, for later

    # ---- planning -------------------------------------------------------------------------------
    def prepare(self, depth: int, later: Sequence[int] = ()) -> None:
        """Cache what the frozen stages output at `depth`. `later`: shallower depths the run will thaw to
        (quick start, gradual unfreezing, the progressive schedule), preferred first. When nothing random
        sits before the frozen part, the first of them whose outputs fit (in memory, or on disk) is computed
        first and kept: `depth`'s follow from it through the stages in between (cheap: the early, high-resolution
        stages are most of the work), and so do those of every thaw down to it, which cost no pass over the
        pictures."""
        net = self.net
        self.depth, self.train, self.val = depth, None, None
        self.start = entry_point(net, depth)
        base = next(iter(self.kept), None)  # at most one depth is kept
        if base == depth:  # the shallowest thaw: its outputs are the cache now, kept no more
            self.train, self.val = self.kept.pop(depth)
        elif base is not None and base < depth:
            self._onward_from_kept(base, depth)
        else:
            self.kept.clear()
            if depth > 0:
                self._prepare_through(later, depth)

    def _deterministic(self) -> bool:
        """No random view before the frozen part: cached outputs are the same whenever computed, so a
        resumed run (which recomputes them) gets exactly what an uninterrupted one kept."""
        return self.augment == "none" and self.train_views == 1

    def _prepare_through(self, later: Sequence[int], depth: int) -> None:
        fitting = (d for d in later if 0 < d < depth and self._room_beside(d, depth))
        base = next(fitting, None) if self._deterministic() else None
        if base is not None:
            outputs = self._outputs(base, self._budget_bytes())
            if outputs[0] is not None and outputs[1] is not None:
                self.kept[base] = outputs
                self._onward_from_kept(base, depth)
                return
        self.train, self.val = self._outputs(depth, self._budget_bytes())

    def _room_beside(self, base: int, depth: int) -> bool:
        """Is there room for `base`'s outputs and `depth`'s, for every picture: in the cache's memory together,
        or on disk? (From disk, each thaw reads them back instead of running every picture through the early
        stages again: one pass over the pictures per run, at any data size.)"""
        both = (self._bytes_per_item(base) + self._bytes_per_item(depth)) * self._items()
        return both <= self._budget_bytes() or disk_room(both)

    def _onward_from_kept(self, base: int, depth: int) -> None:
        train, val = self.kept[base]
        stages = frozen_part(self.net, base, depth, plan_for(self.device).channels_last)  # folded once, for both
        shape, dtype = self._item_shape(depth)
        self.train = [self._onward(train[0], stages, place(len(train[0]), shape, dtype, self._budget_bytes(), self.device))]
        self.val = self._onward(val, stages, place(len(val), shape, dtype, self._budget_bytes(), self.device))

    def _items(self) -> int:
        return len(self.train_store) + len(self.val_store)

    def _outputs(self, depth: int, budget: int) -> tuple[list | None, object]:
        """(training views, validation) outputs of the first `depth` stages: in memory within `budget`, on
        disk beyond it; None where the disk has no room either."""
        shape, dtype = self._item_shape(depth)
        # Folding the frozen part takes ~0.2 s (torch.fx): once, for both shares.
        stages = functools.cache(lambda: frozen_part(self.net, 0, depth, plan_for(self.device).channels_last))
        val = place(len(self.val_store), shape, dtype, budget, self.device)
        if val is not None:
            val = self._compute(self.val_store, lambda b: eval_view(b, self.prep), stages(), val)
            budget -= ram_bytes(val)
        train = []
        for _ in range(self.train_views):
            dest = place(len(self.train_store), shape, dtype, budget, self.device)
            if dest is None:
                return None, val
            train.append(self._compute(self.train_store, self._view_fn(), stages(), dest))
            budget -= ram_bytes(dest)
        return train or None, val

    @torch.no_grad()
    def _onward(self, cached, stages: nn.Module, dest):
        """`stages` (frozen_part) run on outputs already cached where they start, into `dest` (outputstore.place;
        None: no room anywhere, so nothing is cached at this depth)."""
        if dest is None:
            return None
        n = len(cached)
        for i in range(0, n, 64):
            self.check_stop()
            store_rows(dest, i, stages(cached[i:i + 64].to(self.device)))
            self.progress(min(i + 64, n), n)  # minutes at 100,000 pictures: the page shows it moving
        return dest

    def _view_fn(self):
        return lambda b: train_view(b, self.prep, self.augment, self.gen)

    def _budget_bytes(self) -> int:
        kept = ram_bytes(*(outputs for outputs in self.kept.values()))
        used = self.train_store.nbytes + self.val_store.nbytes + kept + ram_bytes(self.train, self.val)
        return max(0, self.cache_mb * 2 ** 20 - used)

    @torch.no_grad()
    def _item_shape(self, depth: int) -> tuple[tuple[int, ...], torch.dtype]:
        """The shape and type of one picture's frozen-part output at `depth`."""
        if depth >= self.net.num_stages:  # pooled features: their size is known without running the network
            return (self.net.feature_dim,), torch.float32
        probe = torch.zeros(1, 3, self.prep.crop, self.prep.crop, device=self.device)
        self.net.eval()
        out, _ = self.run_frozen(probe, depth)
        return tuple(out.shape[1:]), out.dtype

    def _bytes_per_item(self, depth: int) -> int:
        shape, dtype = self._item_shape(depth)
        return math.prod(shape) * torch.empty(0, dtype=dtype).element_size()

    @torch.no_grad()
    def _compute(self, store, view_fn, stages: nn.Module, dest):
        """`stages` (frozen_part) run on each batch of `store` as `view_fn` presents it, into `dest`
        (outputstore.place: filled in place, so no second copy of the outputs is ever made)."""
        self.net.eval()
        channels_last = plan_for(self.device).channels_last
        bs, n = chunk_size(self.prep.crop), len(store)
        for i in range(0, n, bs):
            self.check_stop()
            idx = torch.arange(i, min(i + bs, n))
            images = view_fn(store.batch(idx).to(self.device, non_blocking=True))
            out = stages(images.contiguous(memory_format=torch.channels_last) if channels_last else images)
            store_rows(dest, i, out)
            self.progress(min(i + bs, n), n)
        return dest

    def describe(self) -> str:
        if self.depth == 0:
            return _("Every batch goes through the whole network.")
        if self.train is not None:
            features = self.start > self.net.num_stages
            if len(self.train) > 1:
                text = (_("The features were computed once for {n} augmented views of each image, so each epoch "
                          "only runs the layers that learn.") if features else
                        _("The frozen-layer outputs were computed once for {n} augmented views of each image, so "
                          "each epoch only runs the layers that learn."))
                return text.format(n=len(self.train))
            return (_("The features were computed once, so each epoch only runs the layers that learn.") if features
                    else _("The frozen-layer outputs were computed once, so each epoch only runs the layers that "
                           "learn."))
        return _("Frozen layers run without gradients on each freshly augmented batch.")

    # ---- use ------------------------------------------------------------------------------------
    @torch.no_grad()
    def run_frozen(self, images: torch.Tensor, depth: int) -> tuple[torch.Tensor, int]:
        net = self.net
        if plan_for(self.device).channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if depth == 0:
            return images, 0
        out = net.run_stages(images, 0, depth)
        return (net.pool(out) if depth >= net.num_stages else out), entry_point(net, depth)

    def train_inputs(self, idx: torch.Tensor, epoch: int) -> tuple[torch.Tensor, int] | None:
        if self.train is None:
            return None
        if len(self.train) == 1:
            return self.train[0][idx], self.start
        view = torch.randint(len(self.train), (len(idx),), generator=self.gen)
        out = None
        for v, outputs in enumerate(self.train):  # each picture's drawn view, in the order of idx
            rows = (view == v).nonzero().flatten()
            if len(rows):
                part = outputs[idx[rows]]
                out = torch.empty((len(idx), *part.shape[1:]), dtype=part.dtype) if out is None else out
                out[rows] = part
        return out, self.start

    def val_inputs(self, idx: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        return None if self.val is None else (self.val[idx], self.start)

    def train_or_run(self, idx: torch.Tensor, epoch: int, depth: int) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """(input, entry stage, augmented images or None) for these training pictures: cached where it can be,
        else a fresh augmented view through the frozen part (the images come back for callbacks needing them)."""
        cached = self.train_inputs(idx, epoch)
        if cached is not None:
            return cached[0].to(self.device, non_blocking=True), cached[1], None
        images = train_view(self.train_store.batch(idx).to(self.device, non_blocking=True), self.prep,
                            self.augment, self.gen)
        return (*self.run_frozen(images, depth), images)

    def val_or_run(self, idx: torch.Tensor, depth: int) -> tuple[torch.Tensor, int]:
        """Validation pictures' input at this depth: cached, or their (never augmented) view run through."""
        cached = self.val_inputs(idx)
        if cached is None:
            images = eval_view(self.val_store.batch(idx).to(self.device, non_blocking=True), self.prep)
            cached = self.run_frozen(images, depth)
        return cached[0].to(self.device), cached[1]


def chunk_size(crop: int) -> int:
    """Pictures run through the frozen part at once: 32 at 224 px (small chunks keep early layers' maps in the
    CPU cache), fewer at larger sizes, so the activations stay the same size (at 1024 px, 32 pictures' first
    maps alone are 1 GB)."""
    return max(1, int(32 * (224 / crop) ** 2))


def entry_point(net, depth: int) -> int:
    """Where the frozen part's output enters the network (net(x, start)): the first learning stage, or
    num_stages + 1 (pooled features, only the head) when every stage is frozen."""
    return net.num_stages + 1 if depth >= net.num_stages else depth


def frozen_part(net, start: int, depth: int, channels_last: bool) -> nn.Module:
    """Stages start..depth of `net` (pooled when every stage is frozen), for computing cached outputs,
    with each BatchNorm folded into the convolution before it (torch.fx): the same function for frozen,
    eval-mode layers, 1.46x faster on this CPU (python bench/cpu_kernels.py), equal to ~1e-5. A copy:
    the network itself is untouched. Only used while the stages are known to be frozen and unchanged
    (preparing the cache);
    a network that fx cannot trace runs as it is."""
    part = nn.Sequential(*net.stages[start:depth], *([net.pool] if depth >= net.num_stages else []))
    try:
        fused = fuse(copy.deepcopy(part).eval(), inplace=True)
        return fused.to(memory_format=torch.channels_last) if channels_last else fused
    except Exception:  # noqa: BLE001 - untraceable Python control flow: correct, just not folded
        return part.eval()


@torch.no_grad()
def cached_pooled(cache: FeatureCache, which: str, idx: torch.Tensor, mid: int = 0) -> torch.Tensor | None:
    """Pooled features of training ("train") or validation pictures as Predict sees them, from the cached
    frozen outputs: only the learning layers run. `mid` > 0: the familiarity check's looks (novelty.looks),
    which the cache holds only when it starts at that stage. None where nothing is cached in the eval view
    (augmented training views are not what Predict sees) or the cache cannot give the middle look."""
    net = cache.net
    if which == "val":
        cached = cache.val
    else:
        cached = cache.train[0] if cache.train is not None and cache.augment == "none" else None
    if cached is None or (mid and cache.start != mid):
        return None
    net.eval()
    parts = []
    for chunk in idx.split(64):
        x = cached[chunk].to(cache.device)
        features = x if cache.start > net.num_stages else net.features(x, cache.start)
        parts.append((torch.cat([features, pool_any(x).to(features.dtype)], 1) if mid else features).float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, net.feature_dim)

