"""The Teacher page's parts: who may see it (the key from the link), the workspaces, the queue with Stop, and
gathering pupils' classes into one set. Every action asks the engine (service/classroom.py), which checks
the key again itself; heavy copying runs as a task in the queue."""
from __future__ import annotations

from functools import partial

import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.data.classbuilder import set_info
from transfer_core.data.datarefs import workspaces_root
from transfer_core.service.classroom import (
    TEACHER_KEY_ENV,
    WorkspaceView,
    gather,
    is_teacher,
    queue_lines,
    stop_job,
    teacher_key_set,
    workspaces_overview,
)
from transfer_core.service.jobs import default_queue
from transfer_core.service.workspaces import Workspace

from . import lang, session, tasks
from .common import accuracy_with_range, friendly_errors, link_params, md_escape, status_word

KEY_GATHER = "teacher_gather_task"


def teacher_key() -> str | None:
    """The key this session proved, from the link (?teacher=KEY) or earlier in the session; None (and a plain
    refusal or an explanation drawn) otherwise. The key leaves the address bar once checked: a class sees
    the teacher's screen."""
    given = st.query_params.get("teacher")
    if given is not None:
        del st.query_params["teacher"]
        if not is_teacher(given):
            st.session_state.pop(session.KEY_TEACHER, None)
            st.error(_("That teacher key is not right."))
            return None
        st.session_state[session.KEY_TEACHER] = given
    key = st.session_state.get(session.KEY_TEACHER)
    if key is not None and is_teacher(key):
        return key
    explain()
    return None


def explain() -> None:
    st.info(_("This page is for the teacher of a class that shares this server: it lists every workspace by its "
              "name, with its pictures per class, its runs and their accuracy, and what is training; the "
              "teacher can stop a job and gather pupils' classes into one class set. It opens only with the "
              "teacher's link."))
    st.markdown(_("**Setting it up** (on the server): start the app with a secret key of at least 12 characters, "
                  "for example `{env}=my-long-secret bash scripts/app.sh`, then open "
                  "`http://<server>:8501/Teacher?teacher=my-long-secret` on the teacher's computer only. Pupils "
                  "never need the key.").format(env=TEACHER_KEY_ENV))
    if not teacher_key_set():
        st.caption(_("This server was started without a teacher key, so the page stays closed."))


def overview(key: str) -> list[WorkspaceView]:
    return workspaces_overview(key, workspaces_root(), session.runs_dir(), default_queue().jobs())


def workspaces_table(views: list[WorkspaceView]) -> None:
    shown = [v for v in views if not v.empty]
    st.subheader(_("Workspaces ({n})").format(n=len(shown)))
    if len(views) > len(shown):
        st.caption(_("{n} more opened the app but have no pictures or runs yet.").format(n=len(views) - len(shown)))
    if not shown:
        st.info(_("Nobody has chosen pictures or trained yet."))
        return
    st.dataframe([{_("workspace"): v.name, _("pictures"): retranslate(v.data_label) if v.data_label else "-",
                   _("pictures per class"): _(", ").join(f"{c} {n}" for c, n in v.classes.items()) or "-",
                   _("runs"): len(v.runs), _("best accuracy"): _best(v), _("training now"): _training(v)}
                  for v in shown], hide_index=True, width="stretch")
    for v in shown:
        if v.runs:
            with st.expander(_("Runs of {name}").format(name=v.name)):
                st.dataframe([{_("run"): r.name, _("status"): status_word(r.summary.status),
                               _("network"): r.summary.backbone,
                               _("best accuracy"): accuracy_with_range(r.summary)} for r in v.runs],
                             hide_index=True, width="stretch")


def _best(v: WorkspaceView) -> str:
    done = [r for r in v.runs if r.summary.best_val_accuracy is not None]
    return accuracy_with_range(max(done, key=lambda r: r.summary.best_val_accuracy).summary) if done else "-"


def _training(v: WorkspaceView) -> str:
    return _(", ").join(status_word(j.state) for j in v.jobs) or "-"


@st.fragment(run_every=5.0)  # what trains changes by itself: the teacher sees it without reloading
def queue_section(key: str) -> None:
    lang.apply()
    st.subheader(_("The queue"))
    lines = queue_lines(key, workspaces_root(), default_queue().jobs())
    if not lines:
        st.caption(_("Nothing is training or waiting."))
        return
    for name, job in lines:
        left, right = st.columns([4, 1])
        place = default_queue().position(job.id)
        state = _("training now") if job.state == "running" else _("waiting, number {n}").format(n=place)
        left.write(_("**{name}**: {backbone}, {state}").format(name=md_escape(name), backbone=job.config.backbone,
                                                               state=state))
        if right.button(_("Stop"), key=f"teacher_stop_{job.id}",
                        help=_("Stops this job for its owner (a training run ends within one batch and keeps its "
                               "best model so far; a waiting one leaves the queue).")):
            with friendly_errors(N_("Stopping")):
                if stop_job(key, default_queue(), job.id):
                    st.success(_("Stopping {name}'s job: it ends within a moment.").format(name=md_escape(name)))


def gather_section(key: str, views: list[WorkspaceView]) -> None:
    st.subheader(_("Gather pupils' classes into one class set"))
    with_pictures = [v for v in views if v.classes]
    by_name = {i: v for i, v in enumerate(with_pictures)}
    chosen = st.multiselect(_("Workspaces to gather"), list(by_name), format_func=lambda i: by_name[i].name,
                            key="teacher_gather_from",
                            help=_("The pictures each of them uses now are copied, class by class, into a new "
                                 "class set in your own workspace; classes with the same name become one. The "
                                 "pupils' pictures are not changed."))
    if st.button(_("Gather their classes"), key="teacher_gather", disabled=len(chosen) < 1,
                 help=_("Copies the pictures (in the background) and makes the new set your pictures, ready for "
                        "the Train page.")):
        tasks.submit(KEY_GATHER, N_("Gathering the classes"), partial(_gather, key, [by_name[i] for i in chosen],
                                                                   session.workspace()),
                     files_only=True)
    task = tasks.follow(KEY_GATHER)
    if task is not None and task.result is not None:
        if st.session_state.get(f"{KEY_GATHER}_used") != task.id:
            st.session_state[f"{KEY_GATHER}_used"] = task.id
            folder, label = task.result
            session.set_data_choice(session.DataChoice(folder, label), redraw=False)
        st.success(_("Gathered into **{name}**, now your pictures.").format(
            name=md_escape(retranslate(task.result[1]))))
        st.page_link("pages/2_Train.py", label=_("Go to Train"), icon="🏋️", query_params=link_params())


def _gather(key: str, chosen: list[WorkspaceView], teacher: Workspace, report, stop) -> tuple[str, str]:
    """The task's work, in the engine's queue (no st.* here): the copy, then (folder, its label) for the page."""
    folder = gather(key, chosen, teacher, progress=report, stop=stop)
    return str(folder), set_info(folder).get("label", folder.name)
