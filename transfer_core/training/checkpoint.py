"""The last finished epoch of a run, saved so an interrupted run continues exactly where it was.

Everything random is saved too (the batch order's generator, torch's global state, the generator the cached
augmented views were drawn from), so the remaining epochs run as they would have without the interruption.
"""
from __future__ import annotations

from pathlib import Path

import torch

from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder, save_atomically
from transfer_core.training.selection import BestEpoch


def weights_of(net: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def save_checkpoint(trainer, epoch: int) -> None:
    state = {"epoch": epoch, "model": weights_of(trainer.net), "optimizer": trainer.optimizer.state_dict(),
             **trainer.best.to_checkpoint(), "depth": trainer.depth, "step": trainer.step,
             "generator": trainer.gen.get_state(), "torch_rng": torch.get_rng_state(),
             "cache_generator": trainer.cache_gen_state, "scaler": trainer.scaler.state_dict()}
    save_atomically(state, trainer.run.path / runfiles.CHECKPOINT)


def open_resumed(runs_dir: Path, run_id: str) -> tuple[RunFolder, dict | None]:
    """The run folder, claimed for this process, and its checkpoint (None: it ended before its first epoch)."""
    run = RunFolder(runs_dir / run_id)
    path = run.path / runfiles.CHECKPOINT
    # weights_only: a checkpoint is read like any file from outside, without running code from it.
    state = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    run.keep_events_through_epoch(state["epoch"] if state else 0)
    run.claim()
    return run, state


def restore(trainer, state: dict | None) -> int:
    """Put back everything the checkpoint saved; returns the epoch reached (0: start over, same folder)."""
    if state is None:
        return 0
    trainer.net.load_state_dict(state["model"])
    trainer.thaw.replay(trainer, state["epoch"])  # the same stages thawed: the optimizer has the same groups
    if trainer.depth != trainer.feature_cache.depth:
        trainer.gen.set_state(state["cache_generator"])
        trainer.prepare_cache(now=state["epoch"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scaler.is_enabled() and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.state.best = BestEpoch.from_checkpoint(state, trainer.best.careful_n)
    trainer.state.step = state["step"]
    trainer.gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    for event in trainer.run.epochs():  # watchers (the app's live curves) get the whole history
        for cb in trainer.callbacks:
            cb.on_event(trainer, event)
    return state["epoch"]
