"""The runs folder's summaries, kept between page redraws and re-read only for runs whose files changed.

A page redraw asks for the run list; summarising a run parses its whole event log, which grows with every
epoch and with every run in the folder. The index keeps each run's RunSummary keyed by the (mtime_ns, size)
of the files a summary reads, and the folder's listing keyed by the folder's own mtime: a redraw where
nothing changed stats those files and parses nothing. An appended event changes events.jsonl's size, a new
or deleted run changes the folder's mtime, so the next read sees it.

Times on disk come from a coarse clock: a change made within the same tick as a read could leave the
times as they were. As git does ("racy" entries), a listing whose folder changed less than RACY_S before it
was read is not trusted and is read again next time.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder, RunSummary, _trainer_alive, summarize

# What summarize() reads or looks at: the events, the config, whether a model is saved, who trains it.
SUMMARY_FILES = (runfiles.EVENTS, runfiles.CONFIG, runfiles.BEST, runfiles.MODEL, runfiles.PROCESS)
RACY_S = 2.0  # a folder changed this recently may change again within the same clock tick


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _stamps(run_dir: Path) -> tuple:
    base = str(run_dir)  # plain strings: pathlib's joins cost more than the stats, a thousand runs a redraw
    return tuple(_stamp(os.path.join(base, name)) for name in SUMMARY_FILES)


class RunIndex:
    """One runs folder's summaries; safe to share between the app's sessions (threads)."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self._lock = threading.Lock()
        self._listing: tuple[int, list[Path]] | None = None  # (folder mtime_ns, its sub-folders)
        self._runs: dict[Path, tuple[tuple, RunSummary]] = {}  # run folder -> (its files' stamps, summary)

    def summaries(self, keep=None) -> list[RunSummary]:
        """Every run's summary, newest first; `keep(run_dir)` (if given) chooses which are read at all, so
        runs someone may not see are never summarised for them."""
        folders = [d for d in self._folders() if keep is None or keep(d)]
        found = [s for s in (self.summary(d) for d in folders) if s is not None]
        return sorted(found, key=lambda s: s.created, reverse=True)

    def summary(self, run_dir: str | Path) -> RunSummary | None:
        """The run's summary, summarised again only when one of its files changed; None if not a run."""
        run_dir = Path(run_dir)
        stamps = _stamps(run_dir)
        if stamps[SUMMARY_FILES.index(runfiles.CONFIG)] is None:
            return None
        with self._lock:
            known = self._runs.get(run_dir)
        if known is not None and known[0] == stamps:
            return _still_running(known[1])
        summary = summarize(RunFolder(run_dir))
        with self._lock:
            self._runs[run_dir] = (stamps, summary)
        return summary

    def _folders(self) -> list[Path]:
        try:
            mtime = os.stat(self.runs_dir).st_mtime_ns
        except OSError:
            return []
        with self._lock:
            listing = self._listing
        if listing is not None and listing[0] == mtime:
            return listing[1]
        read_at = time.time_ns()
        folders = sorted(p for p in self.runs_dir.iterdir() if p.is_dir())
        trusted = read_at - mtime > RACY_S * 1e9
        with self._lock:
            self._listing = (mtime, folders) if trusted else None
            for gone in set(self._runs) - set(folders):
                del self._runs[gone]
        return folders


def _still_running(summary: RunSummary) -> RunSummary:
    """A run without a final event is running while its trainer lives: a crash changes no file, so that one
    answer is asked again (a small file and a process check, no event log)."""
    if summary.status not in ("running", "interrupted"):
        return summary
    alive = _trainer_alive(RunFolder(summary.path).read_json(runfiles.PROCESS, {}))
    status = "running" if alive else "interrupted"
    return summary if status == summary.status else dataclasses.replace(summary, status=status)


_indexes: dict[Path, RunIndex] = {}
_indexes_lock = threading.Lock()


def run_index(runs_dir: str | Path) -> RunIndex:
    """The index of this runs folder, one per process, made on first use."""
    key = Path(runs_dir)  # as given: summaries keep the paths callers gave (runs/<id>), as list_runs does
    with _indexes_lock:
        if key not in _indexes:
            _indexes[key] = RunIndex(key)
        return _indexes[key]


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """runs.list_runs through the index: the same summaries, newest first, without re-reading unchanged runs."""
    return run_index(runs_dir).summaries()
