"""Teacher: every workspace of this server by its name, its pictures and runs, the queue with Stop, and
gathering pupils' classes into one set. Only with the server's teacher key (?teacher=KEY in the link)."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _
from ui.common import friendly_errors, page
from ui.teacher_view import gather_section, overview, queue_section, teacher_key, workspaces_table

page(N_("Teacher"), "🧑‍🏫")
key = teacher_key()
if key is None:
    st.stop()
st.caption(_("You see every workspace of this server by the name it gave itself (never its link), and no "
             "pictures: pupils' pictures stay theirs unless you gather them below."))
with friendly_errors(N_("Reading the workspaces")):
    queue_section(key)
    views = overview(key)
    workspaces_table(views)
    gather_section(key, views)
