"""Transfer Studio: teach a pretrained network to sort your own pictures. The Home page (entry point)."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _
from transfer_core.service.jobs import default_queue
from ui import session
from ui.common import page

page(N_("Transfer Studio"), "🧠")
st.markdown(
    _("Transfer Studio teaches a computer to sort **your own pictures** into classes you choose, such as "
    "*good* and *defective*, or *ripe* and *unripe*. It starts from a network that has already learned to see "
    "from 1.2 million photos, replaces its last layer with one for your classes, and retrains as much of it "
    "as you choose. Because most of the seeing is already learned, a few dozen pictures per class and a few "
    "minutes on a laptop are often enough."))

st.subheader(_("How it works"))
st.markdown(
    _("1. **Data**: upload a folder with one sub-folder per class, or take the demo pictures.\n"
    "2. **Train**: pick a pretrained network and how much of it to keep frozen, press Start, watch it learn.\n"
    "3. **Evaluate**: see how often it is right, per class, and the pictures it got wrong.\n"
    "4. **Predict**: try it on new pictures or your camera.\n"
    "5. **Runs**: every training run is kept; compare them and download a model.\n"
    "6. **Live**: point a camera at things and see the model's answer on the video as it films."))
c1, c2 = st.columns(2)
c1.page_link("pages/1_Data.py", label=_("Start with your pictures"), icon="📁")
c2.page_link("pages/2_Train.py", label=_("Train a model"), icon="🏋️")

st.subheader(_("This machine"))
st.write(_("Training runs on: **{where}**.").format(where=default_queue().executor.describe()))
running = default_queue().running()
mine = session.current_job()
if running is None:
    st.write(_("No training is running right now."))
else:
    line = (_("Training now: **{backbone}** (yours).") if running.owner == session.workspace().token
            else _("Training now: **{backbone}** (someone else's)."))
    st.write(line.format(backbone=running.config.backbone))
if mine is not None and mine.state == "queued":
    st.info(_("Your run is number {position} in the queue.").format(position=default_queue().position(mine.id)))
