"""What every page does first: page settings, the sidebar status, and errors in plain words."""
from __future__ import annotations

import functools
import gc
import re
from contextlib import contextmanager

import streamlit as st

from transfer_core.core.i18n import retranslate
from transfer_core.data.datarefs import redact_paths
from transfer_core.runstore.runs import RunSummary
from transfer_core.service.jobs import default_queue
from transfer_core.service.workspaces import OwnedRun, list_runs_for, run_name

from transfer_core.core.i18n import N_, _

from . import lang, session


def page(title: str, icon: str) -> None:
    """`title` is the English text, marked with N_ where the page names it: shown in the session's language."""
    lang.apply()
    title = _(title)
    st.set_page_config(page_title=f"{title} · Transfer Studio", page_icon=icon, layout="wide")
    _freeze_long_lived_objects()
    session.workspace()  # creates the token before any widget, so the URL is stable from the start
    st.title(f"{icon} {title}")
    lang.streamlit_words()
    _sidebar_status()


@functools.cache
def _freeze_long_lived_objects() -> None:
    """Once per server: torch, plotly and Streamlit leave ~400,000 objects that live as long as the
    process. Moving them out of the collector's sight makes each full collection ~0.35 s shorter, time
    during which every session's page would otherwise wait (see runner.postScriptGC in config.toml)."""
    gc.freeze()


NAV = [("app.py", N_("Home"), "🧠"), ("pages/1_Data.py", N_("Data"), "📁"), ("pages/2_Train.py", N_("Train"), "🏋️"),
       ("pages/3_Evaluate.py", N_("Evaluate"), "📊"), ("pages/4_Predict.py", N_("Predict"), "🔮"),
       ("pages/5_Runs.py", N_("Runs"), "🗂️"), ("pages/6_Live.py", N_("Live"), "🎥")]
TEACHER_NAV = ("pages/7_Teacher.py", N_("Teacher"), "🧑‍🏫")


def link_params() -> dict[str, str]:
    """What a link to another page carries: the workspace and the language."""
    return {"ws": session.workspace().token, lang.PARAM: lang.current()}


def _sidebar_status() -> None:
    with st.sidebar:
        lang.switch()
        # The Teacher page is listed once this session opened it with the key.
        teacher = [TEACHER_NAV] if st.session_state.get(session.KEY_TEACHER) else []
        for target, label, icon in NAV + teacher:
            st.page_link(target, label=_(label), icon=icon, query_params=link_params())
        st.divider()
        _status()


@st.fragment(run_every=5.0)  # every open tab runs it: cheap and not too often
def _status() -> None:
    """What is training on this machine now, refreshed while the user reads any page."""
    lang.apply()
    queue = default_queue()
    running = queue.running_jobs()
    waiting = [j for j in queue.jobs() if j.state == "queued"]
    mine = sum(j.owner == session.workspace().token for j in running)
    more = _(", {n} waiting").format(n=len(waiting)) if waiting else ""
    if not running:
        st.caption(_("No training is running right now."))
    elif len(running) == 1:
        line = _("Training now: {backbone} (yours)") if mine else _("Training now: {backbone} (someone else's)")
        st.caption(line.format(backbone=running[0].config.backbone) + more)
    else:
        st.caption(_("Training now: {n} runs ({mine} yours)").format(n=len(running), mine=mine) + more)
    data = session.data_choice()
    st.caption(_("Data: {label}").format(label=session.data_label(data)) if data else _("Data: none chosen yet"))


