"""The Data page's check for duplicates, train/validation leaks and likely wrong labels, with review actions."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from transfer_core.core.i18n import N_, _, retranslate
from transfer_core.quality.checks import check_dataset
from transfer_core.quality.findings import QualityReport
from transfer_core.quality.review_actions import (
    FileMove,
    exclude_image,
    move_to_class,
    undo_move,
)

from . import session, tasks
from .common import friendly_errors
from .data_view import thumbnail

KEY_REPORT = "quality_report"
KEY_HANDLED = "quality_handled"  # pictures moved or excluded since the check: hidden from its lists
KEY_UNDO = "quality_moves"  # (picture, FileMove) of each review action, to take back the last one
KEY_TASK, KEY_TASK_SHOWN = "quality_task", "quality_task_shown"
SHOWN = 12
SPLITS = {"train": N_("training"), "val": N_("validation"), "test": N_("test")}


def quality_check(choice: session.DataChoice) -> None:
    st.subheader(_("Check the pictures for problems"))
    st.caption(_("Finds copies of the same picture (which make the score look better than it is when one copy "
               "is in validation) and pictures whose folder may be the wrong class. It uses the pretrained "
               "network's view of each picture and a quick classifier that never sees the picture it judges."))
    if st.button(_("Check my pictures"), key="run_quality",
                 help=_("Takes about a second per 10 pictures on a laptop. Nothing is changed until you say so.")):
        tasks.submit(KEY_TASK, N_("Checking the pictures"), partial(_check, choice))
    task = tasks.follow(KEY_TASK)
    if task is not None and task.result is not None and st.session_state.get(KEY_TASK_SHOWN) != task.id:
        st.session_state[KEY_REPORT] = task.result
        st.session_state[KEY_HANDLED] = set()
        st.session_state[KEY_TASK_SHOWN] = task.id
    _undo_button()
    saved = st.session_state.get(KEY_REPORT)
    if saved and saved[0] == choice.path:
        _show(saved[1], editable=_inside_workspace(choice.path))


def _check(choice: session.DataChoice, report, stop) -> tuple[str, QualityReport]:
    """The task's work: it runs in the engine's queue, never on the page's thread."""
    result = check_dataset(choice.path, val_split=choice.val_split, seed=choice.seed,
                           progress=lambda phase, i, n: report(i, n, phase))
    return choice.path, result


def _inside_workspace(path: str) -> bool:
    root = session.workspace().path.resolve()
    return root in Path(path).resolve().parents


def _show(report: QualityReport, editable: bool) -> None:
    done = st.session_state.get(KEY_HANDLED, set())
    duplicates = [p for p in report.duplicates if p.a.path not in done and p.b.path not in done]
    suspects = [s for s in report.suspects if s.image.path not in done]
    exact_twins = {e.path: other for p in report.duplicates if p.exact for e, other in ((p.a, p.b), (p.b, p.a))}
    if done:
        st.caption(_("{n} picture(s) moved or excluded since the check. Check again to see the effect.").format(
            n=len(done)))
    for line in report.summary():
        st.write("• " + retranslate(line))
    if duplicates:
        leaks = sum(p.leak for p in duplicates)
        with st.expander(_("Copies ({pairs} pairs, {leaks} across training and validation)").format(
                pairs=len(duplicates), leaks=leaks)):
            for pair in duplicates[:SHOWN]:
                cols = st.columns([1, 1, 2])
                for col, entry in zip(cols, (pair.a, pair.b)):
                    thumb = thumbnail(entry.path, 140)
                    if thumb:
                        col.image(thumb, caption=f"{entry.name} ({_(SPLITS.get(entry.split, entry.split))})")
                cols[2].write((_("Leak: one copy trains, one checks.") + " " if pair.leak else "")
                              + (_("Identical files.") if pair.exact else
                                 _("Similarity {value}.").format(value=f"{pair.similarity:.2f}")))
                if editable:
                    cols[2].button(_("Exclude the second copy"), key=f"dup_{pair.b.path}",
                                   on_click=_exclude, args=(report.root, pair.b.path))
    if suspects:
        with st.expander(_("Pictures that may have the wrong label ({n}), most suspect first").format(
            n=len(suspects)),
                         expanded=True):
            if not editable:
                st.caption(_("These pictures are shared (the demo) or outside your uploads, so they can only be "
                           "reviewed here, not moved. Upload your own copy to fix labels."))
            cols = st.columns(4)
            for i, s in enumerate(suspects[:SHOWN]):
                with cols[i % 4]:
                    thumb = thumbnail(s.image.path, 180)
                    if thumb:
                        st.image(thumb)
                    st.caption(_("{name}: labelled {given} ({given_p}), looks like {suggested} ({suggested_p})").format(
                        name=s.image.name, given=s.given, given_p=f"{s.given_probability:.0%}",
                        suggested=s.suggested, suggested_p=f"{s.suggested_probability:.0%}"))
                    twin = exact_twins.get(s.image.path)
                    if editable and twin:
                        # Moving one of two identical files only makes a new problem: the same picture in
                        # two classes. One copy has to go.
                        st.caption(_("An identical copy is {name}: exclude one of the two instead of moving.").format(
                            name=twin.name))
                    elif editable:
                        st.button(_("Move to {name}").format(name=s.suggested), key=f"move_{s.image.path}",
                                  on_click=_move,
                                  args=(report.root, s.image.path, s.suggested))
                        st.button(_("Exclude"), key=f"excl_{s.image.path}", on_click=_exclude,
                                  args=(report.root, s.image.path))


def _move(root: str, image: str, new_class: str) -> None:
    with friendly_errors(N_("Moving the picture")):
        _handled(image, move_to_class(root, image, new_class))
        st.toast(_("Moved {picture} to {target}.").format(picture=Path(image).name, target=new_class))


def _exclude(root: str, image: str) -> None:
    with friendly_errors(N_("Excluding the picture")):
        _handled(image, exclude_image(root, image, session.workspace().path / "excluded"))
        st.toast(_("Excluded {picture} (kept in your workspace's 'excluded' folder).").format(
            picture=Path(image).name))


def _handled(image: str, move: FileMove) -> None:
    st.session_state.setdefault(KEY_HANDLED, set()).add(image)
    st.session_state.setdefault(KEY_UNDO, []).append((image, move))


def _undo_button() -> None:
    """Every move or exclusion since the check can be taken back, the last one first."""
    done = st.session_state.get(KEY_UNDO, [])
    if done and st.button(_("Undo: put {picture} back").format(picture=Path(done[-1][0]).name), key="quality_undo",
                          help=_("Moves the picture back to the class folder it came from.")):
        image, move = done.pop()
        with friendly_errors(N_("Putting the picture back")):
            undo_move(move)
            st.session_state.get(KEY_HANDLED, set()).discard(image)
            st.toast(_("Put {picture} back.").format(picture=Path(image).name))
