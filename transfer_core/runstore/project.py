"""A project as one file: the classes and their pictures, the Train settings and the chosen runs (models
included), to take home and open again on any server, ready to add pictures and retrain.

The format is a zip with a manifest:

    manifest.json            {"format": "transfer-studio-project", "version": 1, "name", "classes",
                              "runs": [{"id", "name"}], "settings": {...}, "files": {member: sha256}}
    data/<class>/<picture>   the pictures as the data set lays them out (train/ and val/ kept when given)
    runs/<id>/<file>         only files the app itself writes in a run folder (runfiles), flat

Why a zip: every computer opens one (a person can look at their pictures), the standard library reads it
member by member with each member's size declared before a byte is written, and pictures can be stored
as they are (they hardly compress). Why not a pickle or a torch.save of everything: opening one runs code.
Here weights are loaded with weights_only (tensors, no code), every other run file is JSON, and a member
of any other kind is refused. The manifest's format version refuses a file from a newer app in words
instead of half-reading it; the sha256 of every member tells a damaged or cut file from a whole one (a
zip's CRC does not notice a member missing or added).

Opening trusts nothing (opening.py): the manifest and every member's name, kind and size are checked
before anything is written; members are unpacked into a hidden folder beside each target, checked again
(hashes, weights, configs) and only then renamed into place, so a refusal leaves nothing outside the
targets and nothing half-written inside them.

Runs keep no server path: a run's data reference that names the saved pictures becomes "project:data/...",
which opening turns into a reference to the opened pictures (so Evaluate finds them again); any other
becomes its label (datarefs.label), as a model bundle does.
"""
from __future__ import annotations

import hashlib
import json
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from transfer_core.core.i18n import N_
from transfer_core.data.classbuilder import data_files
from transfer_core.data.datafiles import DatasetError
from transfer_core.data.datarefs import label, labelled_config, resolve
from transfer_core.data.datasets import _unwrap
from transfer_core.data.uploads import ZipLimits, _check_sizes
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder

FORMAT, VERSION = "transfer-studio-project", 1
MANIFEST, DATA, RUNS = "manifest.json", "data", "runs"
PROJECT_REF = "project:"
# What a run folder of this app holds and a project may carry. process.json and owner.json say which
# process and person on *this* server: the server that opens a run writes its own.
RUN_FILES = frozenset({runfiles.CONFIG, runfiles.EVENTS, runfiles.CLASSES, runfiles.PREPROCESSING, runfiles.MODEL,
                       runfiles.BEST, runfiles.CHECKPOINT, runfiles.DATASET, runfiles.VALIDATION, runfiles.TEST,
                       runfiles.CALIBRATION, runfiles.NOVELTY_WEIGHTS, runfiles.NOVELTY, runfiles.NAME})
SAVED_RUN_FILES = RUN_FILES - {runfiles.CHECKPOINT}  # resuming belongs to the server that trained it
# A model of the largest backbones is ~350 MB; pictures keep the upload limits (uploads.ZipLimits).
LIMITS = ZipLimits(max_file_bytes=2 ** 30)
_RECORDS = (runfiles.DATASET, runfiles.VALIDATION, runfiles.TEST)  # JSON with a data reference in "root"

Progress = Callable[[int, int, str], None]


class ProjectError(DatasetError):
    """A project that cannot be saved or opened; the message says why (English, shown translated)."""


@dataclass(frozen=True)
class SavedProject:
    path: Path
    classes: tuple[str, ...]
    pictures: int
    runs: tuple[str, ...]


