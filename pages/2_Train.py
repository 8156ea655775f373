"""Train: pick a pretrained network and how much of it to keep, press Start, watch it learn."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.core.config import ConfigError, TrainConfig
from transfer_core.data.folder_index import class_folders  # kept between redraws: no walk unless a folder changed
from transfer_core.service.jobs import default_queue
from transfer_core.workflows.baseline import linked_runs
from ui import methods_form, session, train_form
from ui.common import md_escape, need_data, page
from ui.data_view import known_report
from ui.live import live_job
from ui.resume import offer_resume

page(N_("Train"), "🏋️")
job = session.current_job()
if job is None or job.state not in ("queued", "running"):
    offer_resume()  # a run cut short (a restart, a Stop) is worth pointing to before anything else
data = need_data()
if data is None:
    st.stop()
st.caption(_("Pictures: {data}. The defaults below work in one click; every setting explains "
             "itself: point at the small question mark beside it.").format(data=md_escape(session.data_label(data))))
classes = class_folders(data.path)
if classes is not None and len(classes) < 2:
    found = (_("only one class ('{name}')").format(name=md_escape(classes[0])) if classes
             else _("no class folder with pictures"))
    st.error(_("These pictures cannot train a model yet: {found} was found. Training needs at least two classes, "
               "each a folder of pictures side by side (for example photos/good/ and photos/scratched/). "
               "Add a class on the **Data** page.").format(found=found))
    st.page_link("pages/1_Data.py", label=_("Go to Data"), icon="📁")
    st.stop()

st.subheader(_("1. Pretrained network"))
backbone = train_form.choose_backbone()
st.subheader(_("2. How much of it to keep"))
freeze = train_form.choose_freeze(backbone)
report = known_report(data.path, data.val_split, data.seed)
schedule = train_form.choose_schedule(len(report.val) if report is not None else None)
quick_start = train_form.choose_quick_start(freeze) if schedule["schedule"] == "fixed" else 0
st.subheader(_("3. Training"))
settings = {**train_form.choose_basics(), **train_form.choose_advanced(backbone), **methods_form.choose_methods()}
scratch_baseline = settings.pop("scratch_baseline")
try:
    config = TrainConfig.from_settings(dict(data=data.path, backbone=backbone, freeze=freeze,
                                            quick_start_epochs=quick_start, val_split=data.val_split,
                                            seed=data.seed, **schedule, **settings))  # a method's added settings included
except ConfigError as exc:
    config = None
    st.error(_("These settings cannot work: {why}").format(why=md_escape(retranslate(str(exc)))))
if config is not None:
    with st.expander(_("Not sure about the learning rate?")):
        methods_form.lr_finder(config)


def start(config: TrainConfig) -> None:
    token = session.workspace().token
    pairs = linked_runs(config) if scratch_baseline else [(None, config)]
    jobs = [default_queue().submit(cfg, session.runs_dir(), owner=token, run_id=rid)
            for rid, cfg in pairs]
    session.follow_job(jobs[0])


busy = {"queued": N_("Your run is waiting in the queue."), "running": N_("Your run is training; stop it first.")}
if job is not None and job.state in busy:
    st.button(_("Start training"), type="primary", disabled=True, help=_(busy[job.state]))
elif st.button(_("Start training"), type="primary", disabled=config is None,
               help=_("Trains in the background: you can switch pages or close the tab and come back.")):
    start(config)
    st.rerun()  # redraw with Start disabled and the live view following the new job

st.divider()
live_job()
