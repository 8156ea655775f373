"""What scanning found in each picture file, remembered while the file is unchanged.

The Data page, the data check and training each scan the same folder, and opening every picture is
nearly all of a scan's time (bench/scan_reuse.py). A file is known by its path and what `stat` says of it
(size, modified and changed times in nanoseconds, inode), so a picture added, rewritten, replaced or moved
is opened afresh while the others are not; a removed one is simply no longer listed. (Like rsync's quick
check, it cannot see a rewrite that keeps the size within one tick of the file system's clock.) In this
process only, and bounded: at most MAX_FILES answers, the least recently used forgotten first.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

# About 500 bytes each (measured; the path is most of it), so at most about 50 MB. A folder of more
# files than this gains nothing (each scan pushes out its own start) but loses nothing either.
MAX_FILES = 100_000

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


def recall(keys: Sequence[tuple | None]) -> dict[int, Any]:
    """The remembered answers, by position in `keys`."""
    with _LOCK:
        found = {i: _ANSWERS[k] for i, k in enumerate(keys) if k is not None and k in _ANSWERS}
        for i in found:
            _ANSWERS.move_to_end(keys[i])
    return found


def remember(answers: dict[tuple, Any]) -> None:
    with _LOCK:
        for key, answer in answers.items():
            _ANSWERS[key] = answer
            _ANSWERS.move_to_end(key)
        while len(_ANSWERS) > MAX_FILES:
            _ANSWERS.popitem(last=False)


def remembered() -> int:
    """How many files' answers are kept now."""
    with _LOCK:
        return len(_ANSWERS)


def clear_scan_cache() -> None:
    with _LOCK:
        _ANSWERS.clear()
