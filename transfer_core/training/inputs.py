"""A run's pictures as the loop consumes them: the data set scanned into shares, each picture decoded once
(data.imagecache.ImageStore), labels as tensors. The loop and the learning-rate finder share this."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from transfer_core.core.config import TrainConfig
from transfer_core.core.device import plan_for
from transfer_core.data.datarefs import to_ref
from transfer_core.data.datasets import DatasetReport, scan_dataset
from transfer_core.data.imagecache import ImageStore, StoreKeeper
from transfer_core.models.backbones import get_backbone
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import write_json
from transfer_core.training import distributed


@dataclass
class Shares:
    report: DatasetReport
    train: list
    val: list
    test: list  # never seen until the end (training.finish)


def scan_shares(config: TrainConfig, run_dir: Path, runs_dir: Path, gen: torch.Generator) -> Shares:
    """The data set split into training / validation / test shares, recorded in the run folder as a data
    reference (no server path). `max_images` keeps a random subset of the training share."""
    keeper = StoreKeeper(get_backbone(config.backbone).preprocessing_at(config.image_size))
    report = scan_dataset(config.data, val_split=config.val_split, seed=config.seed, extract_to=run_dir / "data",
                          test_share=config.test_share, keep=keeper)
    keeper.flush()
    train = list(report.train)
    if config.max_images and len(train) > config.max_images:
        order = torch.randperm(len(train), generator=gen)[:config.max_images]
        train = [train[i] for i in sorted(order.tolist())]
    write_json(run_dir / runfiles.DATASET, {**report.to_dict(), "root": to_ref(report.root, runs_dir)})
    return Shares(report, train, list(report.val), list(report.test))


@dataclass
class Pictures:
    train_store: ImageStore
    val_store: ImageStore
    train_y: torch.Tensor
    val_y: torch.Tensor


def load_pictures(shares: Shares, prep, *, cache_mb: int, device: torch.device, stop: threading.Event,
                  progress: Callable[[int, int], None]) -> Pictures:
    """Decode the training and validation pictures once, within `cache_mb` (the rest stream from disk)."""
    budget = cache_mb * 2 ** 20
    n_train, total = len(shares.train), len(shares.train) + len(shares.val)
    pin = plan_for(device).pin_memory
    train_store = ImageStore([s.path for s in shares.train], prep, budget_bytes=budget, stop=stop, pin_memory=pin,
                             progress=lambda done, _n: progress(done, total))
    val_store = ImageStore([s.path for s in shares.val], prep, budget_bytes=max(0, budget - train_store.nbytes),
                           stop=stop, pin_memory=pin, progress=lambda done, _n: progress(n_train + done, total))
    return Pictures(train_store, val_store, torch.tensor([s.label for s in shares.train]),
                    torch.tensor([s.label for s in shares.val]))


def epoch_order(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches: a fresh shuffle (under torchrun one shuffle, each rank taking its share, as
    DistributedSampler does). A last batch of one is dropped: BatchNorm cannot train on it."""
    perm = torch.randperm(n, generator=gen)
    if distributed.active():
        perm = distributed.shard(distributed.broadcast_tensor(perm), distributed.rank(), distributed.world_size())
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        chunks.pop()
    return chunks
