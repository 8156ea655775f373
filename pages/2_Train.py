"""Train: pick a pretrained network and how much of it to keep, press Start, watch it learn."""
from __future__ import annotations

import streamlit as st

from transfer_core.config import ConfigError, TrainConfig
from transfer_core.jobs import default_queue
from transfer_core.workspaces import OwnerTag
from ui import session, train_form
from ui.common import need_data, page
from ui.live import live_job

page("Train", "🏋️")
data = need_data()
if data is None:
    st.stop()
st.caption(f"Pictures: {data.label}. The defaults below work in one click; every setting explains itself "
           "when you point at the ⓘ.")

st.subheader("1. Pretrained network")
backbone = train_form.choose_backbone()
st.subheader("2. How much of it to keep")
freeze = train_form.choose_freeze(backbone)
st.subheader("3. Training")
settings = {**train_form.choose_basics(), **train_form.choose_advanced(backbone)}

job = session.current_job()
if job is not None and job.state == "queued":
    st.button("Start training", type="primary", disabled=True, help="Your run is waiting in the queue.")
elif job is not None and job.state == "running":
    st.button("Start training", type="primary", disabled=True, help="Your run is training; stop it first.")
elif st.button("Start training", type="primary",
               help="Trains in the background: you can switch pages or close the tab and come back."):
    try:
        config = TrainConfig(data=data.path, backbone=backbone, freeze=freeze, val_split=data.val_split,
                             seed=data.seed, **settings)
    except ConfigError as exc:
        st.error(f"These settings cannot work: {exc}")
    else:
        token = session.workspace().token
        job = default_queue().submit(config, session.runs_dir(), owner=token, callbacks=[OwnerTag(token)])
        session.follow_job(job)
        st.rerun()  # redraw with Start disabled and the live view following the new job

st.divider()
live_job()
