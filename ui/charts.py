"""Plotly figures for the pages: pure functions of engine results, no Streamlit calls."""
from __future__ import annotations

import plotly.graph_objects as go

from transfer_core.core.events import EpochEnd, ModelReady, Progress, StageThawed
from transfer_core.core.i18n import N_, _, retranslate

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=320, legend=dict(orientation="h", y=-0.25))

# One meaning for colour across every chart of the app: colour is the share of pictures (the same colours
# as the Data page's bars); several runs in one chart differ by line style, never by colour.
SHARE_COLOURS = {"training": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}
SHARE_NAMES = {"training": N_("training"), "validation": N_("validation"), "test": N_("test")}
RUN_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def _line(x, y, share: str, run: int = 0, label: str = "", **extra) -> go.Scatter:
    name = f"{label}: {_(SHARE_NAMES[share])}" if label else _(SHARE_NAMES[share])
    return go.Scatter(x=x, y=y, mode="lines+markers", name=name, legendgroup=label or share,
                      line=dict(color=SHARE_COLOURS[share], dash=RUN_DASHES[run % len(RUN_DASHES)]), **extra)


def class_counts(counts: dict[str, dict[str, int]]) -> go.Figure:
    names = list(counts)
    shares = [("training", "train"), ("validation", "val")]
    shares += [("test", "test")] if any(counts[c].get("test") for c in names) else []
    fig = go.Figure([go.Bar(name=_(SHARE_NAMES[share]), x=names, y=[counts[c][key] for c in names],
                            marker_color=SHARE_COLOURS[share]) for share, key in shares])
    fig.update_layout(barmode="stack", title=_("Images per class"), yaxis_title=_("images"), **_LAYOUT)
    return fig


def _epoch_axis(epochs: list[EpochEnd]) -> list[int]:
    return [e.epoch for e in epochs]


def loss_curves(epochs: list[EpochEnd], live: list[tuple[float, float]] = (), label: str = "") -> go.Figure:
    """Training and validation loss per epoch; `live` adds the running training loss within epochs."""
    fig = go.Figure()
    add_loss_traces(fig, epochs, live, label)
    fig.update_layout(title=_("Loss (lower is better)"), xaxis_title=_("epoch"), yaxis_title=_("loss"),
                      yaxis_rangemode="tozero", **_LAYOUT)
    return fig


def add_loss_traces(fig: go.Figure, epochs: list[EpochEnd], live=(), label: str = "", run: int = 0) -> None:
    if live:
        live_name = _("training (live)")
        fig.add_trace(go.Scatter(x=[x for x, _y in live], y=[y for _x, y in live], mode="lines",
                                 name=f"{label}: {live_name}" if label else live_name,
                                 legendgroup=label or "live",
                                 line=dict(width=1, color=SHARE_COLOURS["training"]), opacity=0.5))
    fig.add_trace(_line(_epoch_axis(epochs), [e.train_loss for e in epochs], "training", run, label))
    fig.add_trace(_line(_epoch_axis(epochs), [e.val_loss for e in epochs], "validation", run, label))


def accuracy_curves(epochs: list[EpochEnd], label: str = "") -> go.Figure:
    fig = go.Figure()
    add_accuracy_traces(fig, epochs, label)
    fig.update_layout(title=_("Accuracy (higher is better)"), xaxis_title=_("epoch"), yaxis_title=_("accuracy"),
                      yaxis_range=[0, 1.02], **_LAYOUT)
    return fig


def add_accuracy_traces(fig: go.Figure, epochs: list[EpochEnd], label: str = "", run: int = 0) -> None:
    fig.add_trace(_line(_epoch_axis(epochs), [e.train_accuracy for e in epochs], "training", run, label))
    fig.add_trace(_line(_epoch_axis(epochs), [e.val_accuracy for e in epochs], "validation", run, label))


def compared_runs(comparison, names: dict[str, str] | None = None) -> tuple[go.Figure, go.Figure]:
    """Several runs' curves (compare.RunComparison): colour is the share, the line style the run."""
    loss, acc = go.Figure(), go.Figure()
    for i, curves in enumerate(comparison.runs):
        label = (names or {}).get(curves.run_id, curves.label)[-24:]
        loss.add_trace(_line(curves.epochs, curves.values["train_loss"], "training", i, label))
        loss.add_trace(_line(curves.epochs, curves.values["val_loss"], "validation", i, label))
        acc.add_trace(_line(curves.epochs, curves.values["val_accuracy"], "validation", i, label))
    loss.update_layout(title=_("Loss (lower is better)"), xaxis_title=_("epoch"), yaxis_rangemode="tozero", **_LAYOUT)
    acc.update_layout(title=_("Validation accuracy"), xaxis_title=_("epoch"), yaxis_range=[0, 1.02], **_LAYOUT)
    return loss, acc


