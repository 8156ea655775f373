"""Runs on disk: one folder per run, enough to predict with nothing else.

    runs/<id>/config.json        the TrainConfig
              events.jsonl       every event, appended as it happens
              classes.json       class names, in label order
              preprocessing.json what images must go through before the model
              model.json         how to rebuild the network (backbone, head, number of classes)
              best.pt            state dict of the best epoch (by validation accuracy)
              checkpoint.pt      last finished epoch, with optimizer state, to resume an interrupted run
              validation.json    the best model's predictions on the validation images
              process.json       which process is training it (to tell "running" from "interrupted")
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import (
    FINAL_EVENTS,
    DataReady,
    EpochEnd,
    Event,
    ModelReady,
    RunFinished,
    RunStopped,
    event_from_dict,
)
from transfer_core.data.datarefs import portable_config, redact_paths, resolve
from transfer_core.runstore import runfiles

DEFAULT_RUNS_DIR = Path(os.environ.get("TRANSFER_STUDIO_RUNS", "runs"))


def _shareable(event: dict) -> dict:
    """An event as the run folder keeps it: everyone may read it, so no server path (messages included)."""
    if event.get("run_dir"):
        event["run_dir"] = Path(event["run_dir"]).name
    return {k: redact_paths(v) if k in ("error", "detail") else v for k, v in event.items()}


def new_run_id(backbone: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{backbone}-{secrets.token_hex(2)}"


def write_json(path: Path, obj) -> None:
    """Write atomically, so a crash never leaves half a file where a whole one was."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False))
    tmp.replace(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start(pid: int) -> str | None:
    """When process `pid` started (Linux), so a pid reused after a restart is not taken for the trainer."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, after the command name in brackets


def _trainer_alive(owner: dict) -> bool:
    """Whether the process that trains the run still runs. A run training on another machine (a Ray
    worker writing to a shared folder) cannot be checked from here and counts as running; if that worker
    dies, the app that followed it removes its process.json (rayjobs), so the run reads as interrupted."""
    if owner.get("host", socket.gethostname()) != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return False
    recorded = owner.get("start")
    return recorded is None or recorded == _process_start(pid)


def save_atomically(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash or a full disk never leaves half a file.

    torch turns a failed write into a cryptic RuntimeError; the real OSError (disk full, file too
    large, read-only) is kept and raised instead, so the user is told what happened.
    """
    import torch

    tmp = path.with_name(path.name + ".tmp")
    writer = None
    try:
        with open(tmp, "wb") as f:
            writer = _ErrorKeepingWriter(f)
            torch.save(obj, writer)
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # a partial file would only use up the space that is missing
        if writer is not None and writer.error is not None and exc is not writer.error:
            raise writer.error from None
        raise


class _ErrorKeepingWriter:
    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self.f.flush()
        except OSError as exc:
            self.error = exc
            raise


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.id = self.path.name

    # ---- creation / writing ---------------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: str | Path, config: TrainConfig, run_id: str | None = None) -> RunFolder:
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        run = cls(runs_dir / (run_id or new_run_id(config.backbone)))
        try:
            run.path.mkdir()  # never reuses (and so never overwrites) an existing run
        except FileExistsError as exc:  # what is there says who took the id (seen once in CI, not reproduced)
            inside = sorted(p.name for p in run.path.iterdir())[:8]
            raise FileExistsError(f"{exc} (holding {inside}, pid {os.getpid()})") from exc
        portable_config(config, runs_dir).save(run.path / runfiles.CONFIG)
        run.claim()
        return run

    def save_model_description(self, classes: list[str], prep, config: TrainConfig) -> None:
        """What Predict needs to rebuild the network: class names, preprocessing, architecture and head."""
        write_json(self.path / runfiles.CLASSES, classes)
        write_json(self.path / runfiles.PREPROCESSING, prep.to_dict())
        write_json(self.path / runfiles.MODEL, runfiles.ModelDescription(
            config.backbone, len(classes), config.head, config.mlp_hidden, config.dropout).to_dict())

    def claim(self) -> None:
        pid = os.getpid()
        write_json(self.path / runfiles.PROCESS, {"pid": pid, "since": time.time(), "start": _process_start(pid),
                                                  "host": socket.gethostname()})

    def append_event(self, event: Event) -> None:
        with open(self.path / runfiles.EVENTS, "a", encoding="utf-8") as f:
            f.write(json.dumps(_shareable(event.to_dict()), ensure_ascii=False) + "\n")

    def keep_events_through_epoch(self, epoch: int) -> None:
        """Before resuming from epoch `epoch`'s checkpoint: drop what the interrupted process wrote after
        it (a half-finished epoch, a half-written line, a Stopped/Failed end), so the history reads as one run."""
        kept, lines = [], []
        try:
            lines = (self.path / runfiles.EVENTS).read_text(encoding="utf-8").splitlines()
        except OSError:
            pass
        for line in lines:
            try:
                event = event_from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(event, FINAL_EVENTS) or (getattr(event, "epoch", 0) > epoch):
                continue
            kept.append(line + "\n")
        tmp = self.path / "events.jsonl.tmp"
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(self.path / runfiles.EVENTS)

    def model_description(self) -> runfiles.ModelDescription:
        return runfiles.ModelDescription.from_dict(self.read_json(runfiles.MODEL))

    def predictions(self, name: str = runfiles.VALIDATION) -> runfiles.Predictions | None:
        record = self.read_json(name)
        return runfiles.Predictions.from_dict(record) if record else None

    def validation_images(self, name: str = runfiles.VALIDATION) -> list[str]:
        """Where the validation (or test.json's) pictures are on this server, in the file's order ('' where
        unknown)."""
        val = self.read_json(name) or {}
        if "paths" in val:  # runs of earlier versions kept absolute paths
            return [str(p) for p in val["paths"]]
        try:
            root = Path(resolve(val.get("root"), self.path.parent) or "")
        except ValueError:
            return ["" for _ in val.get("names", [])]
        return [str(root / name) if val.get("root") else "" for name in val.get("names", [])]

    # ---- reading --------------------------------------------------------------------------------
    @property
    def config(self) -> TrainConfig:
        return TrainConfig.load(self.path / runfiles.CONFIG)

    def read_json(self, name: str, default=None):
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return default

    def events(self) -> list[Event]:
        """All events; a half-written last line (the process was killed mid-write) is ignored."""
        out = []
        try:
            lines = (self.path / runfiles.EVENTS).read_text(encoding="utf-8").splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                out.append(event_from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def epochs(self) -> list[EpochEnd]:
        return [e for e in self.events() if isinstance(e, EpochEnd)]

    def final_event(self, events: list[Event] | None = None) -> Event | None:
        events = self.events() if events is None else events
        return next((e for e in reversed(events) if isinstance(e, FINAL_EVENTS)), None)

    def status(self, events: list[Event] | None = None) -> str:
        """finished | stopped | failed | running | interrupted."""
        final = self.final_event(events)
        if final is not None:
            return {"RunFinished": "finished", "RunStopped": "stopped", "RunFailed": "failed"}[final.kind]
        return "running" if _trainer_alive(self.read_json(runfiles.PROCESS, {})) else "interrupted"

    def has_model(self) -> bool:
        return (self.path / runfiles.BEST).is_file() and (self.path / runfiles.MODEL).is_file()


@dataclass(frozen=True)
class RunSummary:
    id: str
    path: Path
    status: str
    backbone: str
    best_val_accuracy: float | None  # the kept model's (the first model's when no epoch replaced it)
    epochs_run: int
    created: float
    config: TrainConfig | None
    has_model: bool
    best_epoch: int | None = None  # which model is kept: 0 is the first model, fitted before any epoch
    num_val: int = 0  # validation pictures its accuracy was measured on

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% Wilson interval of best_val_accuracy (None: no accuracy, or unknown share size)."""
        if self.best_val_accuracy is None or not self.num_val:
            return None
        from transfer_core.core.metrics import wilson_interval  # here: metrics imports torch, a run list need not

        return wilson_interval(round(self.best_val_accuracy * self.num_val), self.num_val)


def kept_model(events: list[Event]) -> tuple[float | None, int | None]:
    """(validation accuracy, epoch) of the model a run keeps, epoch 0 being the first model (ModelReady).

    A finished run says it (its figure is the saved model's, measured again at the end); a stopped run says
    its accuracy. Otherwise (running, interrupted) the first model stays unless a later epoch beat it: a
    run that ends at its first model trains no epoch, and its accuracy is the first model's."""
    final = next((e for e in reversed(events) if isinstance(e, (RunFinished, RunStopped))), None)
    ready = next((e for e in events if isinstance(e, ModelReady)), None)
    candidates = ([(ready.val_accuracy, 0)] if ready else []) + \
        [(e.val_accuracy, e.epoch) for e in events if isinstance(e, EpochEnd)]
    if isinstance(final, RunFinished) and final.best_val_accuracy >= 0:
        return final.best_val_accuracy, final.best_epoch
    if not candidates:
        return None, None
    best = max(candidates, key=lambda c: (c[0], -c[1]))  # ties: the earlier model, as the trainer keeps it
    if isinstance(final, RunStopped):  # its figure, and the model that reached it
        best = next((c for c in candidates if abs(c[0] - final.best_val_accuracy) < 1e-9), best)
    return best


def summarize(run: RunFolder) -> RunSummary:
    events = run.events()
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    try:
        config = run.config
    except (OSError, ValueError, TypeError):
        config = None
    accuracy, epoch = kept_model(events)
    data = next((e for e in events if isinstance(e, DataReady)), None)
    return RunSummary(id=run.id, path=run.path, status=run.status(events),
                      backbone=config.backbone if config else "?", best_val_accuracy=accuracy,
                      epochs_run=len(epochs), created=events[0].time if events else run.path.stat().st_mtime,
                      config=config, has_model=run.has_model(), best_epoch=epoch,
                      num_val=data.num_val if data else 0)


def list_runs(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[RunSummary]:
    """Every run folder under runs_dir, newest first. Folders that are not runs are ignored."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = [RunFolder(p) for p in runs_dir.iterdir() if (p / runfiles.CONFIG).is_file()]
    return sorted((summarize(r) for r in runs), key=lambda s: s.created, reverse=True)
