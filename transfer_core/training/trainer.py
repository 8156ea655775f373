"""The training loop: one readable loop, extended through callbacks, that reports typed events.

Speed comes from not repeating work (see imagecache.py and features.py): images are decoded once;
frozen stages run without autograd, and their outputs are cached when nothing random sits before them.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from transfer_core.core.config import TrainConfig
from transfer_core.core.device import pick_device, plan_for, use_amp
from transfer_core.core.events import (
    DataReady,
    EpochEnd,
    Event,
    Progress,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
)
from transfer_core.data.datarefs import redact_paths, resolved_config, to_ref
from transfer_core.data.datasets import DatasetReport, scan_dataset
from transfer_core.data.imagecache import ImageStore, Stopped
from transfer_core.inference import novelty
from transfer_core.inference.calibration import save_calibration
from transfer_core.inference.predict import load_model, predict_probs
from transfer_core.models.augment import eval_view, train_view
from transfer_core.models.backbones import build_network, get_backbone
from transfer_core.models.freezing import (
    apply_freeze,
    describe_freeze,
    resolve_depth,
    set_train_mode,
)
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import (
    DEFAULT_RUNS_DIR,
    RunFolder,
    save_atomically,
    write_json,
)
from transfer_core.training import distributed, eta
from transfer_core.training.callbacks import Batch, Callback
from transfer_core.training.failures import Diverged, explain
from transfer_core.training.features import FeatureCache, cached_pooled
from transfer_core.training.optim import (
    add_stage,
    build_optimizer,
    lr_multiplier,
    set_lr,
)
from transfer_core.training.stepmemory import bytes_per_image, part_size, split_count

_PROGRESS_EVERY_S = 0.25


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
        config = resolved_config(config, self.runs_dir)
        self.config = config
        self.resume = resume  # continue runs_dir/run_id from its checkpoint (see workflows.train.resuming_trainer)
        self.checkpoint: dict | None = None
        self.callbacks = list(callbacks)  # with the config's methods' own (workflows.train.make_trainer)
        self.final_extra: dict = {}  # end-of-run method figures (e.g. target accuracy), sent with RunFinished
        self.stop = stop or threading.Event()
        self.run_id = run_id
        self.device = pick_device(config.device or distributed.local_device())
        self.scratch: Path | None = None  # under torchrun, ranks > 0 write here, not in the run folder
        self.run: RunFolder | None = None
        self.t0 = time.time()
        self._last_progress = 0.0

    # ------------------------------------------------------------------ events
    def emit(self, event: Event) -> None:
        if self.run is not None:
            self.run.append_event(event)
        for cb in self.callbacks:
            cb.on_event(self, event)

    def _event(self, cls, **fields) -> Event:
        return cls(run_id=self.run_id or "", time=time.time(), **fields)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped()

    def _check_stop_all_ranks(self) -> None:
        """In the step loop: under torchrun one rank's Stop stops every rank, so none waits for a rank that left."""
        if distributed.any_rank(self.stop.is_set()):
            raise Stopped()

    # ------------------------------------------------------------------ the whole run
    def run_training(self) -> RunResult:
        """Never raises for a training problem: it ends in exactly one RunFinished/RunStopped/RunFailed."""
        final: Event | None = None
        try:
            self.run = self._open_resumed() if self.resume else self._create_run()
            self.run_id = self.run.id
            self.emit(self._event(RunStarted, backbone=self.config.backbone, device=str(self.device),
                                  run_dir=str(self.run.path)))
            self.prepare()
            final = self._fit()
        except Stopped:
            final = self._event(RunStopped, best_val_accuracy=max(getattr(self, "best_acc", 0.0), 0.0),
                                epochs_run=getattr(self, "epochs_done", 0), seconds=time.time() - self.t0)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a RunFailed event, in words
            # Redacted here, not only on disk: the live view shows the message while the run is still open.
            final = self._event(RunFailed, error=redact_paths(explain(exc, self.config)),
                                detail=redact_paths("".join(traceback.format_exception_only(type(exc), exc)))
                                .strip()[-2000:],
                                seconds=time.time() - self.t0)
        finally:
            final = final or self._event(RunFailed, error="Training ended unexpectedly.")
            self._emit_final(final)
            self._release_memory()
            self._drop_scratch()
        return RunResult(self.run.path if self.run and not self.scratch else None, final)

    def _create_run(self) -> RunFolder:
        """Rank 0 (the only rank without torchrun) writes the run folder; other ranks use a scratch copy."""
        if distributed.is_main():
            run = RunFolder.create(self.runs_dir, self.config, self.run_id)
            distributed.broadcast_object(run.id)
            return run
        run_id = distributed.broadcast_object(None)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"transfer-rank{distributed.rank()}-"))
        return RunFolder.create(self.scratch, self.config, run_id)

    def _drop_scratch(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _emit_final(self, final: Event) -> None:
        try:
            self.emit(final)
        except Exception:  # noqa: BLE001 - a disk or callback error must not hide the run's real end
            for cb in self.callbacks:
                try:
                    cb.on_event(self, final)
                except Exception:  # noqa: BLE001
                    pass

    def _release_memory(self) -> None:
        for name in ("train_store", "val_store", "feature_cache"):
            setattr(self, name, None)

    # ------------------------------------------------------------------ preparation
    def prepare(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.report_progress("preparing", 0, 1)
        self.report = self._scan()
        self.classes = list(self.report.classes)
        self.spec = get_backbone(cfg.backbone)
        size = self.spec.preprocessing.crop if (cfg.image_size is None or self.spec.fixed_size) else cfg.image_size
        self.prep = self.spec.preprocessing.at_size(size)
        self.net = build_network(cfg.backbone, len(self.classes), pretrained=cfg.pretrained,
                                 weights_file=cfg.weights_file, head=cfg.head, hidden=cfg.mlp_hidden,
                                 dropout=cfg.dropout).to(self.device)
        if plan_for(self.device).channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.depth = resolve_depth(cfg.freeze, self.net.num_stages)
        # Not with gradual unfreezing (its own schedule of thaws), nor with full fine-tuning: caching the
        # stem's output would hold ~10x the memory of the pictures themselves, to skip a cheap layer.
        self.quick_start = (0 < cfg.quick_start_epochs < cfg.epochs and 0 < self.depth < self.net.num_stages
                            and not cfg.unfreeze_at)
        if self.quick_start:  # one more stage frozen (and cached) for the first epochs
            self.depth += 1
        apply_freeze(self.net, self.depth)
        self._save_model_description()
        self._start_clock()
        self._load_images()
        for cb in self.callbacks:
            cb.before_fit(self)
        self.feature_cache = FeatureCache(self)
        self._prepare_cache()
        plan = describe_freeze(self.net, self.depth)
        self.emit(self._event(DataReady, classes=tuple(self.classes), num_train=len(self.train_samples),
                              num_val=len(self.val_samples), skipped=len(self.report.skipped),
                              trainable_params=plan.trainable_params, total_params=plan.total_params,
                              plan=f"{plan.describe()} {self.feature_cache.describe()}{self._parts_words()}"
                                   f"{self._quick_start_words()}"))

    def _quick_start_words(self) -> str:
        if not self.quick_start:
            return ""
        n = self.config.quick_start_epochs
        first = "the first epoch" if n == 1 else f"the first {n} epochs"
        return (f" Quick start: this holds for {first}; then {self.net.stage_names[self.depth - 1]} "
                f"learns too, as you chose.")

    def _parts_words(self) -> str:
        n = split_count(self.config.batch_size, self.part_size)
        if n == 1:
            return ""
        return (f" To stay within {self.config.step_memory_mb} MB, each batch of {self.config.batch_size} is "
                f"learned from in {n} parts (same update, less memory).")

    def _scan(self) -> DatasetReport:
        cfg = self.config
        report = scan_dataset(cfg.data, val_split=cfg.val_split, seed=cfg.seed, extract_to=self.run.path / "data",
                              test_share=cfg.test_share)
        self.train_samples = list(report.train)
        self.val_samples = list(report.val)
        self.test_samples = list(report.test)  # never seen until the end: see _test
        if cfg.max_images and len(self.train_samples) > cfg.max_images:
            order = torch.randperm(len(self.train_samples), generator=self.gen)[:cfg.max_images]
            self.train_samples = [self.train_samples[i] for i in sorted(order.tolist())]
        write_json(self.run.path / runfiles.DATASET, {**report.to_dict(), "root": to_ref(report.root, self.runs_dir)})
        return report

    def _save_model_description(self) -> None:
        cfg = self.config
        write_json(self.run.path / runfiles.CLASSES, self.classes)
        write_json(self.run.path / runfiles.PREPROCESSING, self.prep.to_dict())
        write_json(self.run.path / runfiles.MODEL, runfiles.ModelDescription(
            cfg.backbone, len(self.classes), cfg.head, cfg.mlp_hidden, cfg.dropout).to_dict())

    def _load_images(self) -> None:
        budget = self.config.cache_mb * 2 ** 20
        n_train, n_val = len(self.train_samples), len(self.val_samples)
        total = n_train + n_val

        def progress(offset):
            return lambda done, _n: self.report_progress("preparing", offset + done, total, part="decode")

        pin = plan_for(self.device).pin_memory
        self.train_store = ImageStore([s.path for s in self.train_samples], self.prep, budget_bytes=budget,
                                      progress=progress(0), stop=self.stop, pin_memory=pin)
        self.val_store = ImageStore([s.path for s in self.val_samples], self.prep,
                                    budget_bytes=max(0, budget - self.train_store.nbytes),
                                    progress=progress(n_train), stop=self.stop, pin_memory=pin)
        self.train_y = torch.tensor([s.label for s in self.train_samples])
        self.val_y = torch.tensor([s.label for s in self.val_samples])

    # ------------------------------------------------------------------ batches
    def train_batch(self, idx: torch.Tensor, epoch: int) -> Batch:
        y = self.train_y[idx].to(self.device, non_blocking=True)
        cached = self.feature_cache.train_inputs(idx, epoch)
        if cached is not None:
            return Batch(cached[0].to(self.device, non_blocking=True), cached[1], y, idx)
        images = train_view(self.train_store.batch(idx).to(self.device, non_blocking=True), self.prep,
                            self.config.augment, self.gen)
        x, start = self.feature_cache.run_frozen(images, self.depth)
        keep = any(cb.needs_images for cb in self.callbacks)
        return Batch(x, start, y, idx, images if keep else None)

    def val_batches(self):
        bs = max(64, self.config.batch_size)
        for i in range(0, len(self.val_samples), bs):
            idx = torch.arange(i, min(i + bs, len(self.val_samples)))
            cached = self.feature_cache.val_inputs(idx)
            if cached is None:
                images = eval_view(self.val_store.batch(idx).to(self.device, non_blocking=True), self.prep)
                cached = self.feature_cache.run_frozen(images, self.depth)
            yield cached[0].to(self.device), cached[1], self.val_y[idx].to(self.device)

    def _steps(self) -> list[torch.Tensor]:
        perm = torch.randperm(len(self.train_samples), generator=self.gen)
        if distributed.active():  # as DistributedSampler: one shuffle for all ranks, each takes its share
            perm = distributed.shard(distributed.broadcast_tensor(perm), distributed.rank(), distributed.world_size())
        chunks = list(perm.split(self.config.batch_size))
        if len(chunks) > 1 and len(chunks[-1]) < 2:  # BatchNorm cannot train on a batch of one
            chunks.pop()
        return chunks

    # ------------------------------------------------------------------ fitting
    def _fit(self) -> Event:
        cfg = self.config
        self.optimizer = build_optimizer(self.net, cfg, self.depth)
        self.model = self._parallel()
        steps_per_epoch = max(1, len(self._steps()))
        self.total_steps = steps_per_epoch * cfg.epochs
        self.warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
        self.step = 0
        # A loss 50x that of guessing at random means the weights have blown up, even if still finite.
        self.divergence_limit = 50 * math.log(max(2, len(self.classes)))
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp(self.device))
        self.best_acc, self.best_epoch, self.bad_epochs = -1.0, 0, 0
        self.best_loss = self.loss_at_best = float("inf")
        reason = "completed"
        self.epoch = self._restore() if self.resume else 0
        self.epochs_done = self.epoch
        if self.epoch:  # resumed: the epochs done before are not part of what is left
            self.clock.skip_to(f"train{self.epoch + 1}")
        for self.epoch in range(self.epoch + 1, cfg.epochs + 1):
            self._maybe_unfreeze(self.epoch)
            for cb in self.callbacks:
                cb.before_epoch(self, self.epoch)
            if distributed.any_rank(self._one_epoch(self.epoch)):  # all ranks stop together
                reason = f"early stopping: no better validation loss for {cfg.early_stopping} epochs"
                break
        self._finish()
        return self._event(RunFinished, best_val_accuracy=self.best_acc, best_epoch=self.best_epoch,
                           epochs_run=self.epoch, seconds=time.time() - self.t0, reason=reason,
                           test_accuracy=self.test_acc, num_test=len(self.test_samples), extra=self.final_extra)

    def thaw_epochs(self) -> set[int]:
        """Epochs at whose start the last frozen stage starts to learn: the end of the quick start and
        gradual unfreezing's milestones."""
        epochs = set(self.config.unfreeze_at)
        if self.quick_start:
            epochs.add(self.config.quick_start_epochs + 1)
        return epochs

    def _maybe_unfreeze(self, epoch: int) -> None:
        if epoch not in self.thaw_epochs() or self.depth == 0:
            return
        self._thaw_one_stage()
        self._prepare_cache(now=epoch)

    def _thaw_one_stage(self) -> None:
        self.depth -= 1
        apply_freeze(self.net, self.depth)
        add_stage(self.optimizer, self.net, self.config, self.depth)
        self.model = self._parallel()  # DDP synchronises the parameters that learned at wrapping time

    def _prepare_cache(self, now: int = 0) -> None:
        """The frozen part's cached outputs at the current depth; `now`: the epoch reached (thaws after it
        are still ahead, and the cache keeps what they will need)."""
        # Augmented views are drawn from self.gen: remember its state, so a resumed run redraws the same ones.
        self.cache_gen_state = self.gen.get_state()
        ahead = any(e > now for e in self.thaw_epochs()) and self.depth > 0
        self.feature_cache.prepare(self.depth, later=self.depth - 1 if ahead else None)
        self._plan_step_memory()

    def _parallel(self) -> torch.nn.Module:
        """What the training step calls: under torchrun, DDP around the network (gradients averaged over ranks)."""
        model = distributed.FeaturesAndLogits(self.net)
        return distributed.wrap(model, self.device) if distributed.active() else model

    def _one_epoch(self, epoch: int) -> bool:
        """Train and validate once; True when early stopping says to end the run."""
        t_epoch = time.time()
        set_train_mode(self.net, self.depth)
        loss_sum, correct, seen, t_train = 0.0, 0, 0, 0.0
        steps = self._steps()
        for i, idx in enumerate(steps):
            self._check_stop_all_ranks()
            t = time.time()
            loss, n_correct = self._train_step(self.train_batch(idx, epoch))
            t_train += time.time() - t
            loss_sum, correct, seen = loss_sum + loss * len(idx), correct + n_correct, seen + len(idx)
            self.report_progress("train", i + 1, len(steps), epoch=epoch,
                           rate=seen * distributed.world_size() / max(t_train, 1e-9),
                           loss=loss_sum / seen)
        loss_sum, correct, seen = distributed.sum_over_ranks([loss_sum, correct, seen])  # whole-epoch figures
        val_loss, val_acc, _ = self.evaluate()
        extra: dict = {}
        if distributed.active():
            extra["processes"] = distributed.world_size()
        for cb in self.callbacks:
            cb.after_epoch(self, epoch, extra)
        self.emit(self._event(EpochEnd, epoch=epoch, epochs=self.config.epochs, train_loss=loss_sum / max(seen, 1),
                              train_accuracy=correct / max(seen, 1), val_loss=val_loss, val_accuracy=val_acc,
                              lr=self.optimizer.param_groups[0]["lr"], seconds=time.time() - t_epoch,
                              images_per_sec=seen / max(t_train, 1e-9), extra=extra))
        self.epochs_done = epoch  # what a Stop reports: epochs whose results were recorded, not the one cut short
        return self._after_validation(epoch, val_loss, val_acc)

    def _train_step(self, batch: Batch) -> tuple[float, int]:
        """One optimizer step. A batch whose activations would pass `step_memory_mb` runs in parts whose
        gradients add up (stepmemory.py): each part's loss is weighted by its share of the batch."""
        set_lr(self.optimizer, lr_multiplier(self.step, self.total_steps, self.warmup_steps))
        self.optimizer.zero_grad(set_to_none=True)
        parts = batch.parts(split_count(len(batch.y), self.part_size))
        value, correct = 0.0, 0
        for i, part in enumerate(parts):
            share = len(part.y) / len(batch.y)
            with self._gradient_sync(last=i == len(parts) - 1):
                loss, logits = self._loss(part)
                part_value = float(loss.detach())
                if distributed.any_rank(not math.isfinite(part_value) or part_value > self.divergence_limit):
                    raise Diverged(epoch=self.epoch, step=self.step)
                self.scaler.scale(loss * share).backward()
            value += part_value * share
            correct += int((logits.argmax(1) == part.y).sum())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return value, correct

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        with torch.autocast(self.device.type, enabled=use_amp(self.device)):
            # Same as self.net(x, start), but the pooled features stay at hand for feature-level methods.
            # self.model returns both; under torchrun it is DDP-wrapped (DDP only syncs through forward()).
            batch.features, logits = self.model(batch.x, batch.start)
            label_weight = math.prod(cb.label_weight for cb in self.callbacks)  # distillation lowers it
            loss = label_weight * F.cross_entropy(logits.float(), batch.y, label_smoothing=cfg.label_smoothing)
            for cb in self.callbacks:
                extra = cb.extra_loss(self, batch, logits)
                if extra is not None:
                    loss = loss + extra
        return loss, logits

    def _gradient_sync(self, last: bool):
        """Under torchrun, gradients are averaged across processes once per step, after its last part."""
        if last or not distributed.active():
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _plan_step_memory(self) -> None:
        """How many images one forward + backward may hold (stepmemory.py), for the current freeze depth."""
        probe = torch.zeros(2, 3, self.prep.crop, self.prep.crop, device=self.device)
        x, start = self.feature_cache.run_frozen(probe, self.depth)
        per_image = bytes_per_image(self.net, x, start)
        self.part_size = part_size(self.config.batch_size, per_image, self.config.step_memory_mb)

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
        n = max(1, len(self.val_samples))
        if not torch.isfinite(torch.tensor(loss_sum)):
            raise Diverged(epoch=getattr(self, "epoch", 0), step=getattr(self, "step", 0))
        return loss_sum / n, float((p.argmax(1) == self.val_y).float().mean()) if len(p) else 0.0, p

    def _after_validation(self, epoch: int, val_loss: float, val_acc: float) -> bool:
        # Best = highest validation accuracy; among equals, the lower validation loss.
        if val_acc > self.best_acc or (val_acc == self.best_acc and val_loss < self.loss_at_best):
            self.best_acc, self.best_epoch, self.loss_at_best = val_acc, epoch, val_loss
            self._save_weights(self.run.path / runfiles.BEST)
        self.bad_epochs = 0 if val_loss < self.best_loss else self.bad_epochs + 1
        self.best_loss = min(self.best_loss, val_loss)
        self._save_checkpoint(epoch)
        return self.config.early_stopping > 0 and self.bad_epochs >= self.config.early_stopping

    def _save_weights(self, path: Path) -> None:
        save_atomically({k: v.detach().cpu() for k, v in self.net.state_dict().items()}, path)

    def _save_checkpoint(self, epoch: int) -> None:
        """The last finished epoch, so an interrupted run can be resumed."""
        state = {"epoch": epoch, "model": {k: v.cpu() for k, v in self.net.state_dict().items()},
                 "optimizer": self.optimizer.state_dict(), "best_acc": self.best_acc, "best_epoch": self.best_epoch,
                 "best_loss": self.best_loss, "bad_epochs": self.bad_epochs, "depth": self.depth,
                 "step": self.step, "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                 "loss_at_best": self.loss_at_best, "cache_generator": self.cache_gen_state,
                 "scaler": self.scaler.state_dict()}
        save_atomically(state, self.run.path / runfiles.CHECKPOINT)

    # ------------------------------------------------------------------ resuming an interrupted run
    def _open_resumed(self) -> RunFolder:
        run = RunFolder(self.runs_dir / self.run_id)
        path = run.path / runfiles.CHECKPOINT
        # weights_only: a checkpoint is read like any file from outside, without running code from it.
        self.checkpoint = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
        run.keep_events_through_epoch(self.checkpoint["epoch"] if self.checkpoint else 0)
        run.claim()
        return run

    def _restore(self) -> int:
        """Put back everything the checkpoint saved, so the remaining epochs run exactly as they would have."""
        state = self.checkpoint
        if state is None:  # interrupted before its first epoch ended: start over, in the same folder
            return 0
        self.net.load_state_dict(state["model"])
        for epoch in range(1, state["epoch"] + 1):  # thaw the same stages, so the optimizer has the same groups
            if epoch in self.thaw_epochs() and self.depth > 0:
                self._thaw_one_stage()
        if self.depth != self.feature_cache.depth:
            self.gen.set_state(state["cache_generator"])
            self._prepare_cache(now=state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_acc, self.best_epoch, self.best_loss = state["best_acc"], state["best_epoch"], state["best_loss"]
        self.loss_at_best = state.get("loss_at_best", state["best_loss"])
        self.bad_epochs, self.step = state["bad_epochs"], state["step"]
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        for event in self.run.epochs():  # watchers (the app's live curves) get the whole history
            for cb in self.callbacks:
                cb.on_event(self, event)
        return state["epoch"]

    def _finish(self) -> None:
        """Put the best epoch's weights back, let methods adjust them, save them with validation results."""
        best = self.run.path / runfiles.BEST
        if best.is_file():
            self.net.load_state_dict(torch.load(best, map_location=self.device, weights_only=True))
        for cb in self.callbacks:
            cb.after_fit(self)
        self._save_weights(best)
        _, acc, probs = self.evaluate()
        self.best_acc = acc
        self._save_predictions(runfiles.VALIDATION, self.val_samples, probs)
        # Fitted once here, so the run folder alone predicts with calibrated confidence (predict.py).
        save_calibration(self.run.path, probs, self.val_y)
        self._fit_novelty()
        self._test()

    def _fit_novelty(self) -> None:
        """The final model's pooled features of the training pictures (up to novelty.MAX_REFERENCE) and the
        validation pictures: what Predict needs to say "this does not look like your training pictures"."""
        if not distributed.is_main():
            return
        self.report_progress("checking", 0, 1, part="finish")
        idx = novelty.reference_sample(len(self.train_samples), self.config.seed)
        reference = self._pooled("train", self.train_store, idx)
        validation = self._pooled("val", self.val_store, torch.arange(len(self.val_samples)))
        novelty.fit_and_save(self.run.path, reference, validation)

    def _pooled(self, which: str, store, idx: torch.Tensor) -> torch.Tensor:
        """From the feature cache where it holds these pictures (the frozen layers ran once already)."""
        cached = cached_pooled(self.feature_cache, which, idx)
        return cached if cached is not None else novelty.store_features(self.net, store, self.prep, self.device, idx)

    def _test(self) -> None:
        """The test share, through the saved model as Predict loads it. The validation pictures chose the
        best epoch and fitted the confidence; nothing was tuned on these, so theirs is the honest figure."""
        self.test_acc = None
        if not self.test_samples or not distributed.is_main():
            return
        self.report_progress("testing", 0, 1, part="finish")
        model = load_model(self.run.path, device=self.device)
        with torch.inference_mode():
            probs = predict_probs(model, [s.path for s in self.test_samples], calibrated=False)
        labels = torch.tensor([s.label for s in self.test_samples])
        self.test_acc = float((probs.argmax(1) == labels).float().mean())
        self._save_predictions(runfiles.TEST, self.test_samples, probs)

    def _save_predictions(self, name: str, samples: list, probs: torch.Tensor) -> None:
        root = self.report.root  # the pictures are named below a data reference: no server path (datarefs)
        write_json(self.run.path / name, runfiles.Predictions(
            to_ref(root, self.runs_dir), [_relative(s.path, root) for s in samples], [s.label for s in samples],
            probs.tolist()).to_dict())

    # ------------------------------------------------------------------ progress
    def report_progress(self, phase: str, step: int, steps: int, *, epoch: int = 0, rate: float = 0.0,
                  loss: float = 0.0, part: str | None = None) -> None:
        """`part` names the part of the plan (eta.plan_run) the run is in; the time left covers the rest."""
        clock = getattr(self, "clock", None)
        left = clock.at(part or (f"train{epoch}" if phase == "train" else phase), step, steps) if clock else 0.0
        now = time.time()
        if step < steps and now - self._last_progress < _PROGRESS_EVERY_S:
            return
        self._last_progress = now
        self.emit(self._event(Progress, phase=phase, epoch=epoch, step=step, steps=steps,
                              images_per_sec=rate, eta_seconds=left, train_loss=loss))

    def _start_clock(self) -> None:
        """The plan of the whole run, priced by timing the network once on a probe (a fraction of a second)."""
        cfg = self.config
        thaws = self.thaw_epochs()
        depths = [self.depth - sum(t <= e for t in thaws) for e in range(1, cfg.epochs + 1)]
        cached = self.depth > 0 and (cfg.augment == "none" or cfg.feature_views > 0)
        stage_s = eta.stage_seconds(self.net, self.prep.crop, self.device)
        self.clock = eta.RunClock(eta.plan_run(stage_s, n_train=len(self.train_samples),
                                               n_val=len(self.val_samples), n_test=len(self.test_samples),
                                               epochs=cfg.epochs, depths=depths, cached=cached,
                                               views=cfg.feature_views if cfg.augment != "none" else 1))
        self.report_progress("preparing", 0, 1, part="decode")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name
