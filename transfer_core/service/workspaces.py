"""Who may change what, when many people share one server (a teacher's class, a team).

The model:
- Each person (a browser session; the app keeps the token in the URL so a refresh keeps it) has a
  workspace folder `workspaces/<id>/`: their uploads and choices live there, and nowhere else. The id is
  a one-way hash of the token: runs record where their data came from (datarefs), and a folder named
  by the token itself would hand its owner's rights to everyone who looks at such a run.
- Runs live in one shared runs folder, but a run records a hash of its owner's token and is private to
  that owner: only they see it, its pictures and its downloads, and only they may rename, share, resume or
  delete it. The owner may share it with everyone on the server (share.json: the run, and its pictures
  only if they say so too); a run without share.json (made before sharing existed) stays private. A run
  with no owner at all was made from the command line by someone who runs the server: the server's own,
  seen by everyone, as it always was. Neither the token nor a server path is written into a run
  (datarefs), so seeing a run never gives its owner's rights.
- A workspace keeps the same owner hash (so the teacher's view, classroom.py, can tell whose runs are
  whose) and may give itself a display name, shown to the teacher and beside the runs it shares.
- Server-side folders can be read only below configured roots (TRANSFER_STUDIO_DATA_ROOTS, a list
  separated by os.pathsep; by default just the bundled demo data).

API used by the app (ui/session.py): Workspace(root, token) with .token .path .uploads_dir() .read_json()
.write_json() .display_name() .set_display_name(); new_token(); valid_token(); OwnerTag(token) callback;
run_owner_is(); require_owner(); delete_run(); rename_run(); run_name(); list_runs_for(); resume_run();
sharing(); share_run(); may_see(); may_see_pictures(); require_visible(); resolve_server_folder(); data_roots().
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transfer_core.core.i18n import N_, _
from transfer_core.core.events import RunStarted
from transfer_core.data.datarefs import data_roots
from transfer_core.runstore import runfiles
from transfer_core.training.callbacks import Callback

if TYPE_CHECKING:
    from transfer_core.runstore.runs import RunSummary

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
OWNER_FILE = runfiles.OWNER  # in a run folder and in a workspace folder alike: {"owner": owner_hash(token)}
NAME_FILE = runfiles.NAME  # a run's or a workspace's display name: {"name": ...}
SHARE_FILE = runfiles.SHARE
MAX_NAME = 80


class NotAllowed(PermissionError):
    """This person may not do that; the message says why in plain words."""


def new_token() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 random bits


def valid_token(token: str) -> bool:
    """Only letters, digits, '-' and '_': a token can never name a path outside the workspaces folder."""
    return isinstance(token, str) and bool(_TOKEN.match(token))


def owner_hash(token: str) -> str:
    return hashlib.sha256(f"transfer-studio-owner:{token}".encode()).hexdigest()[:32]


def workspace_id(token: str) -> str:
    """The workspace folder's name: a hash the token cannot be recovered from (nor the owner hash)."""
    return hashlib.sha256(f"transfer-studio-workspace:{token}".encode()).hexdigest()[:32]


class Workspace:
    def __init__(self, root: str | Path, token: str):
        if not valid_token(token):
            raise NotAllowed(_("This workspace link is not valid. Open the app's start page to get a new one."))
        self.token = token
        self.path = Path(root) / workspace_id(token)
        legacy = Path(root) / token  # folders of earlier versions were named by the token itself
        if legacy.is_dir() and not self.path.exists():
            legacy.rename(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / OWNER_FILE).exists():  # older workspaces get it on their next visit
            self.write_json(OWNER_FILE, {"owner": owner_hash(token)})

    def display_name(self) -> str | None:
        return _read_name(self.path)

    def set_display_name(self, name: str, runs_dir: str | Path | None = None) -> str:
        """Name this workspace (the teacher sees it; shared runs show it); the runs it shares follow."""
        clean = _clean_name(name)
        self.write_json(NAME_FILE, {"name": clean})
        if runs_dir is not None and Path(runs_dir).is_dir():
            for run_dir in Path(runs_dir).iterdir():
                shared = sharing(run_dir)
                if shared.run and run_owner_is(run_dir, self.token):
                    _write_sharing(run_dir, Sharing(shared.run, shared.pictures, clean))
        return clean

    def uploads_dir(self) -> Path:
        """A new, empty folder for one upload, so two uploads never mix."""
        path = self.path / "uploads" / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        path.mkdir(parents=True)
        return path

    def read_json(self, name: str, default=None):
        try:
            return json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return default

    def write_json(self, name: str, obj) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
        tmp.replace(self.path / name)


