"""Everything a page remembers, in one place: the user's workspace, chosen data, current job.

A browser session's workspace token lives in the URL (`?ws=...`), so a refresh or a bookmarked tab finds
the same data and runs again, and nothing needs a login. The token only names folders; what another
token's owner may do with a run is decided by the engine (transfer_core.service.workspaces).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from transfer_core.core.i18n import N_, retranslate
from transfer_core.data.datarefs import workspaces_root
from transfer_core.data.datasets import demo_dataset_path
from transfer_core.service.jobs import Job, default_queue
from transfer_core.service.workspaces import Workspace, new_token, valid_token


def runs_dir() -> Path:
    """Where runs are kept (TRANSFER_STUDIO_RUNS, default ./runs): shared by everyone, read at each use."""
    return Path(os.environ.get("TRANSFER_STUDIO_RUNS", "runs"))


def workspaces_dir() -> Path:
    return workspaces_root()

# Session-state keys (one place, so pages never disagree on a name).
KEY_TOKEN = "workspace_token"
KEY_JOB = "job_id"
KEY_DATA = "data_choice"
KEY_TEACHER = "teacher_key"  # the teacher key this session opened the Teacher page with (never kept in links)


@dataclass(frozen=True)
class DataChoice:
    """The data set the user picked on the Data page, remembered across pages and refreshes."""

    path: str
    label: str  # what the user recognises: "Demo: textile defects", "Upload: my_photos"
    val_split: float = 0.2
    seed: int = 0


def workspace() -> Workspace:
    """This browser session's workspace, created on first visit; its token is kept in the URL."""
    token = st.session_state.get(KEY_TOKEN) or st.query_params.get("ws")
    if not token or not valid_token(token):
        token = new_token()
    st.session_state[KEY_TOKEN] = token
    if st.query_params.get("ws") != token:
        st.query_params["ws"] = token
    return Workspace(workspaces_dir(), token)


def data_choice() -> DataChoice | None:
    if KEY_DATA not in st.session_state:
        saved = workspace().read_json("data_choice.json")
        st.session_state[KEY_DATA] = DataChoice(**saved) if saved else None
    return st.session_state[KEY_DATA]


def set_data_choice(choice: DataChoice, *, redraw: bool = True) -> None:
    """Remember the choice; by default the page is drawn again at once, so every line that names the data
    (the sidebar's included, drawn before the choice was made) shows the new one."""
    st.session_state[KEY_DATA] = choice
    workspace().write_json("data_choice.json", choice.__dict__)
    if redraw:
        st.rerun()


def use_demo_data() -> None:
    """The bundled textile pictures: the one-click start, offered on the Data and Train pages."""
    set_data_choice(DataChoice(str(demo_dataset_path()), N_("Demo: textile defects")))


def data_label(choice: DataChoice) -> str:
    """The data's label in the session's language (kept in English with the workspace: "Upload: name")."""
    return retranslate(choice.label)


def my_jobs() -> list[Job]:
    """This workspace's queued or running jobs, oldest first (found again after a refresh)."""
    token = workspace().token
    return [j for j in default_queue().jobs() if j.owner == token and j.state in ("queued", "running")]


def current_job() -> Job | None:
    """The job this session follows: a live job of its workspace first (started here or in another tab),
    else the last one it started."""
    queue = default_queue()
    token = workspace().token
    followed = queue.get(st.session_state.get(KEY_JOB, ""))
    followed = followed if followed is not None and followed.owner == token else None
    if followed is not None and followed.state in ("queued", "running"):
        return followed
    live = my_jobs()
    if live:
        st.session_state[KEY_JOB] = live[0].id
        return live[0]
    return followed


def follow_job(job: Job) -> None:
    st.session_state[KEY_JOB] = job.id


# ---------------------------------------------------------------------------------------------- settings
SETTINGS_FILE = "train_settings.json"
KEY_SAVED_SETTINGS = "saved_settings"


def remembered(key: str, default, options=None) -> None:
    """Give a widget its value before it is drawn: the one kept with the workspace (so a refresh, or the
    same link in another tab, finds the person's settings again), else `default`. The widget must then be
    drawn without a default of its own. A value the person changed is written back here, once."""
    saved = _saved_settings()
    if key not in st.session_state:
        value = saved.get(key, default)
        st.session_state[key] = default if options is not None and value not in options else value
    elif saved.get(key) != st.session_state[key] and _storable(st.session_state[key]):
        saved[key] = st.session_state[key]
        workspace().write_json(SETTINGS_FILE, saved)


def remembered_value(key: str):
    """The value kept with the workspace for a setting (None if none)."""
    return _saved_settings().get(key)


def _saved_settings() -> dict:
    if KEY_SAVED_SETTINGS not in st.session_state:
        st.session_state[KEY_SAVED_SETTINGS] = workspace().read_json(SETTINGS_FILE, {}) or {}
    return st.session_state[KEY_SAVED_SETTINGS]


def _storable(value) -> bool:
    return isinstance(value, (bool, int, float, str))