@contextmanager
def friendly_errors(what: str):
    """Show a failure as a sentence, never a traceback; the page keeps working."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the user sees a message instead of a stack trace
        # Escaped: the message may quote a folder or class name, which Markdown would otherwise format.
        st.error(_("{what} did not work: {why}").format(
            what=_(what), why=md_escape(retranslate(redact_paths(str(exc))))))


def need_data() -> session.DataChoice | None:
    data = session.data_choice()
    if data is None:
        st.info(_("No pictures chosen yet. Choose yours on the **Data** page, or try the demo pictures now."))
        st.page_link("pages/1_Data.py", label=_("Go to Data"), icon="📁")
        if st.button(_("Use the demo pictures"), key="use_demo_here"):
            with friendly_errors(N_("Loading the demo pictures")):
                session.use_demo_data()
                st.rerun()
    return data


def models_to_pick() -> list[OwnedRun]:
    """Every run with a saved model (finished or stopped), newest first, each marked yours or not."""
    return [o for o in list_runs_for(session.workspace().token, session.runs_dir()) if o.summary.has_model]


WHOSE = {"mine": N_("My runs"), "all": N_("Mine and shared")}


def pick_run(label: str, runs: list[OwnedRun], key: str, help: str) -> RunSummary | None:
    """A run chooser that starts on this person's own newest run (or the one they follow), with a filter
    between their runs and everyone's; None (with a hint) when there are none."""
    if not runs:
        st.info(_("No trained model yet. Train one on the **Train** page first."))
        st.page_link("pages/2_Train.py", label=_("Go to Train"), icon="🏋️")
        return None
    mine = [o for o in runs if o.mine]
    whose = st.segmented_control(_("Show"), list(WHOSE), format_func=lambda w: _(WHOSE[w]), key=f"{key}_whose",
                                 default="mine" if mine else "all", help=_("Runs started in this workspace "
                                 "(this link) are yours. Someone else's run is listed only when they share it on "
                                 "the Runs page."))
    shown = mine if whose == "mine" else runs
    if not shown:
        st.info(_("You have no trained model yet: pick \"Mine and shared\", or train one on the **Train** page."))
        return None
    ids = [o.summary.id for o in shown]
    followed = st.session_state.get(session.KEY_JOB)
    index = ids.index(followed) if followed in ids else ids.index(mine[0].summary.id) if mine and \
        mine[0].summary.id in ids else 0
    by_id = {o.summary.id: o for o in shown}
    chosen = st.selectbox(label, ids, index=index, key=key, help=help,
                          format_func=lambda i: owned_label(by_id[i]))
    return by_id[chosen].summary


def owned_label(o: OwnedRun) -> str:
    return f"{whose_word(o)} · {run_label(o.summary, o.name)}"


def whose_word(o: OwnedRun) -> str:
    """Whose a run is, and so why this person sees it: theirs, shared with them, or the server's own."""
    if o.mine:
        return _("yours")
    if o.shared.run:
        return _("shared by {name}").format(name=o.shared.by) if o.shared.by else _("shared")
    return _("the server’s")  # made on the command line by whoever runs the server


def download_name(name: str, suffix: str = ".zip") -> str:
    """A download's file name from a run's display name, safe on every system ('frozen: all' -> frozen_all)."""
    return (re.sub(r"[^\w.-]+", "_", name).strip("_.")[:80] or "run") + suffix


def percent(value: float | None) -> str:
    """Accuracies read the same everywhere: 97.5%, and '-' where there is none (a failed run)."""
    return "-" if value is None else f"{value:.1%}"


def accuracy_with_range(r: RunSummary) -> str:
    """The kept model's accuracy and how sure that figure is (95% Wilson interval on its validation pictures):
    on 8 pictures 100% may be a 68% model. The first model's, when the run ended at it."""
    if r.interval is None:
        return percent(r.best_val_accuracy)
    low, high = r.interval
    return _("{accuracy} (95% sure: {low}-{high})").format(accuracy=percent(r.best_val_accuracy),
                                                           low=f"{low:.0%}", high=f"{high:.0%}")


def kept_model_word(r: RunSummary) -> str:
    """Which model the run keeps: its first model (fitted before any epoch) or an epoch's."""
    if r.best_epoch is None:
        return "-"
    return _("first model") if r.best_epoch == 0 else _("epoch {n}").format(n=r.best_epoch)


def run_label(r: RunSummary, name: str | None = None) -> str:
    accuracy = accuracy_with_range(r)
    return _("{name} · {backbone} · {status} · best accuracy {accuracy}").format(
        name=name or run_name(r.path) or r.id, backbone=r.backbone, status=status_word(r.status), accuracy=accuracy)


STATUS_WORDS = {"finished": N_("finished"), "stopped": N_("stopped"), "failed": N_("failed"),
                "running": N_("running"), "queued": N_("queued"), "interrupted": N_("interrupted")}


def status_word(status: str) -> str:
    """A run's status as a word of the session's language (the engine keeps the English one)."""
    return _(STATUS_WORDS[status]) if status in STATUS_WORDS else status


_MARKDOWN_CHARS = set("\\`*_{}[]()#+-.!|<>~$:")


def md_escape(text) -> str:
    """User text (class, folder, file and run names) in Markdown, its Markdown characters kept as text:
    a folder named `*cats*` must not turn the rest of a message italic."""
    return "".join("\\" + c if c in _MARKDOWN_CHARS else c for c in str(text))
