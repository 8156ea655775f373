"""Opening a project file (the format: project.py) made by anyone: refused in words unless it is whole,
from this version or an older one, and holds only pictures and the files the app itself writes in a run.

Checked before a byte is written: the file's size; the manifest (format, version, a sha256 for every
member and a member for every sha256); each member's name (no absolute path, drive letter, "..", hidden
part or backslash: only the name as the app writes it), its kind (a plain file: no link, device or pipe;
not encrypted; a zip has no hard links), where it goes (data/<class>/<picture> with a picture's ending,
or runs/<id>/<a run file>) and its size (the total, each file, the count, and how much it would grow:
uploads.ZipLimits). While unpacking: the bytes actually produced against the sizes declared, and each
member's sha256. After: every weights file loads with weights_only, every JSON file parses, the config
and the network description are this version's. Only then is anything renamed into place.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import stat
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from transfer_core.core.config import TrainConfig
from transfer_core.core.i18n import N_
from transfer_core.data.datafiles import IMAGE_EXTENSIONS, _human, _safe_parts
from transfer_core.data.datarefs import to_ref
from transfer_core.data.uploads import ZipLimits, _check_ratios, _check_sizes
from transfer_core.models.backbones import list_backbones
from transfer_core.runstore import runfiles
from transfer_core.runstore.project import (
    DATA,
    FORMAT,
    LIMITS,
    MANIFEST,
    RUN_FILES,
    RUNS,
    VERSION,
    Progress,
    ProjectError,
    local_ref,
)

MAX_MANIFEST_BYTES = 32 * 2 ** 20
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_WEIGHTS = (runfiles.BEST, runfiles.CHECKPOINT, runfiles.NOVELTY_WEIGHTS)
_NEEDED = (runfiles.BEST, runfiles.MODEL, runfiles.CLASSES, runfiles.PREPROCESSING, runfiles.CONFIG)
_CHUNK = 2 ** 20


@dataclass(frozen=True)
class OpenedProject:
    name: str
    data: Path  # the opened pictures: <data>/<class>/<picture>
    runs: tuple[Path, ...]  # the opened run folders (an id already taken here gets a suffix)
    classes: tuple[str, ...]
    pictures: int
    settings: dict  # flat values only (str, int, float, bool), as the project keeps them


def read_manifest(file: str | Path, limits: ZipLimits = LIMITS) -> dict:
    """The project's manifest, after the checks of the whole file (nothing is written)."""
    with _open_zip(Path(file), limits) as zf:
        manifest = _manifest(zf)
        _plan(zf, manifest, limits)
        return manifest


def open_project(file: str | Path, data_to: str | Path, runs_to: str | Path, *, progress: Progress | None = None,
                 limits: ZipLimits = LIMITS) -> OpenedProject:
    """Unpack the project: its pictures become the new folder `data_to`, its runs new folders in `runs_to`."""
    data_to, runs_to = Path(data_to), Path(runs_to)
    if data_to.exists() and any(data_to.iterdir()):
        raise ProjectError(N_("'{name}' already holds files; open the project into a new folder.").format(
            name=data_to.name))
    with _open_zip(Path(file), limits) as zf:
        manifest = _manifest(zf)
        plan = _plan(zf, manifest, limits)
        made = [d for d in (data_to.parent, runs_to) if not d.exists()]  # taken away again on a refusal
        data_to.parent.mkdir(parents=True, exist_ok=True)
        runs_to.mkdir(parents=True, exist_ok=True)
        staging = {DATA: data_to.parent / f".opening-{secrets.token_hex(4)}",
                   RUNS: runs_to / f".opening-{secrets.token_hex(4)}"}  # hidden: no page lists them
        try:
            _unpack(zf, plan, manifest["files"], staging, limits, progress)
            run_ids = sorted({parts[1] for _, parts in plan if parts[0] == RUNS})
            for run_id in run_ids:
                _check_run(staging[RUNS] / run_id)
            if data_to.is_dir():
                data_to.rmdir()  # empty (checked above): the opened pictures take its place
            staging[DATA].mkdir(exist_ok=True)
            staging[DATA].rename(data_to)
            runs = tuple(_place_run(staging[RUNS] / run_id, runs_to, data_to) for run_id in run_ids)
        except BaseException:
            for folder in staging.values():
                shutil.rmtree(folder, ignore_errors=True)
            for folder in reversed(made):
                _remove_if_empty(folder)
            raise
        finally:
            for folder in staging.values():
                shutil.rmtree(folder, ignore_errors=True)
    pictures = sum(1 for _, parts in plan if parts[0] == DATA)
    return OpenedProject(_text(manifest.get("name")) or Path(file).stem, data_to, runs,
                         tuple(c for c in manifest.get("classes", []) if isinstance(c, str)), pictures,
                         clean_settings(manifest.get("settings")))


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------- the whole file
def _refuse(words: str, **values) -> ProjectError:
    """`words` marked with N_ by the caller (kept in English, shown translated), then filled in."""
    return ProjectError(words.format(**values) if values else words)


