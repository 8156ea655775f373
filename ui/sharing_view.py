"""Runs page: the owner shares a run with everyone on the server (and stops), its pictures only if they say
so too; everyone else reads why they see it. The rule itself is the engine's (workspaces.share_run,
may_see, may_see_pictures): these controls only ask it."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _
from transfer_core.service.workspaces import OwnedRun, share_run

from . import session
from .common import friendly_errors, md_escape


def share_controls(o: OwnedRun) -> None:
    """For the run's owner: the share switch, the pictures box, and the name the shared run shows."""
    workspace, run_id = session.workspace(), o.summary.id
    with st.container(border=True):
        st.markdown(_("**Who sees this run**"))
        _share_switches(o, workspace, run_id)
        name_control()


def _share_switches(o: OwnedRun, workspace, run_id: str) -> None:
    shared_run = st.toggle(_("Share this run with everyone on this server"), value=o.shared.run,
                           key=f"share_{run_id}", help=_("Everyone using this server then sees it under \"Mine "
                           "and shared\": its name, its scores, and they can try its model and download it. "
                           "Your pictures stay private unless you tick the box below. Switch off to stop sharing."))
    pictures = st.checkbox(_("Share its pictures too"), value=o.shared.pictures, key=f"share_pictures_{run_id}",
                           disabled=not shared_run, help=_("Also shows the pictures it learned from and was tested on "
                           "(for example the pictures it got wrong, on Evaluate). Leave it off for pictures of faces "
                           "or rooms."))
    wanted = (shared_run, shared_run and pictures)
    if wanted != (o.shared.run, o.shared.pictures):
        with friendly_errors(N_("Sharing")):
            share_run(o.summary.path, workspace.token, session.runs_dir(), run=wanted[0], pictures=wanted[1],
                      by=workspace.display_name() or "")
            st.rerun()
    st.caption(_sharing_words(o))


def _sharing_words(o: OwnedRun) -> str:
    if not o.shared.run:
        return _("Only you see this run (anyone with your link does too).")
    if o.shared.pictures:
        return _("Everyone on this server sees this run and its pictures.")
    return _("Everyone on this server sees this run, but not its pictures.")


def name_control() -> None:
    """The workspace's own name: the teacher sees it, and the runs it shares show it."""
    workspace = session.workspace()
    current = workspace.display_name() or ""
    name = st.text_input(_("Your name on this server"), current, key="workspace_name", max_chars=80,
                         placeholder=_("for example: Ana, table 3"),
                         help=_("Shown beside the runs you share and on the teacher's page. Your link is never "
                              "shown to anyone."))
    if name.strip() and " ".join(name.split()) != current:
        with friendly_errors(N_("Naming your workspace")):
            workspace.set_display_name(name, session.runs_dir())
            st.rerun()


def viewer_words(o: OwnedRun) -> str:
    """For someone else's run: why this person sees it, and what they may not see."""
    if o.shared.run:
        who = md_escape(o.shared.by) if o.shared.by else _("Its owner")
        pictures = _("Its pictures are shared too.") if o.pictures else _("Its pictures stay private.")
        return _("{who} shares this run with everyone on this server: you can look at it, try it and download "
                 "it, not change it. {pictures}").format(who=who, pictures=pictures)
    return _("This run was made on the server itself (from the command line): you can look at it, try it and "
             "download it, not change it.")
