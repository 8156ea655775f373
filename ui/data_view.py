"""Showing a dataset report: what was found, what was skipped and why, a few pictures per class."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from functools import partial
from pathlib import Path

import streamlit as st
from PIL import Image

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.data.datarefs import data_roots
from transfer_core.data.classbuilder import SETS
from transfer_core.data.folder_index import folder_counts
from transfer_core.data.datasets import BadImage, DatasetError, DatasetReport, demo_dataset_path, load_rgb, scan_dataset
from transfer_core.data.imagecache import Stopped
from transfer_core.service.jobs import default_queue
from transfer_core.service.workspaces import (
    NotAllowed,
    resolve_server_folder,
    server_folders,
)

from . import session, tasks
from .common import md_escape

THUMBS_PER_CLASS = 6


def _signature(path: str) -> tuple[int, float]:
    """Changes when files are added, removed or moved, so a cached scan is redone then; read from the folder
    index (data/folder_index.py), which lists the folder again only when one of its folders' times changed:
    a redraw of the page stats a few folders, and walks none."""
    counts = folder_counts(path)
    return (counts.files, counts.latest) if counts is not None else (0, 0.0)


KEY_SCAN, KEY_SCAN_FOR = "data_scan_task", "data_scan_for"  # the scan task's id, and the folder it reads
SCAN_WAIT_S = 1.0  # a scan over by then shows at once; a longer one shows its progress meanwhile
_KEEP = 32  # reports remembered
_reports: OrderedDict[tuple, DatasetReport] = OrderedDict()  # this app's latest scans, for every person
_reports_lock = threading.Lock()


def scan(path: str, val_split: float, seed: int) -> DatasetReport | None:
    """The folder's report, or None while it is being made (its progress is shown). Opening every picture
    runs as a task in the queue's lane for file work, never on the page's thread nor behind a training
    run; the page waits a moment for it, so a small folder's report shows at once."""
    key = (path, val_split, seed, _signature(path))
    report = _recall(key)
    if report is not None:
        return report
    asked = default_queue().task(st.session_state.get(KEY_SCAN, ""))
    if st.session_state.get(KEY_SCAN_FOR) != key or asked is None:  # a new folder, or the app restarted
        st.session_state[KEY_SCAN_FOR] = key
        task = tasks.submit(KEY_SCAN, N_("Checking every picture"), partial(_scan_task, key), files_only=True)
        default_queue().wait(task.id, timeout=SCAN_WAIT_S)
    task = tasks.follow(KEY_SCAN)
    retry = task is not None and task.result is None  # stopped or failed (said above): offer another try
    if retry and st.button(_("Check the pictures again"), key="scan_again",
                           help=_("Opens every picture of the folder again to list what can be trained on.")):
        st.session_state.pop(KEY_SCAN_FOR, None)
        st.rerun()
    return task.result if task is not None else None


def known_report(path: str, val_split: float, seed: int) -> DatasetReport | None:
    """The newest report the Data page made of this folder with these settings, else None: never a scan of
    its own, nor a walk of the folder (that re-reading stays with the Data page, which redoes the scan when
    pictures change), so another page can ask on every redraw however big the folder is."""
    with _reports_lock:
        return next((r for key, r in reversed(_reports.items()) if key[:3] == (path, val_split, seed)), None)


def _scan_task(key: tuple, report, stop) -> DatasetReport:
    """The task's work, on a queue thread: the scan, remembered for every page and person of this app."""
    path, val_split, seed, _signature_then = key

    def opened(done: int, n: int) -> None:
        if stop.is_set():
            raise Stopped()
        report(done, n, N_("opening the pictures"))

    result = scan_dataset(path, val_split=val_split, seed=seed, progress=opened)
    with _reports_lock:
        _reports[key] = result
        while len(_reports) > _KEEP:
            _reports.popitem(last=False)
    return result


def _recall(key: tuple) -> DatasetReport | None:
    with _reports_lock:
        if key in _reports:
            _reports.move_to_end(key)
        return _reports.get(key)


def thumbnail(path: str, side: int = 160) -> Image.Image | None:
    """A small upright copy of a picture, or None when it cannot be read. Cached by the file's time and size
    too: a removed picture's name can come back with other pixels (own classes, moves between classes)."""
    return _thumbnail(str(path), _stamp(Path(path)), side)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


@st.cache_data(show_spinner=False, max_entries=1024)
def _thumbnail(path: str, stamp: tuple[int, int], side: int) -> Image.Image | None:
    try:
        img = load_rgb(path)
    except (BadImage, OSError):
        return None
    img.thumbnail((side, side))
    return img


