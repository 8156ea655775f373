"""The Data page's project file: "Download this project" (the classes and their pictures, the Train settings and
the models chosen, in one file) and "Open a project" (a file saved here or on another server, restored into
this workspace: its classes become one of the person's own data sets, its runs their own runs).

Both read, hash and write every picture and check every model, so both run as tasks in the queue
(ui/tasks.py) with progress and Stop, never on the page's thread. The format and its checks are the
engine's (transfer_core/runstore/project.py, opening.py; service/projects.py for the workspace)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from transfer_core.core.i18n import N_, _
from transfer_core.data.imagecache import Stopped
from transfer_core.runstore.opening import OpenedProject
from transfer_core.runstore.project import SavedProject
from transfer_core.service.projects import open_into_workspace, save_from_workspace

from . import session, tasks
from .common import download_name, md_escape, models_to_pick, owned_label

KEY_RUNS, KEY_SAVE, KEY_OPEN, KEY_APPLIED = "project_runs", "project_save_task", "project_open_task", "project_applied"
KEY_NOTE = "project_opened_note"
PROJECTS = "projects"  # workspace/projects/: the files made for download (one per name, replaced when made again)
DATA_SETTINGS = ("val_split", "seed")  # kept with the data choice ("data"); the Train page's are "train"


# ---------------------------------------------------------------------------------------------- download
def project_download(choice: session.DataChoice) -> None:
    """'Take this project with you': pick models, make the file (a task), then download it."""
    st.subheader(_("Take this project with you"))
    st.caption(_("One file with your classes and their pictures, your Train settings and the models you pick. "
                 "Open it again on this Data page, here or on another Transfer Studio, to add pictures and train "
                 "again; `python -m transfer_core project open` unpacks it on any computer."))
    mine = {str(o.summary.path): o for o in models_to_pick() if o.mine}
    picked = st.multiselect(_("Models to include"), list(mine), default=list(mine)[:1], key=KEY_RUNS,
                            format_func=lambda p: owned_label(mine[p]),
                            help=_("Your trained models (runs started with this link). Each adds its size, a few "
                                   "MB to a few hundred MB. Others' runs are theirs to give."))
    if st.button(_("Prepare the project file"), key="project_save",
                 help=_("Packs every picture and the chosen models into one file; this takes a moment for a big "
                        "data set. The download button appears when it is ready.")):
        out = session.workspace().path / PROJECTS / download_name(_name(choice), "-project.zip")
        settings = {"train": session.workspace().read_json(session.SETTINGS_FILE, {}) or {},
                    "data": {k: getattr(choice, k) for k in DATA_SETTINGS}}
        tasks.submit(KEY_SAVE, N_("Preparing the project file"),
                     partial(_save, session.workspace(), choice, picked, out, settings, _name(choice)),
                     files_only=True)
    task = tasks.follow(KEY_SAVE)
    if task is not None and isinstance(task.result, SavedProject) and task.result.path.is_file():
        done: SavedProject = task.result
        st.download_button(_("Download this project"), data=done.path.read_bytes, file_name=done.path.name,
                           mime="application/zip", key="project_download", on_click="ignore", type="primary",
                           help=_("Saves the file on your computer. It holds your pictures: give it only to people "
                                  "who may see them."))
        st.caption(_("{classes} classes, {pictures} pictures, {runs} model(s); {size}.").format(
            classes=len(done.classes), pictures=done.pictures, runs=len(done.runs),
            size=_("{mb:.1f} MB").format(mb=done.path.stat().st_size / 2 ** 20)))


def _name(choice: session.DataChoice) -> str:
    """The project's name: the data's own ("data" of "Upload: data", "My classes"), not where it came from."""
    label = session.data_label(choice)
    return next((label.split(sep, 1)[1].strip() for sep in (": ", "：") if sep in label), label)


def _save(workspace, choice: session.DataChoice, runs: list[str], out: Path, settings: dict, name: str, report,
          stop) -> SavedProject:
    """The task's work, on a queue thread (no st.* here)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_from_workspace(workspace, choice.path, runs, out, name=name, settings=settings,
                               progress=partial(_progress, report, stop))


def _progress(report, stop, done: int, total: int, phase: str) -> None:
    if stop.is_set():
        raise Stopped()
    report(done, total, phase)


# ---------------------------------------------------------------------------------------------- open
def project_open() -> None:
    """'Open a project': upload a project file; its classes become this workspace's data, its runs its own."""
    upload = st.file_uploader(_("Choose a project file (.zip) saved from Transfer Studio"), type=["zip"],
                              key="project_file",
                              help=_("A file made with \"Download this project\" (or `python -m transfer_core "
                                     "project save`). Its pictures become a new set of your own classes, the "
                                     "ones you train on from then on; its models become your own runs. Nothing "
                                     "you have is deleted."))
    if upload is not None and st.button(_("Open this project"), key="project_open", type="primary",
                                        help=_("Checks the whole file first: a damaged file, one from a newer "
                                               "version or one holding anything but pictures and models is "
                                               "refused, and nothing of it is kept.")):
        holding = session.workspace().uploads_dir() / ".project.zip"  # hidden: a scan of the folder never lists it
        holding.write_bytes(upload.getvalue())
        tasks.submit(KEY_OPEN, N_("Opening the project"),
                     partial(_open, session.workspace(), holding, session.runs_dir()), files_only=True)
    task = tasks.follow(KEY_OPEN)
    if task is not None and isinstance(task.result, OpenedProject) and st.session_state.get(KEY_APPLIED) != task.id:
        st.session_state[KEY_APPLIED] = task.id
        _apply(task.result)


def _open(workspace, holding: Path, runs_dir: Path, report, stop) -> OpenedProject:
    try:
        return open_into_workspace(workspace, holding, runs_dir, progress=partial(_progress, report, stop))
    finally:
        holding.unlink(missing_ok=True)
        _remove_if_empty(holding.parent)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _apply(opened: OpenedProject) -> None:
    """On the page's thread: the opened classes become the data, the project's settings the Train page's."""
    settings, data = opened.settings.get("train") or {}, opened.settings.get("data") or {}
    if settings:
        session.workspace().write_json(session.SETTINGS_FILE, settings)
        for key in settings:  # the Train page's widgets take the project's values at their next draw
            st.session_state.pop(key, None)
        st.session_state.pop(session.KEY_SAVED_SETTINGS, None)
    st.session_state.pop("data_source", None)  # the choice shows the source in use: the opened classes
    words = _("Opened **{name}**: {classes} classes, {pictures} pictures and {runs} model(s). The classes are below, "
              "ready for more pictures; the models are your runs now (Evaluate, Predict, Runs).").format(
                  name=md_escape(opened.name), classes=len(opened.classes), pictures=opened.pictures,
                  runs=len(opened.runs))
    st.session_state[KEY_NOTE] = (str(opened.data), words)
    split, seed = data.get("val_split"), data.get("seed")
    session.set_data_choice(session.DataChoice(
        str(opened.data), opened.name, float(split) if isinstance(split, (int, float)) and 0 < split < 1 else 0.2,
        int(seed) if isinstance(seed, int) and 0 <= seed <= 10_000 else 0))


def opened_note(choice: session.DataChoice | None) -> None:
    """What was opened, said while the opened classes are the data (a toast would not survive the redraw)."""
    path, words = st.session_state.get(KEY_NOTE, ("", ""))
    if choice is not None and choice.path == path:
        st.success(words)
