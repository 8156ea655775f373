"""Predict's answers and heat maps, made as a task in the engine's queue, never on the page's thread.

The task runs in the queue's lane for file work (files_only: no network, never behind a training run); the
page waits a moment for it, so a few pictures answer at once, and a longer batch shows its progress and
Stop. Its result stays the page's while the pictures and settings stay the same, so a redraw shows it again
without running the model."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import streamlit as st
from PIL import Image

from transfer_core.core.i18n import N_, _
from transfer_core.data.datasets import BadImage
from transfer_core.data.imagecache import Stopped
from transfer_core.inference.gradcam import explain
from transfer_core.inference.predict import Answer, LoadedModel, answer, load_model, to_rgb
from transfer_core.runstore import runfiles
from transfer_core.service.jobs import default_queue

from . import session, tasks

KEY = "predict_task"  # the task's id
KEY_FOR = "predict_task_for"  # what it was asked for: a new question submits a new task
KIND = N_("Classifying the pictures")
WAIT_S = 2.0  # answers ready by then show at once; a longer batch shows its progress meanwhile
_MODELS_KEPT = 4


@dataclass(frozen=True)
class Shown:
    """One picture's outcome: what the model saw and answered, or why it was skipped."""
    name: str
    picture: Image.Image | None  # upright RGB, as the model sees it
    result: Answer | None
    heat_map: Image.Image | None  # Grad-CAM over the picture, when asked
    skipped: str = ""  # why it could not be read (English, retranslated on display)


@dataclass(frozen=True)
class Answers:
    model: LoadedModel
    shown: list[Shown]


def answers_when_ready(run_dir: Path, images: list[tuple[str, bytes]], threshold: float, k: int,
                       heat_maps: bool) -> Answers | None:
    """The answers for these pictures and settings; None while their task waits or runs (shown with Stop)."""
    stamp = (run_dir / runfiles.BEST).stat().st_mtime_ns  # a better model saved since: asked again
    digest = hashlib.sha256(b"".join(hashlib.sha256(data).digest() for _name, data in images)).hexdigest()
    key = (str(run_dir), stamp, tuple(name for name, _data in images), digest, threshold, k, heat_maps)
    if st.session_state.get(KEY_FOR) != key or default_queue().task(st.session_state.get(KEY, "")) is None:
        _let_go(st.session_state.get(KEY, ""))
        st.session_state[KEY_FOR] = key
        task = tasks.submit(KEY, KIND, partial(_answer_all, run_dir, stamp, images, threshold, k, heat_maps),
                            files_only=True)
        default_queue().wait(task.id, timeout=WAIT_S)
    task = tasks.follow(KEY)
    if task is not None and task.result is None and st.button(
            _("Classify them again"), key="predict_again", help=_("Runs the model on the same pictures once more.")):
        st.session_state.pop(KEY_FOR, None)  # stopped or failed (said above): a new task on the next draw
        st.rerun()
    return task.result if task is not None else None


def _let_go(task_id: str) -> None:
    """The previous question's task: stopped if it still waits or runs (it is not wanted any more), else its
    pictures and heat maps let go now rather than when the queue forgets the task, hours later."""
    old = default_queue().task(task_id)
    if old is None:
        return
    if old.state in ("queued", "running"):
        default_queue().stop(old.id, owner=session.workspace().token)
    else:
        old.result = None


def _answer_all(run_dir: Path, stamp: int, images: list[tuple[str, bytes]], threshold: float, k: int,
                heat_maps: bool, report, stop) -> Answers:
    """The task's work, on a queue thread."""
    model = _model(str(run_dir), stamp)
    shown = []
    for i, (name, data) in enumerate(images):
        if stop.is_set():
            raise Stopped()
        report(i, len(images), N_("classifying the pictures"))
        shown.append(_one(model, name, data, threshold, k, heat_maps))
    return Answers(model, shown)


def _one(model: LoadedModel, name: str, data: bytes, threshold: float, k: int, heat_maps: bool) -> Shown:
    try:
        picture = to_rgb(data)  # upright RGB, whatever the file's format: what the model sees
    except BadImage as exc:
        return Shown(name, None, None, None, skipped=str(exc))
    result = answer(model, [picture], threshold=threshold, k=k)[0]
    return Shown(name, picture, result, explain(model, picture).overlay() if heat_maps else None)


_models: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()  # (run, best.pt's time) -> model
_models_lock = threading.Lock()  # two people's tasks may ask at once (queue threads)


def _model(run_dir: str, stamp: int) -> LoadedModel:
    """The run's model, loaded once per saved version and kept for the app's other people and questions."""
    with _models_lock:
        if (run_dir, stamp) in _models:
            _models.move_to_end((run_dir, stamp))
            return _models[(run_dir, stamp)]
    model = load_model(run_dir)
    with _models_lock:
        _models[(run_dir, stamp)] = model
        while len(_models) > _MODELS_KEPT:
            _models.popitem(last=False)
    return model
