"""Projects in a workspace (the file's format and checks: runstore/project.py, opening.py).

Saving takes the person's chosen data and only runs they started: a project file carries pictures, and a
run of someone else's is theirs to give. Opening makes the pictures one of the person's own data sets
(workspace/sets/<name>/, as "Make my own classes" keeps them: ready for more pictures and photos) and the
runs their own runs in the shared runs folder (owner.json, as OwnerTag writes it for a run started here).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from transfer_core.core.i18n import N_
from transfer_core.data.classbuilder import SETS, check_room, clean_class_name, write_info
from transfer_core.data.datafiles import DatasetError
from transfer_core.runstore.opening import OpenedProject, open_project, read_manifest
from transfer_core.runstore.project import DATA, Progress, SavedProject, save_project
from transfer_core.service.workspaces import OWNER_FILE, NotAllowed, Workspace, owner_hash, run_owner_is

DEFAULT_NAME = "project"


def save_from_workspace(workspace: Workspace, data_dir: str | Path, runs: list[str | Path], out: str | Path, *,
                        name: str = "", settings: dict | None = None,
                        progress: Progress | None = None) -> SavedProject:
    """The project file of this person's data and runs; a run someone else started is refused in words."""
    for run in runs:
        if not run_owner_is(run, workspace.token):
            raise NotAllowed(N_("Run {id} was started by someone else, so it cannot go into your project.").format(
                id=Path(run).name))
    return save_project(data_dir, out, runs=runs, name=name, settings=settings, progress=progress)


def open_into_workspace(workspace: Workspace, file: str | Path, runs_dir: str | Path, *,
                        progress: Progress | None = None) -> OpenedProject:
    """Open a project file: its classes become a new data set of this workspace, its runs this person's."""
    manifest = read_manifest(file)  # every check that needs no writing, before a name is picked
    sets = workspace.path / SETS
    check_room(sets, None, _data_bytes(file))
    opened = open_project(file, _free_folder(sets, manifest.get("name")), runs_dir, progress=progress)
    write_info(opened.data, {"label": opened.name})
    for run in opened.runs:  # this person's, as if started here: they may rename, delete and share it
        (run / OWNER_FILE).write_text(json.dumps({"owner": owner_hash(workspace.token)}))
    return opened


def _data_bytes(file: str | Path) -> int:
    with zipfile.ZipFile(file) as zf:
        return sum(i.file_size for i in zf.infolist() if i.filename.startswith(DATA + "/"))


def _free_folder(sets: Path, name) -> Path:
    """A new set folder named after the project ('name', 'name 2', ...): an opened project never mixes
    with pictures already there."""
    try:
        base = clean_class_name(name if isinstance(name, str) else DEFAULT_NAME)
    except DatasetError:
        base = DEFAULT_NAME
    folder, n = sets / base, 2
    while folder.exists():
        folder, n = sets / f"{base} {n}", n + 1
    return folder
