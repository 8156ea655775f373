"""The Train page's "methods beyond fine-tuning": each a real engine option, explained in plain words.

The registered methods draw themselves from their specs (method_controls.py); the explanations come from
transfer_core.methods.HELP, so the app and the README say the same thing.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from transfer_core.core.i18n import N_, _
from transfer_core.core.config import HEADS, SETTINGS, TrainConfig
from transfer_core.methods import HELP, list_methods
from transfer_core.workflows.lr_finder import lr_find

from . import session, tasks
from .method_controls import method_settings
from .session import remembered

LR_OPTIONS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
FACTORS = [1.0, 0.7, 0.5, 0.3, 0.1]
KEY_LR_FIND = "lr_find_result"
KEY_LR_TASK = "lr_find_task"
KEY_LR_SHOWN = "lr_find_shown"


def lr_options() -> list[float]:
    """The usual rates, plus the one this person uses (a suggestion of the finder, e.g. 0.00046)."""
    chosen = [v for v in (st.session_state.get("lr"), session.remembered_value("lr"))
              if isinstance(v, float) and 1e-7 <= v <= 1]
    return sorted({*LR_OPTIONS, *chosen})


def choose_methods() -> dict:
    with st.expander(_("Advanced: methods beyond plain fine-tuning")):
        out = {**_head(), **_unfreezing()}
        for spec in list_methods():  # each registered method's own controls, from its spec
            out.update(method_settings(spec))
        out["scratch_baseline"] = st.checkbox(_("Also train from scratch, to compare"), key="scratch_baseline",
                                              help=_(HELP["scratch_baseline"]))
    return out


def _head() -> dict:
    words = SETTINGS["head"].words
    head = st.radio(_("New classifier"), HEADS, horizontal=True, key="head", format_func=lambda v: _(words.get(v, v)),
                    help=_(HELP["head"]))
    if head == "linear":
        return {"head": head}
    c1, c2 = st.columns(2)
    hidden = c1.select_slider(_("Hidden units"), [64, 128, 256, 512, 1024], 512, key="mlp_hidden",
                              help=_("Size of the hidden layer: more can learn subtler combinations, but "
                                   "overfits sooner with few pictures."))
    dropout = c2.slider(_("Dropout"), 0.0, 0.7, 0.2, 0.1, key="dropout",
                        help=_("Randomly silences this share of hidden units while training, so the classifier "
                             "cannot rely on any single feature. Higher fights overfitting."))
    return {"head": head, "mlp_hidden": int(hidden), "dropout": float(dropout)}


def _unfreezing() -> dict:
    c1, c2 = st.columns(2)
    remembered("unfreeze_at", "")
    text = c1.text_input(_("Unfreeze one more stage at epochs (e.g. 2,3)"), key="unfreeze_at",
                         help=_(HELP["unfreeze_at"]))
    remembered("lr_group_factor", 1.0, FACTORS)
    factor = c2.select_slider(_("Learning-rate factor per earlier stage"), FACTORS, key="lr_group_factor",
                              help=_(HELP["lr_group_factor"]))
    epochs = tuple(int(t) for t in text.replace(" ", "").split(",") if t.isdigit())
    if text.strip() and not epochs:
        st.warning(_("Write epoch numbers separated by commas, e.g. 2,3."))
    return {"unfreeze_at": epochs, "lr_group_factor": float(factor)}


def lr_finder(config: TrainConfig) -> None:
    """A button that queues the range test on the chosen data and settings, then shows and offers its
    suggestion: exactly the value suggested, marked on the curve."""
    if st.button(_("Find a good learning rate"), key="run_lr_find", help=_(HELP["lr_find"])):
        tasks.submit(KEY_LR_TASK, N_("Finding a learning rate"), partial(_lr_find_work, config))
    task = tasks.follow(KEY_LR_TASK)
    if task is not None and task.result is not None and st.session_state.get(KEY_LR_SHOWN) != task.id:
        result = task.result
        st.session_state[KEY_LR_FIND] = (result.lrs, result.losses, suggested_lr(result.suggestion))
        st.session_state[KEY_LR_SHOWN] = task.id
    found = st.session_state.get(KEY_LR_FIND)
    if not found:
        return
    lrs, losses, suggestion = found
    st.plotly_chart(_lr_figure(lrs, losses, suggestion), width="stretch")
    st.button(_("Use {value}").format(
        value=f"{suggestion:g}"), key="use_lr_find", on_click=_use_lr, args=(suggestion,),
              help=_("Sets the learning rate above to exactly this value."))


def _lr_find_work(config: TrainConfig, report, stop):
    return lr_find(config, stop=stop, preparing=lambda i, n: report(i, n, N_("reading the pictures")),
                   progress=lambda i, n: report(i, n, N_("trying learning rates")))


def suggested_lr(value: float) -> float:
    """Two significant digits: what the button says is what training gets."""
    return float(f"{value:.2g}")


def _lr_figure(lrs: list[float], losses: list[float], suggestion: float) -> go.Figure:
    fig = go.Figure(go.Scatter(x=lrs, y=losses, mode="lines", name=_("loss")))
    at = float(np.interp(math.log(suggestion), [math.log(v) for v in lrs], losses))
    fig.add_trace(go.Scatter(x=[suggestion], y=[at], mode="markers+text", name=_("suggested"),
                             text=[_("suggested: {value}").format(value=f"{suggestion:g}")], textposition="top right",
                             marker={"size": 11, "color": "#d62728"}))
    fig.update_layout(xaxis_type="log", xaxis_title=_("learning rate"), yaxis_title=_("loss (smoothed)"), height=280,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False)
    return fig


def _use_lr(value: float) -> None:
    st.session_state["lr"] = value  # lr_options() offers it from now on
