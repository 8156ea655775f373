"""Retrain from Predict or Live, followed where it was pressed: its progress line while it waits and trains;
when its model is kept, Live and Predict switch to it with a notice comparing the old and the new model on
the same pictures (transfer_core.results.versus, as a task in the engine's queue); a stopped or failed run
is said so, and the old model stays.

The switch sets the page's model picker before it is drawn (switch_picker, called by the page above it):
Streamlit forbids changing a widget's value after it is drawn in the same run."""
from __future__ import annotations

from functools import partial

import streamlit as st

from transfer_core.core.events import RunFailed, RunFinished, RunStopped
from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.results.compare import tell_apart
from transfer_core.results.versus import AfterRetrain, after_retrain
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.jobs import Job, default_queue

from . import lang, session, tasks
from .common import md_escape
from .live import progress_of

KEY = "retrain_followed"  # {"job": new run id, "old": old run id, "added": [picture paths], "switched": [picker keys]}
KEY_TASK = "retrain_compare_task"
COMPARING = N_("Comparing the new model with the old one")
LIVE = ("queued", "running")


def started(job: Job, old_run_id: str, added: list[str]) -> None:
    """Remember the retrain this session follows (one at a time: a new one replaces it)."""
    st.session_state[KEY] = {"job": job.id, "old": old_run_id, "added": list(added), "switched": []}
    st.session_state.pop(KEY_TASK, None)


def in_progress() -> bool:
    entry = st.session_state.get(KEY)
    job = default_queue().get(entry["job"]) if entry else None
    return job is not None and job.state in LIVE


def _final(entry: dict):
    """The new run's final event (None while it waits or trains); read from its folder, which outlives the queue."""
    job = default_queue().get(entry["job"])
    if job is not None and job.state in LIVE:
        return None
    return RunFolder(session.runs_dir() / entry["job"]).final_event()


def _kept(entry: dict) -> bool:
    return isinstance(_final(entry), RunFinished) and RunFolder(session.runs_dir() / entry["job"]).has_model()


def switch_picker(key: str) -> None:
    """Before the page's model picker is drawn: once the new model is kept, the picker shows it (once per
    picker, so the person can still go back to the old one)."""
    entry = st.session_state.get(KEY)
    if entry is None or key in entry["switched"] or not _kept(entry):
        return
    entry["switched"].append(key)
    st.session_state[key] = entry["job"]  # listed whichever runs the picker shows: it is this workspace's


def status() -> None:
    """Where Retrain was pressed: its progress, then its outcome (the comparison once the new model is kept)."""
    entry = st.session_state.get(KEY)
    if entry is None:
        return
    job = default_queue().get(entry["job"])
    if job is not None and job.state in LIVE:
        st.fragment(_progress, run_every=1.0)(entry["job"])
        return
    final = _final(entry)
    if isinstance(final, RunStopped) or (job is not None and job.state == "cancelled"):  # stopped while waiting
        st.warning(_("The new run {new} was stopped before it finished, so the old model (run {old}) is still "
                     "used here.").format(new=entry["job"], old=entry["old"]))
    elif isinstance(final, RunFailed):
        st.error(_("The new run {new} failed, so the old model (run {old}) is still used here: {why}").format(
            new=entry["job"], old=entry["old"], why=md_escape(retranslate(final.error))))
    elif _kept(entry):
        _kept_notice(entry)
    else:
        return  # not over yet as far as its folder says (the queue was restarted): nothing to say
    if st.button(_("Hide this"), key="retrain_hide", help=_("Removes this notice; the model in use stays.")):
        st.session_state.pop(KEY, None)
        st.rerun()


def _progress(job_id: str) -> None:
    lang.apply()
    job = default_queue().get(job_id)
    if job is None or job.state not in LIVE:
        st.rerun(scope="app")  # over: the whole page again, so the picker can switch to the new model
        return
    position = default_queue().position(job_id)
    if position:
        st.info(_("Waiting for the machine: run {id} is number {position} in the queue. It starts by "
                  "itself when the run before it ends.").format(id=job_id, position=position))
    else:
        done, words = progress_of(job)
        st.progress(done, text=_("Retraining (run {id}): {progress}").format(id=job_id, progress=words))
    if st.button(_("Stop"), key=f"retrain_stop_{job_id}", help=_("Ends the new run within one batch; the old model "
                                                                "stays in use.")):
        default_queue().stop(job_id, owner=session.workspace().token)


def _kept_notice(entry: dict) -> None:
    if KEY_TASK not in st.session_state:
        runs = session.runs_dir()
        tasks.submit(KEY_TASK, COMPARING, partial(_compare, str(runs / entry["old"]), str(runs / entry["job"]),
                                                  entry["added"]))
    st.success(_("The new model (run {new}) is ready and is now used here instead of run {old}.").format(
        new=entry["job"], old=entry["old"]))
    task = tasks.follow(KEY_TASK)
    if task is not None and task.result is not None:
        st.info(comparison_words(task.result))


def _compare(old_dir: str, new_dir: str, added: list[str], report, stop) -> AfterRetrain:
    """The task's work, in the engine's queue: both models on the same pictures."""
    return after_retrain(old_dir, new_dir, added, progress=lambda i, n: report(i, n, N_("pictures")), stop=stop)


def comparison_words(result: AfterRetrain) -> str:
    """The notice in plain words: which pictures, and how many each model got right."""
    fair = result.held_out
    if fair.n:
        words = _("**New model: {new} of {n} right, the old one {old} of {n}**, on the same {n} pictures that "
                  "neither of them trained on (set aside by both runs to check them).").format(
                      new=fair.right_new, old=fair.right_old, n=fair.n)
        if result.held_out_total > fair.n:
            words += " " + _("They are {n} of the {total} such pictures, taken evenly.").format(
                n=fair.n, total=result.held_out_total)
        if not tell_apart(fair.right_new / fair.n, fair.n, fair.right_old / fair.n, fair.n).distinguishable:
            words += " " + _("That many pictures are too few to be sure which model is better.")
        elif fair.right_old > fair.right_new:
            words += " " + _("The old model did better: you can pick it again above.")
    else:
        words = _("No picture was set aside by both runs, so the two models cannot be compared on pictures "
                  "neither of them trained on.")
    done = result.corrected
    if done.n:
        words += "\n\n" + _("On the {n} picture(s) you added: new model {new} right, the old one {old}.").format(
            n=done.n, new=done.right_new, old=done.right_old)
        if result.corrected_trained_on:
            words += " " + _("The new model trained on {k} of them (the old one never did), so this count "
                             "favours it.").format(k=result.corrected_trained_on)
    return words
