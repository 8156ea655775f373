"""The from-scratch baseline: the same run from random weights, linked to the pretrained one.

Both configs carry tags {"compare_to": <the other run's id>}, so the app can find the pair and
overlay their curves. The scratch run keeps the data, budget (epochs, batch, learning rate,
schedule) and other settings, with two exceptions: no stage is frozen (frozen random layers would be
a straw man, not a baseline), and L2-SP is off (there are no pretrained weights to stay close to).
"""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from transfer_core.core.config import TrainConfig
from transfer_core.runstore.runs import DEFAULT_RUNS_DIR, new_run_id
from transfer_core.training.callbacks import Callback
from transfer_core.training.trainer import RunResult
from transfer_core.workflows.train import make_trainer


def scratch_config(config: TrainConfig, compare_to: str) -> TrainConfig:
    """`config` from random initialisation, every layer training, tagged with the pretrained run's id."""
    return replace(config, pretrained=False, weights_file=None, freeze=0, quick_start_epochs=0, unfreeze_at=(),
                   l2sp=0.0, tags={**config.tags, "compare_to": compare_to, "baseline": "from scratch"})


def linked_runs(config: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """[(run id, config) for the pretrained run, (run id, config) for its from-scratch twin]."""
    pretrained_id = new_run_id(config.backbone)
    scratch_id = new_run_id(f"{config.backbone}-scratch")
    return [(pretrained_id, replace(config, tags={**config.tags, "compare_to": scratch_id})),
            (scratch_id, scratch_config(config, pretrained_id))]


def train_with_scratch_baseline(config: TrainConfig, *, runs_dir: str | Path = DEFAULT_RUNS_DIR,
                                callbacks: list[Callback] = (), stop: threading.Event | None = None
                                ) -> tuple[RunResult, RunResult | None]:
    """Train the pretrained run, then its from-scratch twin (None when the user stopped the first)."""
    stop = stop or threading.Event()
    (first_id, first), (second_id, second) = linked_runs(config)
    pretrained = make_trainer(first, runs_dir=runs_dir, callbacks=callbacks, stop=stop, run_id=first_id).run_training()
    if stop.is_set():
        return pretrained, None
    scratch = make_trainer(second, runs_dir=runs_dir, callbacks=callbacks, stop=stop, run_id=second_id).run_training()
    return pretrained, scratch
