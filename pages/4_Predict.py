"""Predict: try a trained model on new pictures or the camera."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder
from ui import charts
from ui.calibration_view import calibration_when_ready
from ui.camera import camera_check
from ui.common import models_to_pick, page, pick_run
from ui.corrections import correction_controls, corrections_panel
from ui.predict_view import answers_when_ready
from ui.retrain import switch_picker

page(N_("Predict"), "🔮")
switch_picker("predict_run")  # a retrain's new model, once kept, replaces the one picked (ui/retrain.py)
run = pick_run(_("Trained model"), models_to_pick(), "predict_run", _("Any run with a saved model, newest first."))
if run is None:
    st.stop()
if run.status == "running":
    st.info(_("This run is still training: you are trying its best model so far. When training finds a clearly "
            "better one, it replaces this one here by itself."))


def familiarity_words(model, running: bool = False) -> str:
    if model.novelty is None and running:
        return _("The check for pictures unlike the training pictures is added when training ends.")
    if model.novelty is None:
        return _("This model cannot warn about pictures unlike its training pictures: it was trained before "
                 "Transfer Studio had that check (or with too few pictures to set it). Train it again to get it.")
    return _("Pictures that do not look like the training pictures are flagged. About "
             "{share} of normal pictures are flagged too (measured on your {n} labelled pictures, each "
             "checked against the others).").format(share=f"{model.novelty.validation_rate:.0%}",
                                                     n=len(model.novelty.validation_scores))


def unusual(result) -> str:
    share = result.novelty.more_unusual_than
    if share >= 1.0:
        return _("it is more unusual than every one of your labelled pictures")
    return _("it is more unusual than {share} of your labelled pictures").format(share=f"{share:.0%}")


classes = RunFolder(run.path).read_json(runfiles.CLASSES, [])
top_k = st.slider(_("How many classes to show"), 1, max(2, len(classes)), min(3, max(2, len(classes))), key="top_k",
                  help=_("The most likely classes for each picture, with how sure the model is of each."))
threshold = st.slider(_("Say \"not sure\" below this confidence"), 0.0, 1.0, 0.0, 0.05, key="threshold",
                      format="%.2f", help=_("Below it, the answer is 'not sure' instead of a class: fewer answers, "
                                         "but the ones given are right more often. 0 always answers."))
if threshold > 0 and (run.path / runfiles.VALIDATION).is_file():
    cal = calibration_when_ready(run.path)
    if cal is not None:
        st.caption(_("On the validation pictures: ") + retranslate(cal.threshold_effect(threshold).describe()))
explain_it = st.toggle(_("Show why (heat map)"), key="gradcam", help=_("Colours the parts of the picture that made the "
                       "model choose its answer (Grad-CAM): red mattered most. A model that looks at the "
                       "background instead of the object has learned the wrong thing."))
files = st.file_uploader(_("Pictures to classify"), type=None, accept_multiple_files=True, key="predict_files",
                         help=_("One or many pictures (JPEG, PNG...). They are classified here and not stored."))
use_camera = st.toggle(_("Use my camera"), key="use_camera",
                       help=_("Asks your browser for the camera, then classifies the photo."))
if use_camera:
    camera_check()  # says "no camera found" in words where the browser has none (or may not use it here)
photo = st.camera_input(_("Or take a photo"), key="camera") if use_camera else None
corrections_panel(run)  # what corrections below added, and Retrain

images = [(f.name, f.getvalue()) for f in (files or [])] + ([(_("camera photo"), photo.getvalue())] if photo else [])
if not images:
    st.info(_("Add one or more pictures above to see what the model thinks they are."))
    st.stop()

found = answers_when_ready(run.path, images, threshold, top_k, explain_it)  # a task: never on this thread
if found is None:
    st.stop()  # waiting or running: its progress and Stop are shown above
st.caption(familiarity_words(found.model, run.status == "running"))
for i, (shown, (name, data)) in enumerate(zip(found.shown, images)):
    left, right = st.columns([1, 2])
    if shown.result is None:
        left.warning(_("{name} was skipped: {why}.").format(name=name, why=retranslate(shown.skipped)))
        continue
    result, top = shown.result, shown.result.top
    if shown.heat_map is not None:
        left.image(shown.heat_map, caption=_("{name}: where it looked").format(name=name), width="stretch")
    else:
        left.image(shown.picture, caption=name, width="stretch")
    if result.unfamiliar:
        right.markdown(_("**This does not look like your training pictures** ({why}), so the "
                         "model's answer would only be a guess.").format(why=unusual(result)))
        right.caption(_("Best guess: {name} ({sure} sure). The model always picks one of its "
                        "classes, even for a picture of something else.").format(
                            name=top[0][0], sure=f"{top[0][1]:.0%}"))
    elif result.sure:
        right.markdown(_("**{name}** ({sure} sure)").format(name=top[0][0], sure=f"{top[0][1]:.0%}"))
    else:
        right.markdown(_("**Not sure** (best guess {name}, only {sure} sure)").format(
            name=top[0][0], sure=f"{top[0][1]:.0%}"))
    right.plotly_chart(charts.probabilities(top), width="stretch", key=f"probs_{i}")
    with right:
        correction_controls(run, classes, i, name, data)