def _open_zip(file: Path, limits: ZipLimits) -> zipfile.ZipFile:
    if not file.is_file():
        raise _refuse(N_("There is no project file '{name}'."), name=file.name)
    if file.stat().st_size > limits.max_total_bytes:
        raise _refuse(N_("This project file is larger than the {most} a project may be."),
                      most=_human(limits.max_total_bytes))
    try:
        return zipfile.ZipFile(file)
    except Exception:  # a damaged directory surfaces as many types (BadZipFile, ValueError, OSError...)
        raise _damaged() from None


def _damaged() -> ProjectError:
    return _refuse(N_("This project file is damaged or cut short (perhaps the download did not finish). Download "
                      "or copy it again."))


def _manifest(zf: zipfile.ZipFile) -> dict:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise _refuse(N_("This is not a Transfer Studio project (it has no manifest.json). A zip of pictures is "
                         "opened on the Data page as an upload instead.")) from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise _damaged()
    try:
        manifest = json.loads(zf.read(info))
    except Exception:
        raise _damaged() from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(N_("This is not a Transfer Studio project (its manifest.json is of another kind)."))
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged()
    if version > VERSION:
        raise _refuse(N_("This project was saved by a newer version of Transfer Studio (project format {version}; "
                         "this one opens up to {mine}). Update Transfer Studio, then open it again."),
                      version=version, mine=VERSION)
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) and _SHA.match(v) for v in files.values()):
        raise _damaged()
    return manifest


def _plan(zf: zipfile.ZipFile, manifest: dict, limits: ZipLimits) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every member but the manifest, with its parts; refused in words at the first that is not allowed."""
    plan, seen = [], set()
    for info in zf.infolist():
        if info.filename == MANIFEST and info.filename not in seen:
            seen.add(MANIFEST)
            continue
        parts = _member_parts(info)
        if info.filename in seen:
            raise _refuse(N_("'{name}' is in this project twice. Save the project again."), name=info.filename)
        seen.add(info.filename)
        plan.append((info, parts))
    listed = set(manifest["files"])
    if listed != seen - {MANIFEST}:
        raise _damaged()
    files = [info for info, _ in plan]
    try:
        _check_sizes("zip", [(i.filename, i.file_size) for i in files], limits)
        _check_ratios(files, limits)
    except ProjectError:
        raise
    except ValueError as exc:  # the upload limits' own words
        raise ProjectError(str(exc)) from None
    return plan


def _member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The parts of a member the app could have written, else refused, naming it."""
    name = info.filename
    parts = _safe_parts(name)
    mode = info.external_attr >> 16
    if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise _refuse(N_("'{name}' in this project is a link, a folder or a special file, not a plain file, so "
                         "nothing was opened."), name=name[:200])
    if parts is None or "/".join(parts) != name or "\\" in name:
        raise _refuse(N_("'{name}' in this project would be written outside its folder, so nothing was opened."),
                      name=name[:200])
    if info.flag_bits & 0x1:
        raise _refuse(N_("This project file is password-protected; Transfer Studio never makes such files."))
    picture = parts[0] == DATA and len(parts) >= 3 and Path(name).suffix.lower() in IMAGE_EXTENSIONS
    run_file = parts[0] == RUNS and len(parts) == 3 and _RUN_ID.match(parts[1]) and parts[2] in RUN_FILES
    if not (picture or run_file):
        raise _refuse(N_("'{name}' in this project is not a picture nor a file Transfer Studio keeps in a run, so "
                         "nothing was opened."), name=name[:200])
    return parts