def show_report(report: DatasetReport) -> None:
    counts = report.counts()
    total = sum(c["total"] for c in counts.values())
    cols = st.columns(5 if report.test else 4)
    cols[0].metric(_("Classes"), len(report.classes), help=_("One per folder that holds usable pictures."))
    cols[1].metric(_("Pictures"), total)
    cols[2].metric(_("For training"), len(report.train))
    cols[3].metric(_("For validation"), len(report.val), help=_("Kept aside: the model never learns from these; they "
                   "choose its best epoch and how sure it says it is."))
    if report.test:
        cols[4].metric(_("For testing"), len(report.test), help=_("Also kept aside, and used for nothing else: the "
                       "honest score on the Evaluate page."))
    for warning in report.warnings:
        st.warning(md_escape(retranslate(warning)))
    for note in report.notes:
        st.info(md_escape(retranslate(note)))
    if report.skipped:
        with st.expander(_("{n} file(s) skipped: see why").format(n=len(report.skipped))):
            st.dataframe([{_("file"): s.path, _("why"): retranslate(s.reason)} for s in report.skipped],
                         hide_index=True,
                         width="stretch")
    st.markdown(_("**A few pictures from each class**"))
    for label, name in enumerate(report.classes):
        paths = [s.path for s in report.train + report.val if s.label == label][:THUMBS_PER_CLASS]
        thumbs = [t for t in (thumbnail(str(p)) for p in paths) if t is not None]
        st.caption(_("{name}: {n} pictures").format(name=name, n=counts[name]["total"]))
        if thumbs:
            st.image(thumbs, width=110, caption=[Path(p).name for p in paths[:len(thumbs)]])


def source_of(choice: session.DataChoice | None) -> str | None:
    """Which of the Data page's sources the data in use came from (None: none chosen, or unknown), read from
    where its folder is: the page opens on the source in use, never one click from replacing it."""
    if choice is None:
        return None
    path = Path(choice.path).resolve()
    try:
        demo = demo_dataset_path().resolve()
    except DatasetError:
        demo = None
    own = session.workspace().path.resolve()
    if demo is not None and (path == demo or demo in path.parents):
        return "demo"
    if own / SETS in path.parents:
        return "own"
    if own / "uploads" in path.parents:
        return "zip" if choice.label.lower().endswith(".zip") else "folder"
    if any(path == r or r in path.parents for r in data_roots()):
        return "server"
    return None


def server_folder_picker() -> tuple[str, Path] | None:
    """'A folder on this server': pick one below the shared roots, or type one; (label, folder) once chosen.

    Only folders that resolve inside a shared root are accepted (links and '..' followed first); the
    labels name a root by its own name, never the server path above it."""
    folders = server_folders()
    if not os.environ.get("TRANSFER_STUDIO_DATA_ROOTS"):
        st.info(_("This server shares no folders of its own yet, only the demo pictures. Whoever runs it can "
                "share folders by starting it with TRANSFER_STUDIO_DATA_ROOTS set to them (several separated "
                "by ':'), e.g. `TRANSFER_STUDIO_DATA_ROOTS=/data/photos bash scripts/app.sh`."))
    by_label = dict(folders)
    label = st.selectbox(_("Folder"), list(by_label), key="server_folder", index=None, placeholder=_("Pick a folder"),
                         help=_("The folders this server shares, two levels deep. Pick the one that holds one "
                              "sub-folder per class."))
    typed = st.text_input(_("Or type a folder below one of them"), key="server_folder_typed",
                          placeholder=_("e.g. {folder}").format(
                              folder=folders[0][0] + "/my_set" if folders else "photos/my_set"),
                          help=_("For a folder deeper than the list shows: its name starting with the shared "
                               "folder's name, as in the list."))
    wanted = _typed_folder(typed, folders) if typed.strip() else by_label.get(label)
    if wanted is None or not st.button(_("Use this folder"), type="primary", key="use_server_folder"):
        return None
    try:
        real = resolve_server_folder(wanted)
    except NotAllowed as exc:
        st.error(md_escape(retranslate(str(exc))))
        return None
    root = next(r for r in data_roots() if real == r or r in real.parents)
    return (f"{root.name}/{real.relative_to(root).as_posix()}".rstrip("/."), real)


def _typed_folder(typed: str, folders: list[tuple[str, Path]]) -> Path | None:
    """A typed 'root/sub/folder' below a listed root; the refusal of anything else is resolve's, in words."""
    first, _, rest = typed.strip().strip("/").partition("/")
    roots = {label: path for label, path in folders if "/" not in label}
    return (roots[first] / rest) if first in roots else Path(typed.strip())