# ---------------------------------------------------------------------------------------------- run ownership
class OwnerTag(Callback):
    """Records who started a run as soon as its folder exists (JobQueue adds it to every job with an owner)."""

    def __init__(self, token: str):
        self.hash = owner_hash(token)

    def on_event(self, trainer, event) -> None:
        if isinstance(event, RunStarted) and event.run_dir:
            (Path(event.run_dir) / OWNER_FILE).write_text(json.dumps({"owner": self.hash}))


def run_owner_is(run_dir: str | Path, token: str) -> bool:
    try:
        recorded = json.loads((Path(run_dir) / OWNER_FILE).read_text())["owner"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # runs from the command line belong to no browser session: read-only in the app
    return secrets.compare_digest(str(recorded), owner_hash(token))


ACTIONS = {"change": N_("change"), "delete": N_("delete"), "rename": N_("rename"), "resume": N_("resume"),
           "share": N_("share")}


def require_owner(run_dir: str | Path, token: str, runs_dir: str | Path, action: str = "change") -> Path:
    """The run's real folder, if it is a run directly inside runs_dir and `token` started it; else NotAllowed."""
    run_dir, runs_dir = Path(run_dir).resolve(), Path(runs_dir).resolve()
    if run_dir.parent != runs_dir or not (run_dir / runfiles.CONFIG).is_file():
        raise NotAllowed(_("That is not a run in this app's runs folder."))
    if not run_owner_is(run_dir, token):
        raise NotAllowed(_("This run was started by someone else (or from the command line), so you can look at it "
                           "and use it, but not {action} it.").format(action=_(ACTIONS.get(action, action))))
    return run_dir


def delete_run(run_dir: str | Path, token: str, runs_dir: str | Path) -> None:
    """Delete a run folder, only for its owner, only inside the runs folder, never a running one."""
    from transfer_core.runstore.runs import RunFolder

    run_dir = require_owner(run_dir, token, runs_dir, "delete")
    if RunFolder(run_dir).status() == "running":
        raise NotAllowed(_("This run is still training. Stop it first, then delete it."))
    shutil.rmtree(run_dir)


def rename_run(run_dir: str | Path, token: str, runs_dir: str | Path, name: str) -> str:
    """Give a run a display name (its folder keeps its id, so links and comparisons still work)."""
    run_dir = require_owner(run_dir, token, runs_dir, "rename")
    clean = _clean_name(name)
    (run_dir / NAME_FILE).write_text(json.dumps({"name": clean}, ensure_ascii=False), encoding="utf-8")
    return clean


def _clean_name(name: str) -> str:
    clean = " ".join(str(name).split())[:MAX_NAME]  # one line, no control characters, bounded
    if not clean:
        raise NotAllowed(_("A name cannot be empty."))
    return clean


def run_name(run_dir: str | Path) -> str | None:
    return _read_name(run_dir)


def _read_name(folder: str | Path) -> str | None:
    try:
        return str(json.loads((Path(folder) / NAME_FILE).read_text(encoding="utf-8"))["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------- sharing
@dataclass(frozen=True)
class Sharing:
    """share.json: what a run's owner shares with everyone on the server. No file (or a damaged one): nothing."""
    run: bool = False  # its name, figures and model: Evaluate's figures, Predict, Live, the download
    pictures: bool = False  # its pictures too (Evaluate's thumbnails and file names); never without `run`
    by: str = ""  # the owner's workspace name when they shared it (or renamed their workspace since)


def sharing(run_dir: str | Path) -> Sharing:
    try:
        d = json.loads((Path(run_dir) / SHARE_FILE).read_text(encoding="utf-8"))
        return Sharing(d.get("run") is True, d.get("run") is True and d.get("pictures") is True, str(d.get("by", "")))
    except (OSError, ValueError, TypeError, AttributeError):
        return Sharing()


def share_run(run_dir: str | Path, token: str, runs_dir: str | Path, *, run: bool, pictures: bool = False,
              by: str = "") -> Sharing:
    """Share a run (and its pictures, if `pictures`) with everyone on the server, or stop: its owner only."""
    run_dir = require_owner(run_dir, token, runs_dir, "share")
    shared = Sharing(bool(run), bool(run and pictures), str(by)[:MAX_NAME])
    _write_sharing(run_dir, shared)
    return shared


def _write_sharing(run_dir: Path, shared: Sharing) -> None:
    tmp = run_dir / f".{SHARE_FILE}.tmp"  # written whole, then renamed: a reader never sees half a file
    tmp.write_text(json.dumps(shared.__dict__, ensure_ascii=False), encoding="utf-8")
    tmp.replace(run_dir / SHARE_FILE)


def _server_run(run_dir: str | Path) -> bool:
    """No owner file at all: made from the command line by whoever runs the server, seen by everyone.
    (A damaged owner file is not this: such a run is nobody's to see.)"""
    return not (Path(run_dir) / OWNER_FILE).exists()


def may_see(run_dir: str | Path, token: str) -> bool:
    """Whether this person may see the run at all: its name, figures and model (and download it)."""
    return run_owner_is(run_dir, token) or _server_run(run_dir) or sharing(run_dir).run


def may_see_pictures(run_dir: str | Path, token: str) -> bool:
    """Whether this person may see the pictures the run learned from and was measured on."""
    return run_owner_is(run_dir, token) or _server_run(run_dir) or sharing(run_dir).pictures


def require_visible(run_dir: str | Path, token: str, runs_dir: str | Path, *, pictures: bool = False) -> Path:
    """The run's real folder, if it is a run of runs_dir this person may see (its pictures too, with
    `pictures`); else NotAllowed, worded as if there were no such run: a private run's id tells nothing."""
    run_dir, runs_dir = Path(run_dir).resolve(), Path(runs_dir).resolve()
    if run_dir.parent != runs_dir or not (run_dir / runfiles.CONFIG).is_file() or not may_see(run_dir, token):
        raise NotAllowed(_("That is not a run in this app's runs folder."))
    if pictures and not may_see_pictures(run_dir, token):
        raise NotAllowed(_("The person who trained this run shares it without its pictures."))
    return run_dir


@dataclass(frozen=True)
class OwnedRun:
    summary: "RunSummary"
    mine: bool  # this person may delete, rename, share and resume it
    name: str  # the display name: the owner's choice, else the run id
    shared: Sharing = Sharing()  # what its owner shares (for someone else's run: why this person sees it)
    pictures: bool = True  # whether this person may see its pictures (may_see_pictures)


def list_runs_for(token: str, runs_dir: str | Path) -> list[OwnedRun]:
    """The runs this person may see (newest first): their own, the shared ones and the server's own, each
    marked with whether this person owns it and may see its pictures."""
    from transfer_core.runstore.index import run_index

    # Filtered before summarising: a class's other runs are not even read (their events can be long); the
    # index re-reads only runs whose files changed since the last redraw.
    summaries = run_index(runs_dir).summaries(keep=lambda p: may_see(p, token))
    return [OwnedRun(s, run_owner_is(s.path, token), run_name(s.path) or s.id, sharing(s.path),
                     may_see_pictures(s.path, token)) for s in summaries]


def resume_run(run_dir: str | Path, token: str, runs_dir: str | Path, queue):
    """Queue the continuation of this person's interrupted run on `queue` (a jobs.JobQueue, which tags
    the owner); returns the Job."""
    run_dir = require_owner(run_dir, token, runs_dir, "resume")
    return queue.resume(run_dir, owner=token)


# ---------------------------------------------------------------------------------------------- server folders
def resolve_server_folder(path: str | Path, roots: list[Path] | None = None) -> Path:
    """The real folder for `path`, if it lies inside an allowed root (after following links and '..')."""
    roots = data_roots() if roots is None else [Path(r).resolve() for r in roots]
    try:
        real = Path(path).expanduser().resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop, an unknown ~user
        raise NotAllowed(_("That is not a folder name this server can use. Upload your images instead.")) from None
    if any(real == r or r in real.parents for r in roots):
        return real
    if not real.is_dir():
        raise NotAllowed(_("There is no such folder on this server. Pick one from the list, or upload your images."))
    allowed = _(", ").join(r.name for r in roots) or _("none are configured")
    raise NotAllowed(_("That folder is outside the folders this server shares ({allowed}), so it cannot be "
                       "used. Pick one from the list, or upload your images instead.").format(allowed=allowed))


def server_folders(roots: list[Path] | None = None, depth: int = 2, limit: int = 300) -> list[tuple[str, Path]]:
    """The folders a person may pick below the shared roots, as (label, folder), roots first.

    The label names the root by its own name (`textiles/train`), never the server path above it. Hidden
    folders are left out, and links that lead outside every root too (resolve_server_folder's rule)."""
    roots = data_roots() if roots is None else [Path(r).resolve() for r in roots]
    found: list[tuple[str, Path]] = []
    for root in roots:
        level = [root]
        found.append((root.name, root))
        for _ in range(depth):
            level = [c for folder in level for c in _subfolders(folder)]
            found += [(f"{root.name}/{c.relative_to(root).as_posix()}", c) for c in level
                      if _allowed(c, roots)]
            if len(found) >= limit:
                return found[:limit]
    return found


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(c for c in folder.iterdir() if c.is_dir() and not c.name.startswith("."))
    except OSError:
        return []


def _allowed(folder: Path, roots: list[Path]) -> bool:
    try:
        resolve_server_folder(folder, roots)
        return True
    except NotAllowed:
        return False
