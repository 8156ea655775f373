"""A run from its folder's creation to exactly one final event (RunFinished, RunStopped or RunFailed),
whatever happens in between: a Stop, a failure in words, a disk or callback error at the very end."""
from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from pathlib import Path

from transfer_core.core.i18n import _
from transfer_core.core.events import Event, RunFailed, RunStarted, RunStopped
from transfer_core.data.datarefs import redact_paths
from transfer_core.data.imagecache import Stopped
from transfer_core.runstore.runs import RunFolder
from transfer_core.training import checkpoint, distributed
from transfer_core.training.failures import explain, is_out_of_memory, out_of_memory_words

__all__ = ["Stopped", "run_to_end"]


def run_to_end(trainer) -> tuple[Path | None, Event]:
    """(the run folder, or None under torchrun's ranks > 0; the final event). Never raises for a training
    problem."""
    final: Event | None = None
    scratch: Path | None = None
    interrupted = False  # out of memory: the folder is left without a final event, so it reads as interrupted
    try:
        state = None
        run = trainer.state
        if run.resumed:
            run.run, state = checkpoint.open_resumed(trainer.runs_dir, run.run_id)
        else:
            run.run, scratch = _create_run(trainer)
        run.run_id = run.run.id
        trainer.emit(trainer.event(RunStarted, backbone=trainer.config.backbone, device=str(trainer.device),
                                   run_dir=str(trainer.run.path)))
        trainer.prepare()
        final = trainer.fit(state)
    except Stopped:
        final = trainer.event(RunStopped, best_val_accuracy=max(trainer.best.accuracy, 0.0),
                              epochs_run=trainer.epochs_done, seconds=time.time() - trainer.state.started_at)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a RunFailed event, in words
        # Redacted here, not only on disk: the live view shows the message while the run is still open.
        interrupted = is_out_of_memory(exc)
        words = _out_of_memory(trainer) if interrupted else explain(exc, trainer.config)
        final = trainer.event(RunFailed, error=redact_paths(words),
                              detail=redact_paths("".join(traceback.format_exception_only(type(exc), exc)))
                              .strip()[-2000:], seconds=time.time() - trainer.state.started_at)
    finally:
        final = final or trainer.event(RunFailed, error=_("Training ended unexpectedly."))
        _emit_final(trainer, final, in_folder=not interrupted)
        # The memory goes back now, not at exit.
        trainer.state.train_store = trainer.state.val_store = trainer.state.feature_cache = None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return (trainer.run.path if trainer.run and scratch is None else None), final


def _create_run(trainer) -> tuple[RunFolder, Path | None]:
    """Rank 0 (the only rank without torchrun) writes the run folder; other ranks use a scratch copy."""
    if distributed.is_main():
        run = RunFolder.create(trainer.runs_dir, trainer.config, trainer.run_id)
        distributed.broadcast_object(run.id)
        return run, None
    run_id = distributed.broadcast_object(None)
    scratch = Path(tempfile.mkdtemp(prefix=f"transfer-rank{distributed.rank()}-"))
    return RunFolder.create(scratch, trainer.config, run_id), scratch


def _out_of_memory(trainer) -> str:
    pictures = len(trainer.train_samples) + len(trainer.val_samples) or None  # None: not scanned yet
    return out_of_memory_words(pictures, trainer.cache_mb, trainer.config)


def _emit_final(trainer, final: Event, *, in_folder: bool = True) -> None:
    """`in_folder` False: only the watchers hear it (the folder reads as interrupted, and Resume is offered)."""
    try:
        if not in_folder:
            for cb in trainer.callbacks:
                cb.on_event(trainer, final)
            return
        trainer.emit(final)
    except Exception:  # noqa: BLE001 - a disk or callback error must not hide the run's real end
        for cb in trainer.callbacks:
            try:
                cb.on_event(trainer, final)
            except Exception:  # noqa: BLE001
                pass
