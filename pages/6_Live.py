"""Live: point a camera at things and see the trained model's answer on the video as it films."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder
from ui.common import models_to_pick, page, pick_run
from ui.corrections import corrections_panel
from ui.live_preview import correct_frame, live_preview
from ui.retrain import switch_picker

page(N_("Live"), "🎥")
switch_picker("live_run")  # a retrain's new model, once kept, replaces the one picked (ui/retrain.py)
run = pick_run(_("Trained model"), models_to_pick(), "live_run", _("Any run with a saved model, newest first. Its "
               "answer for each picture the camera films is shown on the video."))
if run is None:
    st.stop()
if run.status == "running":
    st.info(_("This run is still training: you are using its best model so far. When training finds a better "
            "one, it is used from your next change on this page."))
threshold = st.slider(_("Say \"not sure\" below this confidence"), 0.0, 1.0, 0.0, 0.05, key="live_threshold",
                      format="%.2f", help=_("Below it, the answer is 'not sure' instead of a class: fewer answers, "
                                         "but the ones given are right more often. 0 always answers."))
live_preview(run, threshold)
corrections_panel(run)  # what corrections added, and Retrain: a new model in seconds
correct_frame(run, RunFolder(run.path).read_json(runfiles.CLASSES, []))