def live_points(progress: list[Progress]) -> list[tuple[float, float]]:
    """(fractional epoch, running training loss) from the progress events of the training phase."""
    return [(p.epoch - 1 + p.step / max(p.steps, 1), p.train_loss) for p in progress
            if p.phase == "train" and p.steps and p.train_loss > 0]


def confusion(matrix, classes: list[str]) -> go.Figure:
    z = matrix.tolist()
    fig = go.Figure(go.Heatmap(z=z, x=classes, y=classes, colorscale="Blues", text=z, texttemplate="%{text}",
                               hovertemplate=_("true %{y}, predicted %{x}: %{z}") + "<extra></extra>"))
    fig.update_layout(title=_("Confusion matrix"), xaxis_title=_("predicted class"), yaxis_title=_("true class"),
                      yaxis_autorange="reversed", **{**_LAYOUT, "height": 120 + 45 * len(classes)})
    return fig


def probabilities(top: list[tuple[str, float]]) -> go.Figure:
    names = [c for c, _p in top][::-1]
    values = [p for _c, p in top][::-1]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", text=[f"{v:.0%}" for v in values],
                           textposition="auto"))
    fig.update_layout(xaxis_range=[0, 1], xaxis_tickformat=".0%", margin=dict(l=10, r=10, t=10, b=10),
                      height=60 + 30 * len(top))
    return fig


def reliability(bins_before, bins_after) -> go.Figure:
    """Stated confidence against how often the model was right, per confidence bin; the diagonal is honest."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=_("perfectly honest"),
                             line=dict(dash="dash", color="grey")))
    for name, bins in ((_("as trained"), bins_before), (_("calibrated"), bins_after)):
        used = [b for b in bins if b.count]
        fig.add_trace(go.Scatter(x=[b.confidence for b in used], y=[b.accuracy for b in used],
                                 mode="lines+markers", name=name,
                                 text=[_("{n} pictures").format(n=b.count) for b in used]))
    fig.update_layout(title=_("Is the model as sure as it should be?"), xaxis_title=_("how sure it said it was"),
                      yaxis_title=_("how often it was right"), xaxis_range=[0, 1.02], yaxis_range=[0, 1.02],
                      **_LAYOUT)
    return fig


def threshold_tradeoff(curve) -> go.Figure:
    xs = [e.threshold for e in curve]
    fig = go.Figure([go.Scatter(x=xs, y=[e.coverage for e in curve], name=_("share of pictures answered")),
                     go.Scatter(x=xs, y=[e.answered_accuracy for e in curve], name=_("accuracy on those"))])
    fig.update_layout(title=_("Saying 'not sure' below a confidence"), xaxis_title=_("confidence threshold"),
                      xaxis_tickformat=".0%", yaxis_tickformat=".0%", yaxis_range=[0, 1.02], **_LAYOUT)
    return fig


def mark_phases(fig: go.Figure, events: list, accuracy: bool = False) -> None:
    """The run's phases on a curve: the first model (progressive schedule) at epoch 0, and a dotted line where
    a frozen stage started to learn, so a class sees what each change did to the curves."""
    ready = next((e for e in events if isinstance(e, ModelReady)), None)
    if ready is not None:
        y = ready.val_accuracy if accuracy else ready.val_loss
        fig.add_trace(go.Scatter(x=[0], y=[y], mode="markers+text", text=[_("first model")], textposition="top right",
                                 name=_("first model (validation)"), marker=dict(symbol="star", size=12,
                                                                               color=SHARE_COLOURS["validation"])))
    for thaw in (e for e in events if isinstance(e, StageThawed)):
        fig.add_vline(x=thaw.epoch - 0.5, line_dash="dot", line_color="grey",
                      annotation_text=_("{stage} learns").format(stage=retranslate(thaw.stage)),
                      annotation_textangle=-90,
                      annotation_font_size=10)
