"""Evaluate's "Do I need more pictures?": the per-class learning curve, measured as a task in the engine's
queue (never on the page's thread), drawn with the verdict per class in words."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.quality.learning_curve import LEVELLED, MAX_PER_CLASS, MORE, LearningCurve, run_learning_curve

from . import tasks
from .charts import _LAYOUT
from .common import md_escape

KIND = N_("Measuring whether more pictures would help")


def task_key(run_dir: Path) -> str:
    return f"learning_curve_task_{run_dir.name}"


def more_pictures(run_dir: Path) -> None:
    """The section: a button that queues the measurement, its progress, then the chart and the words."""
    st.subheader(_("Do I need more pictures?"))
    st.caption(_("The new classifier is trained again on a quarter, half, three quarters and all of one class's "
                 "pictures at a time, and tested on pictures it did not learn from. A class whose right answers "
                 "still climb will likely gain from more pictures."))
    key = task_key(run_dir)
    if st.button(_("Find out"), key=f"{key}_start",
                 help=_("Takes from a few seconds to two minutes (at most {n} pictures per class are used); the "
                        "trained model is not changed.").format(n=MAX_PER_CLASS)):
        tasks.submit(key, KIND, partial(_measure, run_dir))
    task = tasks.follow(key)
    if task is not None and isinstance(task.result, LearningCurve):
        show(task.result)


def _measure(run_dir: Path, report, stop) -> LearningCurve:
    """The task's work: it runs in the engine's queue."""
    return run_learning_curve(run_dir, progress=lambda phase, i, n: report(i, n, phase), stop=stop)


def show(curve: LearningCurve) -> None:
    st.plotly_chart(figure(curve), width="stretch")
    for c in curve.curves:
        words = md_escape(retranslate(c.describe()))
        (st.warning if c.verdict == MORE else st.success if c.verdict == LEVELLED else st.info)(words)
    notes = [_("Measured on {used} of the {total} pictures of {name}, drawn at random, to stay quick.").format(
        used=c.pictures, total=c.total, name=md_escape(c.name)) for c in curve.capped()]
    if not curve.same_pictures:
        notes.append(_("The pictures have changed since this model was trained: this is measured on them as they "
                       "are now."))
    notes.append(_("Measured with the new classifier alone on the pretrained network ({folds} rounds, each "
                   "testing on pictures it did not learn from); training more layers may gain more from new "
                   "pictures.").format(folds=curve.folds))
    st.caption(" ".join(notes))


def figure(curve: LearningCurve) -> go.Figure:
    """One line per class: pictures of that class learned from -> share of them answered right (bars: the
    spread over the rounds)."""
    fig = go.Figure([go.Scatter(x=[p.pictures for p in c.points], y=[p.recall for p in c.points],
                                error_y=dict(type="data", array=[p.recall_spread for p in c.points]),
                                mode="lines+markers", name=c.name) for c in curve.curves])
    fig.update_layout(title=_("Right answers per class as it learns from more of that class's pictures"),
                      xaxis_title=_("pictures of the class learned from"), yaxis_title=_("right answers"),
                      yaxis=dict(tickformat=".0%", range=[0, 1.05]), **_LAYOUT)
    return fig
