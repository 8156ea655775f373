"""Scale out with PyTorch's own engine: `torchrun --nproc-per-node N -m transfer_core train ...`.

torchrun starts N processes and sets RANK / WORLD_SIZE / MASTER_ADDR for each. Every process:
- joins one process group (gloo on CPUs, nccl on GPUs, one GPU per process);
- trains on its own share of each epoch's shuffled training images (what DistributedSampler does:
  one shuffle shared by all, every rank takes every N-th image, all ranks get the same count);
- averages gradients with DistributedDataParallel, so all copies of the model stay identical;
- validates on the whole validation set, so all ranks reach the same best epoch;
- agrees with the others before stopping (Stop pressed, early stopping, divergence), so no rank is
  left waiting in a collective for a rank that has left.
Only rank 0 writes the run folder; the others work in a scratch folder that is deleted at the end.
Without a process group every function here is a no-op, so single-process training is unchanged.
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta

import torch
import torch.distributed as dist

# A rank that dies leaves the others waiting; torchrun tears the group down, and this bounds the rest.
_TIMEOUT = timedelta(minutes=10)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes files and prints."""
    return rank() == 0


def init() -> tuple[int, int]:
    """Join the process group torchrun prepared; (rank, world size). (0, 1) when not launched by torchrun."""
    if not launched_by_torchrun():
        return 0, 1
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and dist.is_nccl_available()
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_nccl else "gloo", timeout=_TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def local_device() -> str | None:
    """One GPU per process on a multi-GPU machine; None lets the usual choice apply."""
    if launched_by_torchrun() and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return None


def broadcast_object(value):
    """Rank 0's value on every rank (e.g. the run id, so all ranks name the same run)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_tensor(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's tensor on every rank (e.g. the epoch's shuffle, so all ranks shard the same order)."""
    if active():
        dist.broadcast(t, src=0)
    return t


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on at least one (stop, early stopping, divergence)."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(values: list[float]) -> list[float]:
    """Element-wise sum of `values` over all ranks (epoch totals: loss, correct, images seen)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def shard(order: torch.Tensor, rank_: int, world: int) -> torch.Tensor:
    """This rank's share of one epoch's order: every `world`-th item from `rank_` on, the same count on
    every rank (DDP needs the same number of steps everywhere), so a remainder of < world is left out."""
    per_rank = len(order) // world
    return order[rank_::world][:per_rank]


class FeaturesAndLogits(torch.nn.Module):
    """The training step's forward: (pooled features, logits) from the input at stage `start`.

    One module with one forward(), because DistributedDataParallel only synchronises gradients of what
    runs through forward(); the trainer calls this wrapper with or without DDP, so both do the same maths.
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        features = x if start > self.net.num_stages else self.net.features(x, start)
        return features, self.net.head(features)


def wrap(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around the network: only parameters that learn are synchronised."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DDP(net, device_ids=ids)


def finish(wait: bool = True) -> None:
    """Leave the process group; `wait`: first wait until every rank is done (the normal end)."""
    if dist.is_available() and dist.is_initialized():
        if wait and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    # nccl only moves CUDA tensors; gloo moves CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def training_model(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """What the training step calls: the network returning (pooled features, logits); under torchrun, DDP
    around it (gradients averaged over ranks; DDP synchronises the parameters that learn at wrapping time)."""
    model = FeaturesAndLogits(net)
    return wrap(model, device) if active() else model


def gradient_sync(model: torch.nn.Module, last: bool):
    """Under torchrun, gradients are averaged across processes once per step, after its last part."""
    return contextlib.nullcontext() if last or not active() else model.no_sync()