def save_project(data_dir: str | Path, out: str | Path, *, runs: Iterable[str | Path] = (), name: str = "",
                 settings: dict | None = None, progress: Progress | None = None,
                 limits: ZipLimits = LIMITS) -> SavedProject:
    """Write the project file `out`: the pictures below `data_dir`, `runs` (run folders with a model) and
    `settings` (flat values: what the workspace keeps). A file too big to open again is refused first."""
    root = _unwrap(Path(data_dir).resolve())  # as scanning sees it: a wrapping folder is not a class
    # pictures in a class folder (loose ones at the top belong to no class: scanning skips them too)
    pictures = [(p, parts) for p, parts in data_files(root) if len(parts) > 1] if root.is_dir() else []
    if not pictures:
        raise ProjectError(N_("There are no pictures in this data set to save."))
    folders = [_saveable(RunFolder(r)) for r in runs]
    members = [("/".join((DATA, *parts)), path, None) for path, parts in pictures]
    for run in folders:
        members += [(f"{RUNS}/{run.id}/{n}", run.path / n, _portable(run, n, root))
                    for n in sorted(SAVED_RUN_FILES) if (run.path / n).is_file()]
    try:  # the upload limits, in their own words
        _check_sizes("project", [(m, len(b) if b is not None else p.stat().st_size) for m, p, b in members], limits)
    except DatasetError as exc:
        raise ProjectError(str(exc)) from None
    classes = tuple(sorted({parts[-2] for _, parts in pictures if len(parts) > 1}))
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        files = _write_members(tmp, members, progress)
        manifest = {"format": FORMAT, "version": VERSION, "name": name or root.name, "created": time.time(),
                    "classes": list(classes), "settings": settings or {}, "files": files,
                    "runs": [{"id": r.id, "name": (r.read_json(runfiles.NAME) or {}).get("name", r.id)}
                             for r in folders]}
        with zipfile.ZipFile(tmp, "a", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return SavedProject(out, classes, len(pictures), tuple(r.id for r in folders))


def _saveable(run: RunFolder) -> RunFolder:
    if not run.has_model():
        raise ProjectError(N_("Run {id} has no trained model to save yet.").format(id=run.id))
    if run.status() == "running":
        raise ProjectError(N_("Run {id} is still training. Save the project when it is over.").format(id=run.id))
    return run


def _write_members(tmp: Path, members: list, progress: Progress | None) -> dict[str, str]:
    """Each member into the zip (pictures stored as they are: they hardly compress); their sha256s."""
    files: dict[str, str] = {}
    now = time.localtime()[:6]  # not the files' own times: a zip cannot hold one before 1980
    with zipfile.ZipFile(tmp, "w") as zf:
        for i, (member, path, data) in enumerate(members):
            data = path.read_bytes() if data is None else data
            info = zipfile.ZipInfo(member, now)
            info.external_attr = 0o100644 << 16  # a plain file: opening refuses links and devices
            kind = zipfile.ZIP_STORED if member.startswith(DATA + "/") else zipfile.ZIP_DEFLATED
            zf.writestr(info, data, kind)
            files[member] = hashlib.sha256(data).hexdigest()
            if progress is not None:
                progress(i + 1, len(members), N_("packing the pictures and models"))
    return files


# ---------------------------------------------------------------------------------------------- references
def _portable(run: RunFolder, name: str, data_root: Path) -> bytes | None:
    """A run file as the project keeps it (None: as it is). Data references become project references
    where they name the saved pictures, else labels: never a server path, never a workspace's id."""
    runs_dir = run.path.parent
    if name == runfiles.CONFIG:
        config = run.config
        portable = labelled_config(config)
        ref = project_ref(config.data, data_root, runs_dir)
        return _json(replace(portable, data=ref) if ref else portable).encode()
    if name in _RECORDS:
        record = {k: v for k, v in (run.read_json(name) or {}).items() if k != "paths"}
        root = record.get("root")
        record["root"] = project_ref(root, data_root, runs_dir) or label(root)
        return _json(record).encode()
    return None


def _json(obj) -> str:
    return json.dumps(obj.to_dict() if hasattr(obj, "to_dict") else obj, indent=2, ensure_ascii=False)


def project_ref(value: str | None, data_root: Path, runs_dir: Path) -> str | None:
    """"project:data[/sub]" when `value` names the saved pictures (or a folder that only wraps them), else None."""
    try:
        real = Path(resolve(value, runs_dir) or "").resolve() if value else None
    except (ValueError, OSError):
        return None
    if real is None:
        return None
    if real == data_root or (real.is_dir() and real in data_root.parents and _unwrap(real) == data_root):
        return PROJECT_REF + DATA
    if data_root in real.parents:
        return f"{PROJECT_REF}{DATA}/{real.relative_to(data_root).as_posix()}"
    return None


def local_ref(value, data_dir: Path) -> str | None:
    """Back from a project reference to the opened pictures' folder (None: not a project reference)."""
    if not isinstance(value, str) or not value.startswith(PROJECT_REF + DATA):
        return None
    sub = value[len(PROJECT_REF + DATA):].strip("/")
    real = (data_dir / sub).resolve()
    base = data_dir.resolve()
    return str(real) if real == base or base in real.parents else None
