"""Showing a dataset report: what was found, what was skipped and why, a few pictures per class."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
from PIL import Image

from transfer_core.datasets import BadImage, DatasetReport, load_rgb, scan_dataset

THUMBS_PER_CLASS = 6


def _signature(path: str) -> tuple[int, float]:
    """Changes when files are added, removed or moved, so a cached scan is redone then."""
    count, latest = 0, 0.0
    for dirpath, _dirs, files in os.walk(path):
        count += len(files)
        latest = max(latest, os.stat(dirpath).st_mtime)
    return count, latest


@st.cache_data(show_spinner=False, max_entries=32)
def _cached_scan(path: str, val_split: float, seed: int, signature: tuple) -> DatasetReport:
    return scan_dataset(path, val_split=val_split, seed=seed)


def scan(path: str, val_split: float, seed: int) -> DatasetReport:
    with st.spinner("Opening every picture once to check it (a few seconds for a few thousand)..."):
        return _cached_scan(path, val_split, seed, _signature(path))


@st.cache_data(show_spinner=False, max_entries=512)
def thumbnail(path: str, side: int = 160) -> Image.Image | None:
    try:
        img = load_rgb(path)
    except (BadImage, OSError):
        return None
    img.thumbnail((side, side))
    return img


def show_report(report: DatasetReport) -> None:
    counts = report.counts()
    total = sum(c["total"] for c in counts.values())
    cols = st.columns(4)
    cols[0].metric("Classes", len(report.classes), help="One per folder that holds usable pictures.")
    cols[1].metric("Pictures", total)
    cols[2].metric("For training", len(report.train))
    cols[3].metric("For validation", len(report.val), help="Kept aside: the model never learns from these.")
    for warning in report.warnings:
        st.warning(warning)
    if report.skipped:
        with st.expander(f"{len(report.skipped)} file(s) skipped: see why"):
            st.dataframe([{"file": s.path, "why": s.reason} for s in report.skipped], hide_index=True,
                         width="stretch")
    st.markdown("**A few pictures from each class**")
    for label, name in enumerate(report.classes):
        paths = [s.path for s in report.train + report.val if s.label == label][:THUMBS_PER_CLASS]
        thumbs = [t for t in (thumbnail(str(p)) for p in paths) if t is not None]
        st.caption(f"{name}: {counts[name]['total']} pictures")
        if thumbs:
            st.image(thumbs, width=110, caption=[Path(p).name for p in paths[:len(thumbs)]])
