"""Predict: try a trained model on new pictures or the camera."""
from __future__ import annotations

import streamlit as st

from transfer_core.datasets import BadImage
from transfer_core.predict import load_model, predict, to_rgb
from transfer_core.runs import RunFolder, list_runs
from ui import charts, session
from ui.common import friendly_errors, page, pick_run

page("Predict", "🔮")
runs = [r for r in list_runs(session.runs_dir()) if r.has_model]
run = pick_run("Trained model", runs, "predict_run", "Any run with a saved model, newest first.")
if run is None:
    st.stop()


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def cached_model(run_dir: str, mtime: float):
    return load_model(run_dir)


classes = RunFolder(run.path).read_json("classes.json", [])
top_k = st.slider("How many classes to show", 1, max(2, len(classes)), min(3, max(2, len(classes))), key="top_k",
                  help="The most likely classes for each picture, with how sure the model is of each.")
files = st.file_uploader("Pictures to classify", type=None, accept_multiple_files=True, key="predict_files",
                         help="One or many pictures (JPEG, PNG...). They are classified here and not stored.")
photo = st.camera_input("Or take a photo", key="camera") if st.toggle(
    "Use my camera", key="use_camera", help="Asks your browser for the camera, then classifies the photo.") else None

images = [(f.name, f.getvalue()) for f in (files or [])] + ([("camera photo", photo.getvalue())] if photo else [])
if not images:
    st.info("Add one or more pictures above to see what the model thinks they are.")
    st.stop()

with friendly_errors("Loading the model"):
    model = cached_model(str(run.path), (run.path / "best.pt").stat().st_mtime)
    for i, (name, data) in enumerate(images):
        left, right = st.columns([1, 2])
        try:
            picture = to_rgb(data)  # upright RGB, whatever the file's format: what the model sees
        except BadImage as exc:
            left.warning(f"{name} was skipped: {exc}.")
            continue
        top = predict(model, [picture], k=top_k)[0]
        left.image(picture, caption=name, width="stretch")
        right.markdown(f"**{top[0][0]}** ({top[0][1]:.0%} sure)")
        right.plotly_chart(charts.probabilities(top), width="stretch", key=f"probs_{i}")
