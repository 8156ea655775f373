"""The training loop: one readable loop, extended through callbacks, that reports typed events.

Read top to bottom: `run_training` opens the run folder and always ends in exactly one final event;
`prepare` builds the network and its inputs; `fit` runs the epochs; `train_step` is one optimizer step.
What happens around it lives beside it: inputs.py (pictures), features.py (frozen layers' outputs computed
once), thaw.py (when frozen stages start to learn), selection.py (the epoch kept), checkpoint.py (resume),
finish.py (what is saved at the end). Callbacks see the documented surface in callbacks.TrainingState.
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
from transfer_core.runstore.runs import DEFAULT_RUNS_DIR, RunFolder, save_atomically
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
from transfer_core.training.selection import BestEpoch
from transfer_core.training.stepmemory import part_size_for, parts_words, split_count
from transfer_core.training.thaw import ThawSchedule

SCHEDULES = {"fixed": ThawSchedule, "progressive": Progressive}  # TrainConfig.schedule -> thaw schedule


@dataclass(frozen=True)
class RunResult:
    run_dir: Path | None
    final: Event


class Trainer:
    def __init__(self, config: TrainConfig, *, runs_dir: str | Path = DEFAULT_RUNS_DIR,
                 callbacks: list[Callback] = (), stop: threading.Event | None = None,
                 run_id: str | None = None, resume: bool = False):
        self.runs_dir = Path(runs_dir)
        # A run folder records where its data is as references (datarefs): back to this server's paths.
        self.config = resolved_config(config, self.runs_dir)
        self.resume = resume  # continue runs_dir/run_id from its checkpoint (workflows.train.resuming_trainer)
        self.callbacks = list(callbacks)  # with the config's methods' own (workflows.train.make_trainer)
        self.final_extra: dict = {}  # end-of-run method figures (e.g. target accuracy), sent with RunFinished
        self.stop, self.run_id = stop or threading.Event(), run_id
        self.device = pick_device(self.config.device or distributed.local_device())
        self.run: RunFolder | None = None
        self.best = BestEpoch()
        self.epochs_done = 0  # what a Stop reports: epochs whose results were recorded
        self.finish_early: str | None = None  # a reason to end before the planned epochs (set by callbacks too)
        self.t0 = time.time()
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
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.report_progress("preparing", 0, 1)
        shares = scan_shares(cfg, self.run.path, self.runs_dir, self.gen)
        self.report, self.train_samples, self.val_samples, self.test_samples = (
            shares.report, shares.train, shares.val, shares.test)
        self.classes = list(self.report.classes)
        self._build_network()
        self._start_clock()
        self.cache_mb = memory_budget_mb(cfg.cache_mb)  # the run's memory budget (core/memory.py)
        pictures = load_pictures(shares, self.prep, cache_mb=self.cache_mb, device=self.device, stop=self.stop,
                                 progress=lambda done, n: self.report_progress("preparing", done, n, part="decode"))
        self.train_store, self.val_store = pictures.train_store, pictures.val_store
        self.train_y, self.val_y = pictures.train_y, pictures.val_y
        for cb in self.callbacks:
            cb.before_fit(self)
        self.feature_cache = FeatureCache(
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
        cfg = self.config
        self.prep = get_backbone(cfg.backbone).preprocessing_at(cfg.image_size)
        self.net = network_for(cfg, len(self.classes), self.device)
        chosen = resolve_depth(cfg.freeze, self.net.num_stages)
        self.thaw = SCHEDULES[cfg.schedule].from_config(cfg, chosen, self.net.num_stages)
        self.callbacks.insert(0, self.thaw)  # first: a thaw happens before the methods' before_epoch
        self.depth = self.thaw.start_depth(chosen)
        apply_freeze(self.net, self.depth)
        self.run.save_model_description(self.classes, self.prep, cfg)

    def _keep_images(self) -> bool:
        return any(cb.needs_images for cb in self.callbacks)

    def thaw_epochs(self) -> set[int]:
        return set(self.thaw.epochs)

    def thaw_one_stage(self, epoch: int, *, prepare_cache: bool = True) -> None:
        """The last frozen stage starts to learn, in its own optimizer group (called by the ThawSchedule)."""
        self.depth -= 1
        apply_freeze(self.net, self.depth)
        add_stage(self.optimizer, self.net, self.config, self.depth)
        self.model = distributed.training_model(self.net, self.device)  # DDP synchronises the parameters that learned at wrapping time
        if prepare_cache:
            self.prepare_cache(now=epoch)

    def prepare_cache(self, now: int = 0) -> None:
        """The frozen part's outputs at the current depth; `now`: the epoch reached (a thaw still ahead
        makes the cache keep what the thaws ahead will need)."""
        # Augmented views are drawn from self.gen: remember its state, so a resumed run redraws the same ones.
        self.cache_gen_state = self.gen.get_state()
        self.feature_cache.prepare(self.depth, later=self.thaw.depths_to_keep(now, self.depth))
        self.part_size = part_size_for(self.net, self.feature_cache.run_frozen, self.prep.crop, self.depth,
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
        self.optimizer = build_optimizer(self.net, self.config, self.depth)
        self.model = distributed.training_model(self.net, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp(self.device))
        # A loss 50x that of guessing at random means the weights have blown up, even if still finite.
        self.divergence_limit = 50 * math.log(max(2, len(self.classes)))
        self.step = 0

    def fit(self, checkpoint_state: dict | None = None) -> Event:
        cfg = self.config
        self.start_optimizer()
        steps_per_epoch = max(1, len(self.epoch_order()))
        self.total_steps = steps_per_epoch * cfg.epochs
        self.warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
        self.epoch = self.epochs_done = checkpoint.restore(self, checkpoint_state) if self.resume else 0
        if self.epoch:  # resumed: the epochs done before are not part of what is left
            self.progress.clock.skip_to(f"train{self.epoch + 1}")
        for self.epoch in range(self.epoch + 1, cfg.epochs + 1):
            for cb in self.callbacks:
                cb.before_epoch(self, self.epoch)
            if self.finish_early is None:
                self.run_epoch(self.epoch)
            if distributed.any_rank(self.finish_early is not None):  # all ranks stop together
                break
        test_acc = finish(self)
        return self.event(RunFinished, best_val_accuracy=self.best.accuracy, best_epoch=self.best.epoch,
                          epochs_run=self.epochs_done, seconds=time.time() - self.t0,
                          reason=self.finish_early or "completed",
                          test_accuracy=test_acc, num_test=len(self.test_samples), extra=self.final_extra)

    def run_epoch(self, epoch: int) -> None:
        """Train and validate once; sets finish_early when early stopping says to end the run."""
        t_epoch, t_train = time.time(), 0.0
        set_train_mode(self.net, self.depth)
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
        self.epochs_done = epoch
        if self.best.update(epoch, val_loss, val_acc):
            save_atomically(checkpoint.weights_of(self.net), self.run.path / runfiles.BEST)
        checkpoint.save_checkpoint(self, epoch)
        if self.best.patience_ran_out(self.config.early_stopping):
            self.finish_early = f"early stopping: no better validation loss for {self.config.early_stopping} epochs"

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
                    raise Diverged(epoch=getattr(self, "epoch", 0), step=self.step)
                self.scaler.scale(loss * share).backward()
            value += part_value * share
            correct += int((logits.argmax(1) == part.y).sum())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
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
            raise Diverged(epoch=getattr(self, "epoch", 0), step=getattr(self, "step", 0))
        accuracy = float((p.argmax(1) == self.val_y).float().mean()) if len(p) else 0.0
        return loss_sum / max(1, len(self.val_samples)), accuracy, p

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
