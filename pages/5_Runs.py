"""Runs: every training run on this server, kept on disk; compare them, download or delete yours."""
from __future__ import annotations

import time

import plotly.graph_objects as go
import streamlit as st

from transfer_core.bundle import model_bundle
from transfer_core.runs import RunFolder
from transfer_core.workspaces import NotAllowed, delete_run, list_runs_for, rename_run, resume_run
from ui import charts, session
from ui.common import friendly_errors, page, run_label

page("Runs", "🗂️")
owned = list_runs_for(session.workspace().token, session.runs_dir())
runs = [o.summary for o in owned]
if not runs:
    st.info("No runs yet. Train one on the **Train** page; every run is kept here, even after a restart.")
    st.stop()

token = session.workspace().token
mine = {o.summary.id for o in owned if o.mine}
names = {o.summary.id: o.name for o in owned}


def _row(r) -> dict:
    c = r.config
    return {"run": names[r.id], "whose": "yours" if r.id in mine else "other", "status": r.status,
            "network": r.backbone, "frozen": str(c.freeze) if c else "?",
            "epochs": r.epochs_run, "best accuracy": None if r.best_val_accuracy is None else
            round(r.best_val_accuracy, 4), "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))}


st.dataframe([_row(r) for r in runs], hide_index=True, width="stretch")
st.caption("'interrupted' means the app stopped while the run was training (its last finished epoch is kept). "
           "Runs started by other people are yours to look at and use, not to delete.")

st.subheader("Compare runs")
by_id = {r.id: r for r in runs}
chosen = st.multiselect("Runs to compare", list(by_id), default=list(by_id)[:min(2, len(by_id))],
                        format_func=lambda i: run_label(by_id[i]), key="compare_runs",
                        help="Their validation curves are drawn on top of each other, and the settings that "
                             "differ are listed.")
if chosen:
    loss, acc = go.Figure(), go.Figure()
    for run_id in chosen:
        epochs = RunFolder(by_id[run_id].path).epochs()
        charts.add_loss_traces(loss, epochs, label=run_id[-12:])
        charts.add_accuracy_traces(acc, epochs, label=run_id[-12:])
    left, right = st.columns(2)
    left.plotly_chart(loss.update_layout(title="Loss", xaxis_title="epoch"), width="stretch")
    right.plotly_chart(acc.update_layout(title="Accuracy", xaxis_title="epoch", yaxis_range=[0, 1.02]),
                       width="stretch")
    configs = [by_id[i].config for i in chosen if by_id[i].config]
    if len(configs) >= 2:
        diffs = configs[0].differences(configs[1])
        diffs.pop("tags", None)
        st.write("Settings that differ between the first two: " + (", ".join(
            f"**{k}** {a} vs {b}" for k, (a, b) in diffs.items()) or "none"))

st.subheader("One run")
run_id = st.selectbox("Run", list(by_id), format_func=lambda i: run_label(by_id[i]), key="detail_run")
run = by_id[run_id]
with st.expander("All its settings"):
    st.json(run.config.to_dict() if run.config else {})
with friendly_errors("Preparing the download"):
    if run.has_model:
        st.download_button("Download the trained model (.zip)", model_bundle(run.path), f"{run.id}.zip",
                           "application/zip", help="Weights, class names, preprocessing and settings: everything "
                                                   "`python -m transfer_core predict` needs, with no internet.")
if run.id in mine:
    c1, c2, c3 = st.columns(3)
    new_name = c1.text_input("Name", names[run.id], key=f"name_{run.id}",
                             help="A name you will recognise, e.g. 'frozen 3, light augmentation'.")
    if new_name != names[run.id]:
        with friendly_errors("Renaming"):
            rename_run(run.path, token, session.runs_dir(), new_name)
            st.rerun()
    if run.status == "interrupted" and c2.button(
            "Resume training", help="The app stopped while this run trained. Resume continues from its last "
                                    "finished epoch and ends as if it had never been interrupted."):
        with friendly_errors("Resuming"):
            session.follow_job(resume_run(run.path, token, session.runs_dir()))
            st.switch_page("pages/2_Train.py")
    if c3.button("Delete this run", help="Removes its folder for good. Only the person who started it can."):
        try:
            delete_run(run.path, token, session.runs_dir())
            st.success(f"Deleted {run.id}.")
            st.rerun()
        except NotAllowed as exc:
            st.error(str(exc))
else:
    st.caption("Someone else started this run (or it came from the command line): you can view, compare, "
               "evaluate and download it, not change it.")
