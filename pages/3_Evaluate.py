"""Evaluate: how good is a trained model, class by class, and which pictures does it get wrong."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate, sentences
from transfer_core.core.advice import overfitting
from transfer_core.data.datasets import TEST_MIN_PER_CLASS
from transfer_core.inference.evaluation import evaluate_run, has_test_share
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.workspaces import may_see_pictures
from ui import charts, session
from ui.calibration_view import calibration_when_ready
from ui.common import friendly_errors, models_to_pick, page, pick_run
from ui.data_view import thumbnail
from ui.learning_curve_view import more_pictures

page(N_("Evaluate"), "📊")
run = pick_run(_("Trained model"), models_to_pick(), "evaluate_run",
               _("Every finished run is listed, newest first. Scores are measured on pictures the model never "
                 "trained on."))
if run is None:
    st.stop()

if not (run.path / runfiles.VALIDATION).is_file():
    st.info(_("This run was stopped before its results were measured. Resume it on the **Runs** page to finish "
            "it; its best model so far already works on the **Predict** page."))
    st.page_link("pages/5_Runs.py", label=_("Go to Runs"), icon="🗂️")
    st.stop()

folder = RunFolder(run.path)
# Whether the pictures may be read for this person: the engine's rule (the owner, or shared with pictures).
pictures_ok = may_see_pictures(run.path, session.workspace().token)
final = folder.final_event()
warning = overfitting(folder.epochs(), getattr(final, "best_epoch", None))
if warning:
    st.warning(retranslate(warning))

SHARE_NAMES = {"test": N_("Test pictures"), "validation": N_("Validation pictures")}
SHARE_WORDS = {
    "test": N_("Test pictures: kept apart and used for nothing during training, so this is the honest figure."),
    "validation": N_("Validation pictures: never trained on, but they chose the best epoch and set how sure the "
                     "model says it is, so their figure is a little optimistic.")}

with friendly_errors(N_("Reading this run's results")):
    shares = ["test", "validation"] if has_test_share(run.path) else ["validation"]
    share = shares[0] if len(shares) == 1 else st.radio(
        _("Measured on"), shares, format_func=lambda s: _(SHARE_NAMES[s]), horizontal=True,
        key="evaluate_share", help=_("Test pictures are kept apart when every class has at least "
                                     "{n} pictures: half of the share you set aside on the Data page.").format(
                                         n=TEST_MIN_PER_CLASS))
    st.caption(_(SHARE_WORDS[share]) if len(shares) > 1 else sentences(_(SHARE_WORDS["validation"]), _(
        "With at least {n} pictures in every class, a separate test share is kept for an honest figure.").format(
            n=TEST_MIN_PER_CLASS)))
    result = evaluate_run(run.path, share)
    ev = result.evaluation
    low, high = ev.interval
    c1, c2, c3 = st.columns(3)
    c1.metric(_("Accuracy"), f"{ev.accuracy:.1%}",
              help=(_("Share of test pictures classified right. With few pictures this figure is rough: "
                      "the range below says how rough.") if share == "test" else
                    _("Share of validation pictures classified right. With few pictures this figure is rough: "
                      "the range below says how rough.")))
    c2.metric(_("Macro F1"), f"{ev.macro_f1:.2f}", help=_("The average of the per-class F1 scores (1.0 is perfect). "
                                                      "Unlike accuracy, a small class counts as much as a big one."))
    c3.metric(_(SHARE_NAMES[share]), ev.total)
    st.caption(_("95% confidence range for the accuracy: {low} to {high} (Wilson interval on "
                 "{n} pictures). Two runs whose ranges overlap a lot may not really differ.").format(
                     low=f"{low:.1%}", high=f"{high:.1%}", n=ev.total))

    st.subheader(_("Per class"))
    st.dataframe([{_("class"): s.name, _("precision"): round(s.precision, 3), _("recall"): round(s.recall, 3),
                   "F1": round(s.f1, 3), _("pictures"): s.support} for s in ev.scores],
                 hide_index=True, width="stretch")
    st.caption(_("Precision: when the model says this class, how often it is right. Recall: of the pictures of "
               "this class, how many it finds. F1 balances the two."))
    st.plotly_chart(charts.confusion(ev.confusion, ev.classes), width="stretch")

    st.subheader(_("How sure should you be of it?"))
    cal = calibration_when_ready(run.path)
    if cal is not None:
        st.write(retranslate(cal.calibration.describe()))
        c1, c2 = st.columns(2)
        c1.metric(_("Confidence error as trained"), f"{cal.calibration.ece_before:.1%}",
                  help=_("Expected calibration error: how far, on average, the model's stated confidence is from "
                       "how often it is right. 0% is perfectly honest."))
        if not cal.calibration.kept:  # nothing was changed: no "after" to compare (the words above say why)
            c2.metric(_("Confidence Predict uses"), _("the model's own"),
                      help=_("No correction is applied: it could not be shown to make the confidence more honest."))
        else:
            c2.metric(_("After calibration"), f"{cal.calibration.ece_after:.1%}",
                      delta=_("{value} points").format(
                          value=f"{(cal.calibration.ece_after - cal.calibration.ece_before) * 100:+.1f}"),
                      delta_color="inverse", help=_("Predict uses the calibrated confidence (temperature scaling: "
                                                  "the predicted class never changes, only how sure it says it is)."))
        left, right = st.columns(2)
        left.plotly_chart(charts.reliability(cal.bins_before(), cal.bins_after()), width="stretch")
        right.plotly_chart(charts.threshold_tradeoff(cal.threshold_curve()), width="stretch")

    st.subheader(_("Pictures it got wrong ({n})").format(n=len(result.mistakes)))
    if not result.mistakes:
        st.success(_("None: every test picture was classified right.") if share == "test"
                   else _("None: every validation picture was classified right."))
    shown = result.mistakes[:24] if pictures_ok else []
    if result.mistakes and not pictures_ok:
        st.info(_("The person who trained this run shares it without its pictures, so they are not shown."))
    cols = st.columns(6)
    for i, m in enumerate(shown):
        with cols[i % 6]:
            thumb = thumbnail(m.path, 240)
            caption = _("{name}: is {true}, predicted {predicted} ({confidence})").format(
                name=m.name, true=m.true, predicted=m.predicted, confidence=f"{m.confidence:.0%}")
            if thumb:  # a statement, not a bare expression: Streamlit would "magic"-write its value
                st.image(thumb, width="stretch", caption=caption)
            else:
                st.caption(caption)
    if shown and len(result.mistakes) > len(shown):
        st.caption(_("The {n} most confident mistakes are shown; they are the most worth a look (a wrong "
                     "label in your data often shows up here).").format(n=len(shown)))

if pictures_ok:  # it learns again from the run's pictures: only for those who may see them
    more_pictures(run.path)
