"""Predict's "This is actually ...": a picture the model got wrong goes into the person's own data set for
the run, then Retrain learns from the corrected pictures.

The run's data decides where (transfer_core.data.owncopies.correction_target): the person's own
pictures directly; the demo or a server folder through a copy in their workspace, made once, as a task
in the engine's queue (it can be thousands of files); someone else's pictures not at all."""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.data.classbuilder import SETS, add_picture, set_info
from transfer_core.data.datafiles import DatasetError
from transfer_core.data.datarefs import label, resolved_config
from transfer_core.data.owncopies import (
    CorrectionTarget,
    correction_target,
    find_own_copy,
    own_copy,
)
from transfer_core.runstore.runs import RunFolder, RunSummary
from transfer_core.service.jobs import default_queue

from . import retrain, session, tasks
from .common import friendly_errors, link_params, md_escape

KEY_TASK, KEY_TASK_SHOWN = "correction_task", "correction_task_shown"
KEY_DONE = "corrections"  # run id -> {"dataset": path, "added": n, "copied": data reference or None,
#                                      "pictures": the added pictures' paths (the comparison after Retrain)}
COPYING = N_("Copying the pictures into your workspace")


def refusal(run: RunSummary) -> str | None:
    """Why this person cannot correct `run`'s answers (it learned from someone else's own pictures), in
    words; None when they can. Asked before anything is offered, so the pages offer only what is allowed."""
    try:
        correction_target(RunFolder(run.path).config.data, session.workspace().path, session.runs_dir())
        return None
    except (DatasetError, ValueError, OSError) as exc:
        return retranslate(str(exc))


def correction_controls(run: RunSummary, classes: list[str], index: int, name: str, data: bytes) -> None:
    """Under one answer: pick the right class, add the picture to it (nothing where that is not allowed)."""
    if refusal(run) is not None:
        return
    picked = st.selectbox(_("This is actually"), classes, index=None, placeholder=_("Pick the right class"),
                            key=f"correct_class_{index}",
                            help=_("When the answer is wrong (or right but unsure): the class this picture really "
                                 "is. It is added to your own copy of the run's pictures, to train on again."))
    busy = _copy_pending()
    if st.button(_("Add it to this class"), key=f"correct_{index}", disabled=picked is None or busy,
                    help=_("Wait for the copy of the pictures to finish first.") if busy else
                         _("Saves the picture in that class of your own data set.")):
        with friendly_errors(N_("Adding the picture")):
            _correct(run, picked, name, data)


def _copy_pending() -> bool:
    task = default_queue().task(st.session_state.get(KEY_TASK, ""))
    return task is not None and task.state in ("queued", "running")


def _correct(run: RunSummary, class_name: str, name: str, data: bytes) -> None:
    workspace = session.workspace().path
    target = correction_target(RunFolder(run.path).config.data, workspace, session.runs_dir())
    if target.dataset is None:
        tasks.submit(KEY_TASK, COPYING, partial(_copy_then_add, target, workspace / SETS, run.id, class_name,
                                                name, data))
    else:
        picture = add_picture(target.dataset, class_name, data, name)
        _remember(run.id, target.dataset, None, picture)
    st.rerun()  # the panel above the pictures shows what happened


def _copy_then_add(target: CorrectionTarget, sets_dir: Path, run_id: str, class_name: str, name: str,
                   data: bytes, report, stop) -> tuple[str, str, str, str]:
    """The task's work, in the engine's queue: the copy (unless another tab made it meanwhile), then the picture."""
    copy = find_own_copy(sets_dir, target.source) or own_copy(
        target.copy_from, sets_dir, name=_copy_name(target.source), label=_copy_label(target.source),
        source=target.source, progress=report, stop=stop)
    picture = add_picture(copy, class_name, data, name)
    return run_id, str(copy), target.source, str(picture)


def _copy_name(source: str) -> str:
    return "copy-of-demo" if source.startswith("demo:") else "copy-of-" + label(source).split(": ", 1)[-1]


