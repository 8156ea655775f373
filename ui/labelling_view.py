"""The "Label a pile with help" part of "Make your own classes": upload many pictures without a class, give a
few their class by hand, then let the pretrained network propose the rest, asking about the least certain
first. transfer_core.data.unlabelled keeps the pile and moves pictures; quality.labelling proposes.

Proposals are computed as a task in the engine's queue (never on the page's thread); answers run in widget
callbacks, so the pile and the class counts shown are the folder's as it is now."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.data.datafiles import DatasetError
from transfer_core.data.unlabelled import (
    add_unlabelled,
    label_picture,
    labelled_pictures,
    list_unlabelled,
    ready_to_suggest,
)
from transfer_core.quality.labelling import Suggestion, suggest
from transfer_core.service.jobs import default_queue

from . import tasks
from .common import friendly_errors, md_escape
from .data_view import thumbnail

KEY_TASK, KEY_TASK_SHOWN = "lb_task", "lb_task_shown"
KEY_SUGGESTIONS = "lb_suggestions"  # (set folder, [Suggestion]) of the last "Suggest classes"
KEY_SKIPPED = "lb_skipped"  # pictures skipped since then: asked again only after a new suggestion
KEY_ANSWERED = "lb_answered"  # answers since then: the head learns from them when suggesting again
KEY_UPROUND = "lb_upround"  # a new uploader key empties the box after adding
BY_HAND = 6  # pictures of the pile offered for labelling by hand at once
SUGGESTING = N_("Suggesting classes")


def label_with_help(dataset: Path, classes: list[str], picture_types: list[str]) -> None:
    """The whole section, for the set `dataset` whose classes are `classes`."""
    st.markdown(_("**Label a pile of pictures with help**"))
    st.caption(_("Upload many pictures without a class. Give a few of them their class by hand, then press "
               "**Suggest classes**: the pretrained network proposes a class for each of the others and asks "
               "you first about the ones it is least sure of. Pictures without a class are never trained on."))
    _pile_uploader(dataset, picture_types)
    _take_result()
    pile = list_unlabelled(dataset)
    if not pile:
        st.caption(_("No pictures are waiting for a class."))
        return
    st.write(_("{n} picture(s) wait for a class.").format(n=len(pile)))
    _by_hand(dataset, pile, classes)
    _suggest_button(dataset)
    _review(dataset, {p.name for p in pile}, classes)


# ---------------------------------------------------------------------------------------------- the pile
def _pile_uploader(dataset: Path, picture_types: list[str]) -> None:
    key = f"lb_up:{st.session_state.get(KEY_UPROUND, 0)}"
    files = st.file_uploader(_("Pictures without a class"), type=picture_types, accept_multiple_files=True, key=key,
                             help=_("Choose as many pictures as you like; they wait apart from your classes until "
                                  "each gets one. Damaged files are refused with the reason."))
    if files:
        st.button(_("Add {n} picture(s) to the pile").format(n=len(files)), key="lb_add", type="primary",
                  on_click=_add_uploads, args=(dataset, key),
                  help=_("Checks each picture opens, then keeps it in your workspace without a class."))


def _add_uploads(dataset: Path, key: str) -> None:
    added, refused = 0, []
    for f in st.session_state.get(key) or []:
        try:
            add_unlabelled(dataset, f.getvalue(), f.name)
            added += 1
        except DatasetError as exc:
            refused.append(str(exc))
    if added:
        st.toast(_("{n} picture(s) now wait for a class.").format(n=added))
    for reason in refused:
        st.error(md_escape(retranslate(reason)))
    st.session_state[KEY_UPROUND] = st.session_state.get(KEY_UPROUND, 0) + 1


def _by_hand(dataset: Path, pile: list[Path], classes: list[str]) -> None:
    with st.expander(_("Give pictures their class by hand"), expanded=not st.session_state.get(KEY_SUGGESTIONS)):
        cols = st.columns(BY_HAND)
        for col, path in zip(cols, pile[:BY_HAND]):
            with col:
                _picture(path, 96)
                st.selectbox(_("Class"), classes, index=None, placeholder=_("Class…"), key=f"lb_hand:{path.name}",
                             on_change=_answer_from, args=(dataset, path.name, f"lb_hand:{path.name}"),
                             label_visibility="collapsed",
                             help=_("Moves this picture into the class you choose."))


def _picture(path: Path, side: int) -> None:
    thumb = thumbnail(str(path), side)
    if thumb is not None:
        st.image(thumb, caption=path.name, width=side)


# ---------------------------------------------------------------------------------------------- suggesting
def _suggest_button(dataset: Path) -> None:
    reason = ready_to_suggest(labelled_pictures(dataset))
    again = st.session_state.get(KEY_ANSWERED, 0) if st.session_state.get(KEY_SUGGESTIONS) else 0
    if st.button(_("Suggest again") if again else _("Suggest classes"), key="lb_suggest", disabled=reason is not None,
                 help=_("The pretrained network looks at every picture once (later suggestions reuse that), learns "
                      "from your classes' pictures and proposes a class for each waiting one. It runs in the "
                      "queue, after any training.")):
        tasks.submit(KEY_TASK, SUGGESTING, partial(_suggest_work, dataset))
    if reason is not None:
        st.info(retranslate(reason))
    elif again:
        st.caption(_("You answered {n} since the last suggestion: suggest again to learn from them.").format(n=again))
    tasks.follow(KEY_TASK)


def _suggest_work(dataset: Path, report, stop) -> tuple[str, list[Suggestion]]:
    """The task's work: it runs in the engine's queue, never on the page's thread."""
    found = suggest(labelled_pictures(dataset), list_unlabelled(dataset), stop=stop,
                    progress=lambda phase, i, n: report(i, n, N_("looking at the pictures")))
    return str(dataset), found


