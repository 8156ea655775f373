"""Where a run's pictures live, written so that nothing a run keeps names a server path or a person's key.

Runs are shared: everyone may look at, compare and download every run. So a run folder (and the bundle made
from it) records *references* to its data, never the server's folders:

    demo:<sub>            the bundled demo pictures
    shared:<root>/<sub>   a folder below a configured data root (TRANSFER_STUDIO_DATA_ROOTS), by the root's name
    workspace:<id>/<sub>  a person's upload; <id> is their workspace folder, a one-way hash of their key
    runs:<id>/<sub>       inside a run folder of the same runs folder (a teacher, an unpacked .zip)

A folder given on the command line that lies in none of these is kept as given: the person who typed it
runs the machine. `label()` is what any page shows of a reference: never a server path.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from transfer_core.core.config import SETTINGS, TrainConfig
from transfer_core.core.i18n import N_
from transfer_core.core.settings import added_settings
from transfer_core.data.datasets import DatasetError, demo_dataset_path

# The settings of a run that name files or folders (data, target_data, teacher, weights_file).
PATH_SETTINGS = tuple(name for name, s in SETTINGS.items() if s.path)
_SCHEMES = ("demo:", "shared:", "workspace:", "runs:")


def workspaces_root() -> Path:
    """Where the people's workspaces live (TRANSFER_STUDIO_WORKSPACES, default ./workspaces)."""
    return Path(os.environ.get("TRANSFER_STUDIO_WORKSPACES", "workspaces")).resolve()


def _demo_root() -> Path | None:
    try:
        return demo_dataset_path().resolve()
    except DatasetError:
        return None


def data_roots() -> list[Path]:
    """Folders on the server that people may train from by name (TRANSFER_STUDIO_DATA_ROOTS, a list
    separated by os.pathsep; by default just the bundled demo data)."""
    configured = os.environ.get("TRANSFER_STUDIO_DATA_ROOTS", "")
    roots = [Path(p).expanduser() for p in configured.split(os.pathsep) if p.strip()]
    if not roots:
        roots = [r for r in [_demo_root()] if r is not None]
    return [r.resolve() for r in roots]


def _shared_roots() -> dict[str, Path]:
    return {r.name: r for r in data_roots()}


def _inside(path: Path, root: Path | None) -> str | None:
    """`path` relative to `root` ('.' for the root itself), or None when it is not inside."""
    if root is None:
        return None
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def to_ref(path: str | Path | None, runs_dir: str | Path | None = None) -> str | None:
    """The reference a run records for `path` (see the module's doc)."""
    if path is None or is_ref(str(path)):
        return path
    real = Path(path).expanduser().resolve()
    places = [("runs:", Path(runs_dir).resolve() if runs_dir else None), ("workspace:", workspaces_root()),
              ("demo:", _demo_root())]
    places += [(f"shared:{name}/", root) for name, root in _shared_roots().items()]
    for scheme, root in places:
        sub = _inside(real, root)
        if sub is not None:
            return scheme + sub
    return str(real)


def is_ref(value: str) -> bool:
    return isinstance(value, str) and value.startswith(_SCHEMES)


def resolve(value: str | None, runs_dir: str | Path | None = None) -> str | None:
    """The real path for a reference (or the value itself when it is a plain path); RefError in words."""
    if value is None or not is_ref(value):
        return value
    scheme, _, sub = value.partition(":")
    if scheme == "shared":
        name, _, sub = sub.partition("/")
        root = _shared_roots().get(name)
        if root is None:
            raise RefError(N_("This run's pictures came from the server folder '{name}', which this server no "
                              "longer shares (TRANSFER_STUDIO_DATA_ROOTS).").format(name=name))
    else:
        root = {"demo": _demo_root(), "workspace": workspaces_root(),
                "runs": Path(runs_dir).resolve() if runs_dir else None}[scheme]
        if root is None:
            raise RefError(N_("This run's pictures ({label}) are not on this server.").format(label=label(value)))
    real = (root / sub).resolve()
    if real != root and root not in real.parents:  # a hand-edited '..' must not leave its root
        raise RefError(N_("'{value}' points outside its folder.").format(value=value))
    return str(real)


class RefError(ValueError):
    """A recorded data reference that cannot be found on this server; the message says why."""


def label(value: str | None) -> str:
    """What a page shows of a run's data: where it came from in words, never a server path (English, kept in
    configs; pages show it with i18n.retranslate)."""
    if not value:
        return ""
    scheme, _, sub = value.partition(":") if is_ref(value) else ("", "", value)
    name = Path(sub).name if sub not in ("", ".") else ""
    if scheme == "demo":
        return N_("Demo pictures: {name}").format(name=name) if name else N_("Demo pictures")
    if scheme == "shared":
        return N_("Server folder: {name}").format(name=sub)
    if scheme == "workspace":
        parts = sub.split("/")
        if len(parts) > 2 and parts[1] == "sets":  # classbuilder's own sets: made by hand or copied
            return N_("Own set: {name}").format(name=parts[2])
        return N_("Upload: {name}").format(name="/".join(parts[3:])) if len(parts) > 3 else N_("Upload")
    if scheme == "runs":
        return N_("Run {id}").format(id=sub.split("/")[0])
    return N_("Folder: {name}").format(name=name)


# ---------------------------------------------------------------------------------------------- whole configs
def portable_config(config: TrainConfig, runs_dir: str | Path | None) -> TrainConfig:
    """The config as a run folder keeps it: every path setting a reference."""
    return _map_paths(config, lambda v: to_ref(v, runs_dir))


def resolved_config(config: TrainConfig, runs_dir: str | Path | None) -> TrainConfig:
    """The config with every reference turned back into this server's path (for training and resuming)."""
    return _map_paths(config, lambda v: resolve(v, runs_dir))


def shown_config(config: TrainConfig) -> dict:
    """The settings as a page shows them (and a bundle keeps them, loadable as a config): paths as labels."""
    return labelled_config(config).to_dict()


def labelled_config(config: TrainConfig) -> TrainConfig:
    """The config with every path setting (a method's added ones too) as its label."""
    return _map_paths(config, lambda v: label(v) if v else v)


def _added_paths(config: TrainConfig) -> list[str]:
    """A method's added settings that name files or folders (kept in config.method_settings)."""
    added = added_settings()
    return [n for n in config.method_settings if n in added and added[n].path]


def _map_paths(config: TrainConfig, fn) -> TrainConfig:
    extra = {n: fn(config.method_settings[n]) for n in _added_paths(config)}
    return replace(config, **{n: fn(getattr(config, n)) for n in PATH_SETTINGS},
                   method_settings={**config.method_settings, **extra})


# ---------------------------------------------------------------------------------------------- free text
# An absolute POSIX path inside a message (an exception's text, a skip reason).
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"`:;,()\[\]<>]+/)+[^\s'\"`:;,()\[\]<>]*")


def redact_paths(text: str) -> str:
    """`text` with every absolute path cut to its last part: messages may travel to other people's pages."""
    return _ABS_PATH.sub(lambda m: "…/" + (Path(m.group(0)).name or ""), text or "")