def _copy_label(source: str) -> str:
    """Kept in English with the set (N_), shown in the session's language by retranslate."""
    return N_("My copy of the demo pictures") if source.startswith("demo:") else N_("My copy of {name}").format(
        name=label(source))


def _remember(run_id: str, dataset: Path, copied: str | None, picture: Path | str) -> None:
    """Count the correction, and make the corrected pictures the training data (the Train page's too)."""
    done = st.session_state.setdefault(KEY_DONE, {})
    entry = done.setdefault(run_id, {"dataset": str(dataset), "added": 0, "copied": None, "pictures": []})
    entry.update(dataset=str(dataset), added=entry["added"] + 1, copied=copied or entry["copied"],
                 pictures=[*entry.get("pictures", []), str(picture)])
    choice = session.data_choice()
    if choice is None or Path(choice.path).resolve() != Path(dataset).resolve():
        config = RunFolder(session.runs_dir() / run_id).config
        session.set_data_choice(session.DataChoice(str(dataset), _dataset_label(str(dataset)), config.val_split,
                                                   config.seed), redraw=False)


# ---------------------------------------------------------------------------------------------- the panel
def corrections_panel(run: RunSummary) -> None:
    """Above the pictures: the copy's progress, what was added, the copy said in words, Retrain (and, once
    pressed, its progress and outcome: ui/retrain.py)."""
    retrain.status()
    why_not = refusal(run)
    if why_not is not None:
        st.caption(md_escape(why_not))
        return
    task = tasks.follow(KEY_TASK)
    if task is not None and task.result is not None and st.session_state.get(KEY_TASK_SHOWN) != task.id:
        st.session_state[KEY_TASK_SHOWN] = task.id
        run_id, copy, source, picture = task.result
        _remember(run_id, Path(copy), source, picture)
    entry = st.session_state.get(KEY_DONE, {}).get(run.id)
    if entry is None:
        return
    if entry["copied"]:
        st.info(_copied_words(entry["copied"]))
    st.success(_("{n} picture(s) added to **{name}**, now your training data. Train again to learn from "
                 "them.").format(n=entry["added"], name=md_escape(retranslate(_dataset_label(entry["dataset"])))))
    left, right = st.columns(2)
    busy = retrain.in_progress()
    if left.button(_("Retrain"), key="retrain", type="primary", disabled=busy,
                   help=_("The new run is training: its progress is shown above.") if busy else
                        _("Starts a new run with this run's settings on the corrected pictures. It waits in the "
                        "queue if something is training; when its model is ready, this page switches to it and "
                        "compares the two.")):
        with friendly_errors(N_("Retraining")):
            job = _retrain(run, entry["dataset"])
            retrain.started(job, run.id, entry.get("pictures", []))
            st.rerun()  # its progress is drawn above, where the outcome will be
    right.page_link("pages/2_Train.py", label=_("Go to Train"), icon="🏋️", query_params=link_params())


def _copied_words(source: str) -> str:
    if source.startswith("demo:"):
        return _("The demo pictures were copied into your workspace so you can add to them; the shared demo is "
                 "unchanged.")
    return _("The pictures of {name} were copied into your workspace so you can add to them; "
             "the shared folder is unchanged.").format(name=md_escape(retranslate(label(source))))


def _dataset_label(path: str) -> str:
    return set_info(path).get("label") or Path(path).name


def _retrain(run: RunSummary, dataset: str):
    """Queue a run with `run`'s settings on `dataset`; the page follows it like one started on Train."""
    config = resolved_config(RunFolder(run.path).config, session.runs_dir())
    tags = {k: v for k, v in config.tags.items() if k != "compare_to"}  # its scratch twin is not retrained
    config = replace(config, data=str(dataset), tags={**tags, "retrained_from": run.id})
    token = session.workspace().token
    job = default_queue().submit(config, session.runs_dir(), owner=token)
    session.follow_job(job)
    return job
