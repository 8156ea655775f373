"""What scanning found in each picture file, remembered while the file is unchanged.

The Data page, the data check and training each scan the same folder, and opening every picture is
nearly all of a scan's time (bench/scan_reuse.py). A file is known by its path and what `stat` says of it
(size, modified and changed times in nanoseconds, inode), so a picture added, rewritten, replaced or moved
is opened afresh while the others are not; a removed one is simply no longer listed. (Like rsync's quick
check, it cannot see a rewrite that keeps the size within one tick of the file system's clock.) In this
process, bounded: at most MAX_FILES answers, the least recently used forgotten first; and on disk, beside the
decoded pictures (picturestore.cache_root), so a training job's own process, a later app and a rescan of a
100,000-picture folder open only the files that are new or changed (the scan is incremental).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from transfer_core.data.picturestore import cache_root

# About 500 bytes each (measured; the path is most of it), so at most about 50 MB. A folder of more
# files than this gains nothing (each scan pushes out its own start) but loses nothing either.
MAX_FILES = 100_000
TABLE = "checked_v2"

_ANSWERS: OrderedDict[tuple, Any] = OrderedDict()
_LOCK = threading.Lock()  # page threads and the job queue's worker scan at the same time


def file_key(path: str | Path, rules: Hashable) -> tuple | None:
    """The file as it is now, with the `rules` it is checked by; None when it cannot be looked at (then
    nothing is remembered about it)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, rules


_DISK: dict[str, sqlite3.Connection] = {}


def _disk() -> sqlite3.Connection | None:
    """Under _LOCK: the on-disk answers of this cache root (None when it cannot be written: memory only)."""
    root = cache_root()
    if str(root) not in _DISK:
        try:
            root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(root / "index.sqlite", timeout=60, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # no flush to disk per insert: a cache, rebuilt if lost
            # v2: with the thumbprint (answers of the first table had none: they are simply scanned again)
            db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, reason TEXT, digest TEXT, "
                       "thumbprint BLOB)")
        except (OSError, sqlite3.Error):
            return None
        _DISK[str(root)] = db
    return _DISK[str(root)]


def recall(keys: Sequence[tuple | None]) -> dict[int, Any]:
    """The remembered answers, by position in `keys` (from memory, else from disk)."""
    with _LOCK:
        found = {i: _ANSWERS[k] for i, k in enumerate(keys) if k is not None and k in _ANSWERS}
        for i in found:
            _ANSWERS.move_to_end(keys[i])
        missing = {repr(k): i for i, k in enumerate(keys) if k is not None and i not in found}
        db = _disk() if missing else None
        if db is not None:
            names = list(missing)
            for start in range(0, len(names), 500):  # SQLite's limit on a statement's variables
                part = names[start:start + 500]
                rows = db.execute(f"SELECT key, reason, digest, thumbprint FROM {TABLE} WHERE key IN "
                                  f"({','.join('?' * len(part))})", part).fetchall()
                for key, reason, digest, print_ in rows:
                    found[missing[key]] = (reason, digest, print_ or b"")
    return found


def remember(answers: dict[tuple, Any]) -> None:
    with _LOCK:
        for key, answer in answers.items():
            _ANSWERS[key] = answer
            _ANSWERS.move_to_end(key)
        while len(_ANSWERS) > MAX_FILES:
            _ANSWERS.popitem(last=False)
        db = _disk() if answers else None
        if db is not None:
            try:
                db.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?)",
                               [(repr(k), *a) for k, a in answers.items()])
            except sqlite3.Error:
                pass  # a full or read-only disk: remembered in memory only


def remembered() -> int:
    """How many files' answers are kept now."""
    with _LOCK:
        return len(_ANSWERS)


def clear_scan_cache() -> None:
    """Forget every answer, in memory and on disk."""
    with _LOCK:
        _ANSWERS.clear()
        db = _disk()
        if db is not None:
            db.execute(f"DELETE FROM {TABLE}")
