"""The teacher's view of one server: every workspace by its name, its pictures per class, its runs and its
jobs; the teacher may stop any job and gather chosen workspaces' classes into one new class set.

Who is the teacher: whoever opens the app with the key the server was started with
(TRANSFER_STUDIO_TEACHER_KEY; no key set, no teacher). Every function that acts asks for the key itself
(is_teacher, compared in constant time), so a page cannot forget to. What the teacher reads never holds a
workspace's token nor its hashes: a workspace is shown by the name it gave itself, else by when it began.
"""
from __future__ import annotations

import hmac
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from transfer_core.core.i18n import N_, _
from transfer_core.data.classbuilder import SETS, Progress
from transfer_core.data.datarefs import data_roots
from transfer_core.data.gathering import gather_classes, pictures_per_class
from transfer_core.runstore.index import list_runs  # the teacher's page redraws: unchanged runs are not re-read
from transfer_core.runstore.runs import RunSummary
from transfer_core.service.work import Job
from transfer_core.service.workspaces import (
    NAME_FILE,
    OWNER_FILE,
    NotAllowed,
    Workspace,
    run_name,
    workspace_id,
)

TEACHER_KEY_ENV = "TRANSFER_STUDIO_TEACHER_KEY"
MIN_KEY_CHARS = 12  # shorter keys are refused: a class could guess them


def teacher_key_set() -> bool:
    return len(os.environ.get(TEACHER_KEY_ENV, "")) >= MIN_KEY_CHARS


def is_teacher(key: str | None) -> bool:
    """Whether `key` is the server's teacher key (never true when none, or a too short one, is set)."""
    wanted = os.environ.get(TEACHER_KEY_ENV, "")
    if len(wanted) < MIN_KEY_CHARS or not isinstance(key, str):
        return False
    return hmac.compare_digest(key.encode("utf-8"), wanted.encode("utf-8"))


def _require_teacher(key: str | None) -> None:
    if not is_teacher(key):
        raise NotAllowed(_("This needs the teacher's key."))


@dataclass(frozen=True)
class RunLine:
    name: str  # the run's display name, else its id
    summary: RunSummary


@dataclass(frozen=True)
class WorkspaceView:
    folder: Path = field(repr=False)  # for gathering; never shown
    name: str  # the name it gave itself, else "Unnamed, since <when>"
    data_label: str | None  # the label of the pictures it uses now (data_choice.json)
    classes: dict[str, int]  # pictures per class of those pictures
    runs: list[RunLine]
    jobs: list[Job]  # queued or running

    @property
    def empty(self) -> bool:
        return not (self.classes or self.runs or self.jobs)


def workspaces_overview(key: str | None, root: str | Path, runs_dir: str | Path, jobs: list[Job] = ()) -> \
        list[WorkspaceView]:
    """Every workspace of the server, the most recently active first (the teacher only)."""
    _require_teacher(key)
    root = Path(root)
    folders = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")] if root.is_dir() else []
    by_owner = _runs_by_owner(runs_dir)
    live = [j for j in jobs if j.state in ("queued", "running") and j.owner]
    views = [_view(d, by_owner, [j for j in live if workspace_id(j.owner) == d.name]) for d in folders]
    return sorted(views, key=lambda v: -_active(v.folder))


def _view(folder: Path, by_owner: dict[str, list[RunLine]], jobs: list[Job]) -> WorkspaceView:
    owner = _read(folder / OWNER_FILE).get("owner")
    data = _read(folder / "data_choice.json")
    pictures = _own_or_shared(folder, data.get("path"))
    return WorkspaceView(folder, _name(folder),
                         data.get("label") if pictures else None,
                         pictures_per_class(pictures) if pictures else {}, by_owner.get(owner, []), jobs)


def _runs_by_owner(runs_dir: str | Path) -> dict[str, list[RunLine]]:
    found: dict[str, list[RunLine]] = {}
    for summary in list_runs(runs_dir):
        owner = _read(summary.path / OWNER_FILE).get("owner")
        if owner:
            found.setdefault(owner, []).append(RunLine(run_name(summary.path) or summary.id, summary))
    return found


def _own_or_shared(workspace: Path, path: str | None) -> Path | None:
    """The workspace's chosen pictures, if they are its own or a folder the server shares: a data_choice.json
    naming anything else is not followed (the teacher's view reads no other place on the server)."""
    if not path:
        return None
    real = Path(path).resolve()
    allowed = [workspace.resolve(), *data_roots()]
    return real if real.is_dir() and any(real == r or r in real.parents for r in allowed) else None


def _name(folder: Path) -> str:
    """The name the workspace gave itself, else when it began: never its folder's name (a hash of its key)."""
    return _read(folder / NAME_FILE).get("name") or _("Unnamed, since {when}").format(
        when=time.strftime("%d %b %H:%M", time.localtime(_times(folder)[0])))


def _active(folder: Path) -> float:
    return _times(folder)[1]


def _times(folder: Path) -> tuple[float, float]:
    """When the workspace was first and last written to (its folder and the files directly in it)."""
    try:
        times = [p.stat().st_mtime for p in (folder, *folder.iterdir())]
        return min(times), max(times)
    except OSError:
        return 0.0, 0.0


def _read(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def queue_lines(key: str | None, root: str | Path, jobs: list[Job]) -> list[tuple[str, Job]]:
    """The queue as the teacher reads it: (workspace name, job), running first, then in the order they came.
    Cheap (no pictures are counted): the page redraws it every few seconds."""
    _require_teacher(key)
    live = [j for j in jobs if j.state in ("queued", "running") and j.owner]
    lines = [(_name(Path(root) / workspace_id(j.owner)), j) for j in live]
    return sorted(lines, key=lambda line: (line[1].state != "running", line[1].submitted))


# ---------------------------------------------------------------------------------------------- acting
def stop_job(key: str | None, queue, job_id: str) -> bool:
    """Stop anyone's job (running: within one batch; waiting: out of the queue). The teacher only."""
    _require_teacher(key)
    job = queue.get(job_id)
    return job is not None and queue.stop(job_id, owner=job.owner)


def gather(key: str | None, chosen: list[WorkspaceView], teacher: Workspace, *, progress: Progress | None = None,
           stop: threading.Event | None = None) -> Path:
    """Copy the chosen workspaces' pictures (class by class, same names merged) into a new class set of the
    teacher's own workspace; returns its folder. The teacher only; the pupils' pictures are only read."""
    _require_teacher(key)
    sources = [v.folder for v in chosen]
    pictures = [p for p in (_own_or_shared(f, _read(f / "data_choice.json").get("path")) for f in sources) if p]
    names = ", ".join(v.name for v in chosen)
    return gather_classes(pictures, teacher.path / SETS, name=f"gathered-{time.strftime('%Y%m%d-%H%M')}",
                          label=N_("Gathered from {names}").format(names=names), progress=progress, stop=stop)
