"""Following heavy work that runs as a task in the engine's queue (jobs.Task): progress with the time left,
its place in the line, Stop. The page's own thread only submits and reads."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import _, retranslate
from transfer_core.service.jobs import Task, TaskWork, default_queue

from . import lang, session
from .common import md_escape


def submit(key: str, kind: str, work: TaskWork, *, files_only: bool = False) -> Task:
    """Queue `work`; the task's id is kept under `key` so a redraw (or refresh) of the page finds it.
    `kind` is English, marked with N_ by the caller: the queue and its logs keep it so, the page translates.
    files_only: it reads files without the network (a lane of its own, never behind a training run)."""
    task = default_queue().submit_task(kind, work, owner=session.workspace().token, files_only=files_only)
    st.session_state[key] = task.id
    return task


def follow(key: str) -> Task | None:
    """The task submitted under `key`, once it is over (with .result or .error); None while it is not.
    While it waits or runs, a fragment redraws its progress every second and a Stop button ends it."""
    task = default_queue().task(st.session_state.get(key, ""))
    if task is None:
        return None
    if task.state in ("queued", "running"):
        _progress(key, task.id)
        return None
    if task.error:
        st.error(_("{what} did not work: {why}").format(what=_(task.kind), why=md_escape(retranslate(task.error))))
    return task


@st.fragment(run_every=1.0)
def _progress(key: str, task_id: str) -> None:
    lang.apply()
    task = default_queue().task(task_id)
    if task is None or task.state not in ("queued", "running"):
        st.rerun(scope="app")  # over: the whole page again, with the result
        return
    position = default_queue().position(task_id)
    if task.state == "queued":
        st.info(_("{what}: waiting for the machine (number {position} in the line); it starts by itself.").format(
            what=_(task.kind), position=position))
    else:
        step, steps, phase = task.progress
        left = task.seconds_left()
        doing = retranslate(phase) if phase else _("starting")
        words = f"{_(task.kind)}: {doing}"
        words += _(" · {step} of {steps}").format(step=step, steps=steps) if steps else ""
        words += _(" · about {seconds} s left").format(seconds=f"{left:.0f}") if left is not None else ""
        st.progress(step / steps if steps else 0.0, text=words)
    if st.button(_("Stop"), key=f"stop_{task_id}", help=_("Ends it within a moment; nothing else is touched.")):
        default_queue().stop(task_id, owner=session.workspace().token)
