"""A registered method's controls on the Train page, drawn from its MethodSpec (transfer_core.methods), so a
method added to the engine appears here with no change to the app. Each control is keyed by its setting's
name and remembered with the workspace (session.remembered)."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _
from transfer_core.core.settings import Setting
from transfer_core.data.datasets import write_uploads
from transfer_core.methods import Control, MethodSpec, Option
from transfer_core.service.workspaces import list_runs_for

from . import session
from .common import friendly_errors, run_label
from .session import remembered


def folder_key(name: str) -> str:
    """Session key of an uploaded folder setting's path (e.g. target_data_path)."""
    return f"{name}_path"


def method_settings(spec: MethodSpec) -> dict:
    """The method's settings as chosen; {} while it is off or not ready, so the config keeps its defaults.
    Its first control switches it on (and carries the method's help); the others appear once it is on."""
    shown = [o for o in spec.options if o.control is not None]
    if not shown:
        return {}
    switch, rest = shown[0], shown[1:]
    value = _draw(switch, st, spec.help)
    if not value:
        return {}
    places = st.columns(len(rest)) if len(rest) > 1 else [st] * len(rest)
    values = {switch.name: value, **{o.name: _draw(o, place) for o, place in zip(rest, places)}}
    return {} if any(v is None for v in values.values()) else values


def _draw(option: Option, place, help_text: str = ""):
    control, s = option.control, option.setting
    return _DRAW[control.kind](place, control, s, _(help_text or control.help or s.help))


def _slider(place, c: Control, s: Setting, help_text: str):
    low, high, step = c.values
    remembered(s.name, s.default)
    if not low <= st.session_state[s.name] <= high:  # a value kept from an older range
        st.session_state[s.name] = min(max(st.session_state[s.name], low), high)
    return place.slider(_(c.label), low, high, step=step, key=s.name, help=help_text)


def _levels(place, c: Control, s: Setting, help_text: str):
    remembered(s.name, s.default, c.values)
    return place.select_slider(_(c.label), c.values, format_func=lambda v: _(c.words[v]) if v in c.words else f"{v:g}",
                               key=s.name,
                               help=help_text)


def _choice(place, c: Control, s: Setting, help_text: str):
    options = list(c.values or ((("",) if s.default is None else ()) + s.choices))
    words = {**s.words, **c.words}
    remembered(s.name, "" if s.default is None else s.default, options)
    return place.selectbox(_(c.label), options, format_func=lambda v: _(words[v]) if v in words else str(v), key=s.name,
                           help=help_text)


def _run(place, c: Control, s: Setting, help_text: str) -> str:
    """A finished run this person may see (theirs or shared); its folder is the value ("" for none)."""
    runs = {o.summary.id: o.summary for o in list_runs_for(session.workspace().token, session.runs_dir())
            if o.summary.has_model}
    remembered(s.name, "", ["", *runs])
    chosen = place.selectbox(_(c.label), ["", *runs], key=s.name, help=help_text,
                             format_func=lambda i: run_label(runs[i]) if i else _(c.words.get("", N_("none"))))
    return str(runs[chosen].path) if chosen else ""


def _folder(place, c: Control, s: Setting, help_text: str) -> str | None:
    """Pictures uploaded as a folder, kept in the workspace; None (and a hint) until they are."""
    files = place.file_uploader(_(c.label), accept_multiple_files="directory", key=f"{s.name}_upload", help=help_text)
    if files and place.button(_("Use these pictures"), key=f"{s.name}_use",
                              help=_("Copies the pictures into your workspace and uses them for this setting.")):
        with friendly_errors(N_("Reading the pictures")):
            folder = write_uploads(((f.name, f.getvalue()) for f in files), session.workspace().uploads_dir())
            st.session_state[folder_key(s.name)] = str(folder)
    path = st.session_state.get(folder_key(s.name))
    if not path:
        place.info(_("Upload the pictures, then press the button, before starting."))
        return None
    place.caption(_("Pictures: {n} uploaded.").format(n=len(files or [])))
    return path


_DRAW = {"slider": _slider, "levels": _levels, "choice": _choice, "run": _run, "folder": _folder}