def _take_result() -> None:
    """A finished suggestion becomes the list to ask about, once (a redraw must not bring back skips)."""
    task = default_queue().task(st.session_state.get(KEY_TASK, ""))
    if task is None or task.result is None or st.session_state.get(KEY_TASK_SHOWN) == task.id:
        return
    st.session_state[KEY_TASK_SHOWN] = task.id
    st.session_state[KEY_SUGGESTIONS] = task.result
    st.session_state[KEY_SKIPPED] = set()
    st.session_state[KEY_ANSWERED] = 0


# ---------------------------------------------------------------------------------------------- asking
def _review(dataset: Path, waiting: set[str], classes: list[str]) -> None:
    saved = st.session_state.get(KEY_SUGGESTIONS)
    if not saved or Path(saved[0]) != dataset:
        return
    skipped = st.session_state.get(KEY_SKIPPED, set())
    left = [s for s in saved[1] if s.path.name in waiting and s.path.name not in skipped]
    if not left:
        st.success(_("Every proposal is answered or skipped. Suggest again to go on with the rest."))
        return
    s = left[0]
    with st.container(border=True):
        st.caption(_("Least sure first · {n} proposal(s) left").format(n=len(left)))
        cols = st.columns([1, 2])
        with cols[0]:
            _picture(s.path, 200)
        with cols[1]:
            st.markdown(_("It looks like **{name}** ({sure} sure).").format(name=md_escape(s.label),
                                                                            sure=f"{s.confidence:.0%}"))
            st.button(_("Yes, {name}").format(name=s.label), key="lb_accept", type="primary", on_click=_answer,
                      args=(dataset, s.path.name, s.label),
                      help=_("Moves the picture into this class; suggesting again learns from it."))
            others = [c for c in classes if c != s.label]
            st.selectbox(_("No, it is"), others, index=None, placeholder=_("Another class…"), key=f"lb_other:{s.path.name}",
                         on_change=_answer_from, args=(dataset, s.path.name, f"lb_other:{s.path.name}"),
                         help=_("Moves the picture into the class you choose instead."))
            st.button(_("Skip"), key="lb_skip", on_click=_skip, args=(s.path.name,),
                      help=_("Leaves the picture without a class for now; it is asked again after the next "
                           "suggestion."))


def _answer_from(dataset: Path, picture: str, key: str) -> None:
    chosen = st.session_state.get(key)
    if chosen is not None:
        _answer(dataset, picture, chosen)


def _answer(dataset: Path, picture: str, class_name: str) -> None:
    with friendly_errors(N_("Giving the picture its class")):
        moved = label_picture(dataset, picture, class_name)
        st.session_state[KEY_ANSWERED] = st.session_state.get(KEY_ANSWERED, 0) + 1
        st.toast(_("{picture} is now in {name} (as {new_name}).").format(picture=picture, name=class_name,
                                                                         new_name=moved.name)
                 if moved.name != picture else _("{picture} is now in {name}.").format(
                     picture=picture, name=class_name))


def _skip(picture: str) -> None:
    st.session_state.setdefault(KEY_SKIPPED, set()).add(picture)