# ---------------------------------------------------------------------------------------------- unpacking
def _unpack(zf: zipfile.ZipFile, plan: list, hashes: dict, staging: dict[str, Path], limits: ZipLimits,
            progress: Progress | None) -> None:
    budget = limits.max_total_bytes
    for i, (info, parts) in enumerate(plan):
        target = staging[parts[0]].joinpath(*parts[1:])
        target.parent.mkdir(parents=True, exist_ok=True)
        budget -= _copy(zf, info, target, min(info.file_size, limits.max_file_bytes, budget), hashes[info.filename])
        if progress is not None:
            progress(i + 1, len(plan), N_("unpacking the pictures and models"))


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, allowed: int, sha: str) -> int:
    """One member, stopping at `allowed` bytes (headers lie); refused unless its sha256 is the manifest's."""
    digest, written = hashlib.sha256(), 0
    try:
        with zf.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > allowed:
                    raise _refuse(N_("'{name}' in this project holds more data than it declares, so nothing was "
                                     "opened."), name=info.filename)
                digest.update(chunk)
                out.write(chunk)
    except ProjectError:
        raise
    except Exception:  # CRC errors, bad deflate data, unsupported compression methods
        raise _damaged() from None
    if digest.hexdigest() != sha:
        raise _refuse(N_("'{name}' in this project is not the file that was saved (its checksum differs): the file "
                         "is damaged. Download or copy it again."), name=info.filename)
    return written


# ---------------------------------------------------------------------------------------------- runs
def _check_run(folder: Path) -> None:
    """A run is opened only if it is what this app writes: weights (tensors only) and JSON it can read."""
    missing = [n for n in _NEEDED if not (folder / n).is_file()]
    if missing:
        raise _refuse(N_("Run {id} in this project has no model (missing {files})."), id=folder.name,
                      files=", ".join(missing))
    try:
        for path in folder.iterdir():
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        TrainConfig.load(folder / runfiles.CONFIG)
        desc = runfiles.ModelDescription.from_dict(json.loads((folder / runfiles.MODEL).read_text()))
        classes = json.loads((folder / runfiles.CLASSES).read_text(encoding="utf-8"))
    except Exception:
        raise _refuse(N_("Run {id} in this project holds files this version cannot read."), id=folder.name) from None
    if desc.backbone not in {b.name for b in list_backbones()}:
        raise _refuse(N_("Run {id} was trained with the network '{name}', which this version does not have."),
                      id=folder.name, name=str(desc.backbone)[:60])
    if not isinstance(classes, list) or len(classes) != desc.num_classes:
        raise _refuse(N_("Run {id} in this project holds files this version cannot read."), id=folder.name)
    for name in _WEIGHTS:
        if (folder / name).is_file():
            _check_weights(folder, name)


def _check_weights(folder: Path, name: str) -> None:
    import torch  # here: checking a manifest needs no torch

    try:  # weights_only: a pickle that would import or call anything is refused, nothing of it runs
        state = torch.load(folder / name, map_location="cpu", weights_only=True)
    except Exception:
        raise _refuse(N_("Run {id}'s {file} holds something other than a model's weights (perhaps code), so nothing "
                         "was opened."), id=folder.name, file=name) from None
    if name == runfiles.BEST and not (isinstance(state, dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise _refuse(N_("Run {id}'s {file} holds something other than a model's weights (perhaps code), so nothing "
                         "was opened."), id=folder.name, file=name)


def _place_run(staged: Path, runs_to: Path, data_dir: Path) -> Path:
    """The run into the runs folder under its id (a suffix when taken), its data references made local."""
    target = runs_to / staged.name
    while target.exists():
        target = runs_to / f"{staged.name}-{secrets.token_hex(2)}"
    _localize(staged, data_dir, runs_to)
    staged.rename(target)
    return target


def _localize(folder: Path, data_dir: Path, runs_to: Path) -> None:
    """project:data references -> this server's reference to the opened pictures (datarefs.to_ref)."""
    config = TrainConfig.load(folder / runfiles.CONFIG)
    here = local_ref(config.data, data_dir)
    if here is not None:
        replace(config, data=to_ref(here, runs_to)).save(folder / runfiles.CONFIG)
    for name in (runfiles.DATASET, runfiles.VALIDATION, runfiles.TEST):
        path = folder / name
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if isinstance(record, dict) and (here := local_ref(record.get("root"), data_dir)) is not None:
            record["root"] = to_ref(here, runs_to)
            path.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- settings
MAX_SETTINGS = 300


def clean_settings(settings) -> dict:
    """Only flat values a form can take (str up to 1,000 characters, int, float, bool), up to 300 of them;
    one level of nesting ("train": {...}) is kept the same way."""
    if not isinstance(settings, dict):
        return {}
    out = {}
    for key, value in list(settings.items())[:MAX_SETTINGS]:
        if not isinstance(key, str) or len(key) > 100:
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in list(value.items())[:MAX_SETTINGS] if isinstance(k, str) and _flat(v)}
        elif not _flat(value):
            continue
        out[key] = value
    return out


def _flat(value) -> bool:
    return isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 1000)


def _text(value) -> str:
    return " ".join(value.split())[:80] if isinstance(value, str) else ""
