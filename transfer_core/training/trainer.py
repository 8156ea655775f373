"""The training loop: one readable loop, extended through callbacks, that reports typed events.

Read top to bottom: `run_training` opens the run folder and always ends in exactly one final event;
`prepare` builds the network and its inputs; `fit` runs the epochs; `train_step` is one optimizer step.
What happens around it lives beside it: inputs.py (pictures), features.py (frozen layers' outputs computed
once), thaw.py (when frozen stages start to learn), selection.py (the epoch kept), checkpoint.py (resume),
finish.py (what is saved at the end). Everything a run holds between calls is one RunState (state.py),
made with the trainer; the trainer's attributes of the same names read and write it. Callbacks see the
documented surface in callbacks.TrainingState, and end a run early with request_stop(StopReason(...)).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from transfer_core.core.config import TrainConfig
from transfer_core.core.device import pick_device, use_amp
from transfer_core.core.memory import memory_budget_mb
from transfer_core.core.events import DataReady, EpochEnd, Event, RunFinished
from transfer_core.data.datarefs import resolved_config
from transfer_core.data.imagecache import Stopped
from transfer_core.models.backbones import get_backbone, network_for
from transfer_core.models.freezing import (
    apply_freeze,
    describe_freeze,
    resolve_depth,
    set_train_mode,
)
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import DEFAULT_RUNS_DIR, save_atomically
from transfer_core.training import checkpoint, crossval, distributed, lifecycle
from transfer_core.training.callbacks import Batch, Callback
from transfer_core.training.failures import Diverged
from transfer_core.training.features import FeatureCache
from transfer_core.training.finish import finish
from transfer_core.training.inputs import epoch_order, load_pictures, scan_shares
from transfer_core.training.optim import (
    add_stage,
    build_optimizer,
    lr_multiplier,
    set_lr,
)
from transfer_core.training.progress import ProgressReporter
from transfer_core.training.progressive import Progressive
from transfer_core.training.selection import LastEpoch
from transfer_core.training.state import RunState, StopKind, StopReason
from transfer_core.training.stepmemory import part_size_for, parts_words, split_count
from transfer_core.training.thaw import ThawSchedule

SCHEDULES = {"fixed": ThawSchedule, "progressive": Progressive}  # TrainConfig.schedule -> thaw schedule


@dataclass(frozen=True)
class RunResult:
    run_dir: Path | None
    final: Event


def _forwarded(name: str) -> property:
    """trainer.<name> reads and writes state.<name>: callbacks keep the one surface they know (TrainingState),
    while the data lives in one typed place, made whole at the start."""
    return property(lambda self: getattr(self.state, name), lambda self, value: setattr(self.state, name, value),
                    doc=f"RunState.{name}")


class Trainer:
    # Nothing but these: a run's data lives in self.state (its fields are read and written as attributes here).
    __slots__ = ("runs_dir", "state", "progress")

    def __init__(self, config: TrainConfig, *, runs_dir: str | Path = DEFAULT_RUNS_DIR,
                 callbacks: list[Callback] = (), stop: threading.Event | None = None,
                 run_id: str | None = None, resume: bool = False):
        self.runs_dir = Path(runs_dir)
        # A run folder records where its data is as references (datarefs): back to this server's paths.
        config = resolved_config(config, self.runs_dir)
        # resume: continue runs_dir/run_id from its checkpoint (workflows.train.resuming_trainer); callbacks:
        # with the config's methods' own (workflows.train.make_trainer).
        self.state = RunState(config=config, device=pick_device(config.device or distributed.local_device()),
                              stop=stop or threading.Event(), run_id=run_id, resumed=resume,
                              started_at=time.time(), callbacks=list(callbacks))
        self.progress = ProgressReporter(self.emit, self.event)

    # ------------------------------------------------------------------ events
    def emit(self, event: Event) -> None:
        if self.run is not None:
            self.run.append_event(event)
        for cb in self.callbacks:
            cb.on_event(self, event)

    def event(self, cls, **fields) -> Event:
        return cls(run_id=self.run_id or "", time=time.time(), **fields)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped()

    def run_training(self) -> RunResult:
        """Never raises for a training problem: it ends in exactly one RunFinished/RunStopped/RunFailed."""
        return RunResult(*lifecycle.run_to_end(self))

    # ------------------------------------------------------------------ preparation
    def prepare(self) -> None:
        cfg, s = self.config, self.state
        torch.manual_seed(cfg.seed)
        s.gen = torch.Generator().manual_seed(cfg.seed)
        self.report_progress("preparing", 0, 1)
        shares = scan_shares(cfg, self.run.path, self.runs_dir, s.gen)
        s.report, s.train_samples, s.val_samples, s.test_samples = shares.report, shares.train, shares.val, shares.test
        s.classes = list(s.report.classes)
        self._build_network()
        self._start_clock()
        s.cache_mb = memory_budget_mb(cfg.cache_mb)  # the run's memory budget (core/memory.py)
        pictures = load_pictures(shares, s.prep, cache_mb=s.cache_mb, device=s.device, stop=s.stop,
                                 progress=lambda done, n: self.report_progress("preparing", done, n, part="decode"))
        s.train_store, s.val_store = pictures.train_store, pictures.val_store
        s.train_y, s.val_y = pictures.train_y, pictures.val_y
        for cb in self.callbacks:
            cb.before_fit(self)
        s.feature_cache = FeatureCache(
            self.net, self.prep, self.device, self.train_store, self.val_store, gen=self.gen, augment=cfg.augment,
            train_views=0 if self._keep_images() else (1 if cfg.augment == "none" else cfg.feature_views),
            cache_mb=self.cache_mb, check_stop=self.check_stop,
            progress=lambda done, n: self.report_progress("preparing", done, n, part="cache"))
        self.prepare_cache()
        plan = describe_freeze(self.net, self.depth)
        words = (f"{plan.describe()} {self.feature_cache.describe()}"
                 f"{parts_words(cfg.batch_size, self.part_size, cfg.step_memory_mb)}"
                 f"{self.thaw.words(self.net.stage_names, self.depth)}")
        self.emit(self.event(DataReady, classes=tuple(self.classes), num_train=len(self.train_samples),
                             num_val=len(self.val_samples), skipped=len(self.report.skipped), plan=words,
                             trainable_params=plan.trainable_params, total_params=plan.total_params))

    def _build_network(self) -> None:
        cfg, s = self.config, self.state
        s.prep = get_backbone(cfg.backbone).preprocessing_at(cfg.image_size)
        s.net = network_for(cfg, len(s.classes), s.device)
        chosen = resolve_depth(cfg.freeze, s.net.num_stages)
        s.thaw = SCHEDULES[cfg.schedule].from_config(cfg, chosen, s.net.num_stages)
        s.callbacks.insert(0, s.thaw)  # first: a thaw happens before the methods' before_epoch
        s.depth = s.thaw.start_depth(chosen)
        if s.thaw.careful_selection:  # a later model must beat the validation share's noise (selection.py)
            s.best.careful_n = len(s.val_samples)
        apply_freeze(s.net, s.depth)
        self.run.save_model_description(self.classes, self.prep, cfg)

    def _keep_images(self) -> bool:
        return any(cb.needs_images for cb in self.callbacks)

    def thaw_epochs(self) -> set[int]:
        return set(self.thaw.epochs)

    def thaw_one_stage(self, epoch: int, *, prepare_cache: bool = True) -> None:
        """The last frozen stage starts to learn, in its own optimizer group (called by the ThawSchedule)."""
        s = self.state
        s.depth -= 1
        apply_freeze(s.net, s.depth)
        add_stage(s.optimizer, s.net, s.config, s.depth)
        s.model = distributed.training_model(self.net, self.device)  # DDP synchronises the parameters that learned at wrapping time
        if prepare_cache:
            self.prepare_cache(now=epoch)

    def prepare_cache(self, now: int = 0) -> None:
        """The frozen part's outputs at the current depth; `now`: the epoch reached (a thaw still ahead
        makes the cache keep what the thaws ahead will need)."""
        # Augmented views are drawn from self.gen: remember its state, so a resumed run redraws the same ones.
        s = self.state
        s.cache_gen_state = s.gen.get_state()
        s.feature_cache.prepare(s.depth, later=s.thaw.depths_to_keep(now, s.depth))
        s.part_size = part_size_for(self.net, self.feature_cache.run_frozen, self.prep.crop, self.depth,
                                       self.device, self.config.batch_size, self.config.step_memory_mb)

    # ------------------------------------------------------------------ batches
    def train_batch(self, idx: torch.Tensor, epoch: int) -> Batch:
        x, start, images = self.feature_cache.train_or_run(idx, epoch, self.depth)
        y = self.train_y[idx].to(self.device, non_blocking=True)
        return Batch(x, start, y, idx, images if self._keep_images() else None)

    def val_batches(self):
        bs = max(64, self.config.batch_size)
        for i in range(0, len(self.val_samples), bs):
            idx = torch.arange(i, min(i + bs, len(self.val_samples)))
            yield (*self.feature_cache.val_or_run(idx, self.depth), self.val_y[idx].to(self.device))

    def epoch_order(self) -> list[torch.Tensor]:
        return epoch_order(len(self.train_samples), self.config.batch_size, self.gen)

    # ------------------------------------------------------------------ fitting
    def start_optimizer(self) -> None:
        s = self.state
        s.optimizer = build_optimizer(s.net, s.config, s.depth)
        s.model = distributed.training_model(s.net, s.device)
        s.scaler = torch.amp.GradScaler("cuda", enabled=use_amp(s.device))
        # A loss 50x that of guessing at random means the weights have blown up, even if still finite.
        s.divergence_limit = 50 * math.log(max(2, len(s.classes)))
        s.step = 0

    def fit(self, checkpoint_state: dict | None = None) -> Event:
        cfg, s = self.config, self.state
        self.start_optimizer()
        steps_per_epoch = max(1, len(self.epoch_order()))
        s.total_steps = steps_per_epoch * cfg.epochs
        s.warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
        s.epoch = s.epochs_done = checkpoint.restore(self, checkpoint_state) if s.resumed else 0
        if s.epoch:  # resumed: the epochs done before are not part of what is left
            self.progress.clock.skip_to(f"train{s.epoch + 1}")
        for epoch in range(s.epoch + 1, cfg.epochs + 1):
            s.epoch = epoch
            for cb in self.callbacks:
                cb.before_epoch(self, epoch)
            if not s.stopping:
                self.run_epoch(epoch)
            if distributed.any_rank(s.stopping):  # all ranks stop together
                break
        test_acc = finish(self)
        return self.event(RunFinished, best_val_accuracy=s.best.accuracy, best_epoch=s.best.epoch,
                          epochs_run=s.epochs_done, seconds=time.time() - s.started_at, reason=s.end_reason(),
                          test_accuracy=test_acc, num_test=len(s.test_samples), extra=s.final_extra)

    def run_epoch(self, epoch: int) -> None:
        """Train and validate once; requests the stop when early stopping says to end the run."""
        t_epoch, t_train = time.time(), 0.0
        set_train_mode(self.net, self.depth)
        for cb in self.callbacks:  # e.g. BatchNorm layers a method keeps frozen go back to eval mode
            cb.after_train_mode(self)
        loss_sum, correct, seen = 0.0, 0, 0
        steps = self.epoch_order()
        self.report_progress("train", 0, len(steps), epoch=epoch)  # its start, for the time left (eta.RunClock)
        for i, idx in enumerate(steps):
            if distributed.any_rank(self.stop.is_set()):  # one rank's Stop stops all: none waits for a rank gone
                raise Stopped()
            t = time.time()
            loss, n_correct = self.train_step(self.train_batch(idx, epoch))
            t_train += time.time() - t
            loss_sum, correct, seen = loss_sum + loss * len(idx), correct + n_correct, seen + len(idx)
            self.report_progress("train", i + 1, len(steps), epoch=epoch, loss=loss_sum / seen,
                                 rate=seen * distributed.world_size() / max(t_train, 1e-9))
        loss_sum, correct, seen = distributed.sum_over_ranks([loss_sum, correct, seen])  # whole-epoch figures
        val_loss, val_acc, _ = self.evaluate()
        extra: dict = {"processes": distributed.world_size()} if distributed.active() else {}
        for cb in self.callbacks:
            cb.after_epoch(self, epoch, extra)
        self.emit(self.event(EpochEnd, epoch=epoch, epochs=self.config.epochs, train_loss=loss_sum / max(seen, 1),
                             train_accuracy=correct / max(seen, 1), val_loss=val_loss, val_accuracy=val_acc,
                             lr=self.optimizer.param_groups[0]["lr"], seconds=time.time() - t_epoch,
                             images_per_sec=seen / max(t_train, 1e-9), extra=extra))
        self.state.epochs_done = epoch
        if self.best.update(epoch, val_loss, val_acc):
            save_atomically(checkpoint.weights_of(self.net), self.run.path / runfiles.BEST)
        checkpoint.save_checkpoint(self, epoch)
        if self.best.patience_ran_out(self.config.early_stopping):
            self.state.request_stop(StopReason(StopKind.EARLY_STOPPING, "early stopping: no better validation "
                                               f"loss for {self.config.early_stopping} epochs"))

    def train_step(self, batch: Batch, lr_scale: float | None = None) -> tuple[float, int]:
        """One optimizer step at the schedule's rate (or `lr_scale` x the configured rate). A batch whose
        activations would pass `step_memory_mb` runs in parts whose gradients add up (stepmemory.py)."""
        set_lr(self.optimizer, lr_multiplier(self.step, self.total_steps, self.warmup_steps)
               if lr_scale is None else lr_scale)
        self.optimizer.zero_grad(set_to_none=True)
        parts = batch.parts(split_count(len(batch.y), self.part_size))
        value, correct = 0.0, 0
        for i, part in enumerate(parts):
            share = len(part.y) / len(batch.y)
            with distributed.gradient_sync(self.model, last=i == len(parts) - 1):
                loss, logits = self.loss(part)
                part_value = float(loss.detach())
                if distributed.any_rank(not math.isfinite(part_value) or part_value > self.divergence_limit):
                    raise Diverged(epoch=self.epoch, step=self.step)
                self.scaler.scale(loss * share).backward()
            value += part_value * share
            correct += int((logits.argmax(1) == part.y).sum())
        self.scaler.unscale_(self.optimizer)  # hooks see the true gradients (a no-op without mixed precision)
        for cb in self.callbacks:  # e.g. EWC adds its pull, a method keeps some parameters out of the step
            cb.before_optimizer_step(self)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.step += 1
        return value, correct

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, enabled=use_amp(self.device)):
            # self.model returns the pooled features too (feature-level methods use them); under torchrun it
            # is DDP-wrapped, and DDP only synchronises through forward().
            batch.features, logits = self.model(batch.x, batch.start)
            label_weight = math.prod(cb.label_weight for cb in self.callbacks)  # distillation lowers it
            loss = label_weight * F.cross_entropy(logits.float(), batch.y, label_smoothing=self.config.label_smoothing)
            for cb in self.callbacks:
                extra = cb.extra_loss(self, batch, logits)
                if extra is not None:
                    loss = loss + extra
        return loss, logits

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, torch.Tensor]:
        """Validation loss, accuracy and class probabilities (one row per validation image)."""
        self.net.eval()
        probs, loss_sum = [], 0.0
        for x, start, y in self.val_batches():
            self.check_stop()
            with torch.autocast(self.device.type, enabled=use_amp(self.device)):
                logits = self.net(x, start).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            probs.append(logits.softmax(1).cpu())
        p = torch.cat(probs) if probs else torch.zeros(0, len(self.classes))
        if not math.isfinite(loss_sum):
            raise Diverged(epoch=self.epoch, step=self.step)
        accuracy = float((p.argmax(1) == self.val_y).float().mean()) if len(p) else 0.0
        return loss_sum / max(1, len(self.val_samples)), accuracy, p

    # ------------------------------------------------------------------ what schedules may ask
    def request_stop(self, reason: StopReason) -> None:
        self.state.request_stop(reason)

    def limit_training_time(self, budget_s: float) -> None:
        """Training ends by `budget_s` after the run's start: the time left shown is capped to it."""
        if self.progress.clock is not None:
            self.progress.clock.end_training_by(budget_s - (time.time() - self.state.started_at))

    def end_after(self, epochs: int) -> None:
        """Train exactly `epochs` and keep the last (a plan chosen elsewhere, e.g. on cross-validation folds):
        the learning rate's schedule ends with them."""
        s = self.state
        s.best = LastEpoch(accuracy=s.best.accuracy, epoch=s.best.epoch, loss_at_best=s.best.loss_at_best,
                           lowest_loss=s.best.lowest_loss)
        s.total_steps = s.total_steps // s.config.epochs * epochs

    # ------------------------------------------------------------------ progress
    def report_progress(self, phase: str, step: int, steps: int, **kw) -> None:
        """A Progress event with the time left (progress.ProgressReporter): phase, step of steps, and optionally
        epoch, rate (images/s), loss, part (of the run's plan)."""
        self.progress.report(phase, step, steps, **kw)

    def _start_clock(self) -> None:
        if crossval.is_fold_run(self.config):  # no one watches a fold's time left: no probe of the network
            return
        self.progress.start_clock(self.net, self.prep, self.device, config=self.config, start_depth=self.depth,
                                  n_train=len(self.train_samples), n_val=len(self.val_samples),
                                  n_test=len(self.test_samples), depths=self.thaw.depths(self.depth, self.config.epochs),
                                  epoch_range=self.thaw.epoch_range(self.config.epochs, len(self.val_samples)))


for _name in RunState.__slots__:  # trainer.net, trainer.best, ... are the state's fields
    setattr(Trainer, _name, _forwarded(_name))
