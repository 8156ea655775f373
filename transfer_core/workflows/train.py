"""Train and resume: the engine's main entry points. They put the config's methods (methods.callbacks_for)
next to the caller's callbacks and hand both to the one training loop (training.trainer.Trainer)."""
from __future__ import annotations

import threading
from pathlib import Path

from transfer_core.core.i18n import _
from transfer_core.core.config import TrainConfig
from transfer_core.methods import callbacks_for, resume_problem
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import DEFAULT_RUNS_DIR, RunFolder
from transfer_core.training.callbacks import Callback
from transfer_core.training.trainer import RunResult, Trainer


def make_trainer(config: TrainConfig, *, runs_dir: str | Path = DEFAULT_RUNS_DIR, callbacks: list[Callback] = (),
                 stop: threading.Event | None = None, run_id: str | None = None, resume: bool = False) -> Trainer:
    """A trainer for `config` with its methods' callbacks (L2-SP, distillation, domain adaptation) added."""
    return Trainer(config, runs_dir=runs_dir, callbacks=[*callbacks, *callbacks_for(config)], stop=stop,
                   run_id=run_id, resume=resume)


def train(config: TrainConfig, *, runs_dir: str | Path = DEFAULT_RUNS_DIR, callbacks: list[Callback] = (),
          stop: threading.Event | None = None) -> RunResult:
    """Train one run to its end; see Trainer."""
    return make_trainer(config, runs_dir=runs_dir, callbacks=callbacks, stop=stop).run_training()


class CannotResume(ValueError):
    """This run cannot be continued; the message says why in plain words."""


def check_resumable(run_dir: str | Path) -> RunFolder:
    run = RunFolder(run_dir)
    if not (run.path / runfiles.CONFIG).is_file():
        raise CannotResume(_("'{run_dir}' is not a run folder (it has no config.json).").format(run_dir=run_dir))
    status = run.status()
    if status == "running":
        raise CannotResume(_("This run is still training in another window or process; wait for it or stop it first."))
    if status == "finished":
        raise CannotResume(_("This run already finished all its epochs, so there is nothing to resume. Start a new "
                             "run with more epochs to train longer."))
    why = resume_problem(run.config)  # a method whose state is not saved (DANN's domain classifier)
    if why:
        raise CannotResume(why)
    return run


def resuming_trainer(run_dir: str | Path, *, callbacks: list[Callback] = (),
                     stop: threading.Event | None = None) -> Trainer:
    """A trainer that continues `run_dir` from its last finished epoch; raises CannotResume, in words."""
    run = check_resumable(run_dir)
    return make_trainer(run.config, runs_dir=run.path.parent, callbacks=callbacks, stop=stop, run_id=run.id,
                        resume=True)


def resume(run_dir: str | Path, *, callbacks: list[Callback] = (), stop: threading.Event | None = None) -> RunResult:
    """Continue an interrupted, stopped or failed run from its last finished epoch (checkpoint.pt) to its
    planned number of epochs, ending where the same run without the interruption would have ended."""
    return resuming_trainer(run_dir, callbacks=callbacks, stop=stop).run_training()
