"""Continuing a run that did not end by itself: interrupted by a restart, or stopped by its owner."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _, sentences
from transfer_core.service.jobs import default_queue
from transfer_core.service.workspaces import OwnedRun, list_runs_for, resume_run

from . import session
from .common import friendly_errors, link_params, md_escape

RESUMABLE = ("interrupted", "stopped")
WHY = {"interrupted": N_("Your run **{name}** was interrupted when the app stopped after {done} of {planned} epochs."),
       "stopped": N_("Your run **{name}** was stopped after {done} of {planned} epochs.")}


def resumable_runs() -> list[OwnedRun]:
    """This person's runs that can continue from their last finished epoch, newest first."""
    return [o for o in list_runs_for(session.workspace().token, session.runs_dir())
            if o.mine and o.summary.status in RESUMABLE]


def resume_button(run: OwnedRun, key: str) -> None:
    """Resume, and follow the continued run here; the page link helps where a page switch would not redraw."""
    if st.button(_("Resume training"), key=key, help=_("Continues from its last finished epoch and ends as if it had "
                 "never been interrupted: same settings, same pictures, the epochs it still had to do.")):
        with friendly_errors(N_("Resuming")):
            session.follow_job(resume_run(run.summary.path, session.workspace().token, session.runs_dir(),
                                          default_queue()))
            st.success(_("Resumed: it continues from its last finished epoch."))
            st.page_link("pages/2_Train.py", label=_("Follow it on the Train page"), icon="🏋️",
                         query_params=link_params())


def offer_resume() -> None:
    """On the Train page: say which of this person's runs did not finish, and offer to continue the newest."""
    runs = resumable_runs()
    if not runs:
        return
    newest = runs[0]
    done, planned = newest.summary.epochs_run, newest.summary.config.epochs if newest.summary.config else "?"
    st.info(sentences(_(WHY[newest.summary.status]).format(name=md_escape(newest.name), done=done, planned=planned),
                      _("Its best model so far is kept; you can continue it."),
                      _("({n} more on the Runs page.)").format(n=len(runs) - 1) if len(runs) > 1 else ""))
    resume_button(newest, key=f"resume_{newest.summary.id}")

