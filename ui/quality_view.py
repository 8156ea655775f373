"""The Data page's check for duplicates, train/validation leaks and likely wrong labels, with review actions."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from transfer_core.quality import QualityReport, check_dataset, exclude_image, move_to_class

from . import session
from .common import friendly_errors
from .data_view import thumbnail

KEY_REPORT = "quality_report"
KEY_HANDLED = "quality_handled"  # pictures moved or excluded since the check: hidden from its lists
SHOWN = 12


def quality_check(choice: session.DataChoice) -> None:
    st.subheader("Check the pictures for problems")
    st.caption("Finds copies of the same picture (which make the score look better than it is when one copy "
               "is in validation) and pictures whose folder may be the wrong class. It uses the pretrained "
               "network's view of each picture and a quick classifier that never sees the picture it judges.")
    if st.button("Check my pictures", key="run_quality",
                 help="Takes about a second per 10 pictures on a laptop. Nothing is changed until you say so."):
        bar = st.progress(0.0, text="Looking at every picture...")
        with friendly_errors("The check"):
            report = check_dataset(choice.path, val_split=choice.val_split, seed=choice.seed,
                                   progress=lambda phase, i, n: bar.progress(min(i / max(n, 1), 1.0),
                                                                             text=f"{phase}: {i} of {n}"))
            st.session_state[KEY_REPORT] = (choice.path, report)
            st.session_state[KEY_HANDLED] = set()
        bar.empty()
    saved = st.session_state.get(KEY_REPORT)
    if saved and saved[0] == choice.path:
        _show(saved[1], editable=_inside_workspace(choice.path))


def _inside_workspace(path: str) -> bool:
    root = session.workspace().path.resolve()
    return root in Path(path).resolve().parents


def _show(report: QualityReport, editable: bool) -> None:
    done = st.session_state.get(KEY_HANDLED, set())
    duplicates = [p for p in report.duplicates if p.a.path not in done and p.b.path not in done]
    suspects = [s for s in report.suspects if s.image.path not in done]
    if done:
        st.caption(f"{len(done)} picture(s) moved or excluded since the check. Check again to see the effect.")
    for line in report.summary():
        st.write("• " + line)
    if duplicates:
        leaks = sum(p.leak for p in duplicates)
        with st.expander(f"Copies ({len(duplicates)} pairs, {leaks} across training and validation)"):
            for pair in duplicates[:SHOWN]:
                cols = st.columns([1, 1, 2])
                for col, entry in zip(cols, (pair.a, pair.b)):
                    thumb = thumbnail(entry.path, 140)
                    if thumb:
                        col.image(thumb, caption=f"{entry.name} ({entry.split})")
                cols[2].write(("Leak: one copy trains, one checks. " if pair.leak else "")
                              + ("Identical files." if pair.exact else f"Similarity {pair.similarity:.2f}."))
                if editable:
                    cols[2].button("Exclude the second copy", key=f"dup_{pair.b.path}",
                                   on_click=_exclude, args=(report.root, pair.b.path))
    if suspects:
        with st.expander(f"Pictures that may have the wrong label ({len(suspects)}), most suspect first",
                         expanded=True):
            if not editable:
                st.caption("These pictures are shared (the demo) or outside your uploads, so they can only be "
                           "reviewed here, not moved. Upload your own copy to fix labels.")
            cols = st.columns(4)
            for i, s in enumerate(suspects[:SHOWN]):
                with cols[i % 4]:
                    thumb = thumbnail(s.image.path, 180)
                    if thumb:
                        st.image(thumb)
                    st.caption(f"{s.image.name}: labelled {s.given} ({s.given_probability:.0%}), looks like "
                               f"{s.suggested} ({s.suggested_probability:.0%})")
                    if editable:
                        st.button(f"Move to {s.suggested}", key=f"move_{s.image.path}", on_click=_move,
                                  args=(report.root, s.image.path, s.suggested))
                        st.button("Exclude", key=f"excl_{s.image.path}", on_click=_exclude,
                                  args=(report.root, s.image.path))


def _move(root: str, image: str, new_class: str) -> None:
    with friendly_errors("Moving the picture"):
        move_to_class(root, image, new_class)
        st.toast(f"Moved {Path(image).name} to {new_class}.")
        _handled(image)


def _exclude(root: str, image: str) -> None:
    with friendly_errors("Excluding the picture"):
        exclude_image(root, image, session.workspace().path / "excluded")
        st.toast(f"Excluded {Path(image).name} (kept in your workspace's 'excluded' folder).")
        _handled(image)


def _handled(image: str) -> None:
    st.session_state.setdefault(KEY_HANDLED, set()).add(image)
