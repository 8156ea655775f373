"""Decoded pictures on disk, made once per picture and shared by every later run, process and data set.

Decoding and resizing a JPEG costs about as much as a MobileNet forward pass on a small CPU, and a data set
of tens of thousands of decoded pictures does not fit in memory (3 x 256 x 256 bytes each: 20,000 are 3.9 GB).
So each picture is decoded once, at the size training uses, into a file of fixed-size records, and read back
by position in batches.

Why this format and not FFCV's .beton, WebDataset shards or LMDB: training reads pictures in a random order
every epoch, by index; WebDataset is made for sequential streams, FFCV needs its own compiled loader and
writes a whole data set at once (no adding the pictures a class gains), and LMDB, like numpy.memmap, maps the
file into the process, so every page read counts in the process's resident memory until the kernel is short
of it. Plain records read with pread() land in the kernel's page cache, which the kernel shares and frees as
it needs, and the process only holds the batch it asked for: the memory a run holds is bounded by its
batches, not by the data set.

- One record: uint8 3 x S x S (channels first, as training wants it), S = the preprocessing's resize side.
- An index (SQLite, safe across processes) maps a picture's key to its record: the BLAKE2 hash of the file's
  bytes with the size and resampling, so a changed file gets a new record and identical files share one.
- Records are only ever appended, under a file lock, data before index, so a reader never sees a record
  that is not there, and a crashed writer leaves at most unused bytes.
- The store stops growing at its disk cap (MAX_GB_ENV, default: half the free disk, at most 50 GB): pictures
  past it are decoded again whenever they are read (ImageStore), which is slower but never fails.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

CACHE_ENV = "TRANSFER_STUDIO_CACHE"  # where decoded pictures and scan results are kept
MAX_GB_ENV = "TRANSFER_STUDIO_CACHE_MAX_GB"
_DEFAULT_MAX_GB = 50.0


def cache_root() -> Path:
    """The folder every process of this machine keeps decoded pictures in (TRANSFER_STUDIO_CACHE, else
    the user's cache folder, else, where that cannot be written, one in the temporary folder)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transfer-studio"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"transfer-studio-cache-{os.getuid()}"


def max_bytes(root: Path) -> int:
    env = os.environ.get(MAX_GB_ENV)
    if env:
        return int(float(env) * 2 ** 30)
    root.mkdir(parents=True, exist_ok=True)
    return int(min(_DEFAULT_MAX_GB * 2 ** 30, shutil.disk_usage(root).free / 2))


def content_key(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class PictureStore:
    """The records of one picture size and resampling rule (`name`, e.g. '256-bilinear')."""

    def __init__(self, name: str, side: int, root: Path | None = None):
        self.root = Path(root or cache_root())
        self.root.mkdir(parents=True, exist_ok=True)
        self.name, self.side = name, side
        self.record_bytes = 3 * side * side
        self.data_path = self.root / f"pictures-{name}.u8"
        self._lock_path = self.root / f"pictures-{name}.lock"
        self._fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._db = sqlite3.connect(self.root / "index.sqlite", timeout=60, check_same_thread=False,
                                   isolation_level=None)
        self._db_lock = threading.Lock()  # one connection, many threads (decoding workers, readers)
        with self._db_lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # no flush to disk per insert: a cache, rebuilt if lost
            self._db.execute("CREATE TABLE IF NOT EXISTS pictures (store TEXT, key TEXT, slot INTEGER, "
                             "PRIMARY KEY (store, key))")
        self.cap = max_bytes(self.root)

    def close(self) -> None:
        os.close(self._fd)
        self._db.close()

    def slots_of(self, keys: Sequence[str]) -> dict[str, int]:
        """The record of each key already stored."""
        found: dict[str, int] = {}
        with self._db_lock:
            for i in range(0, len(keys), 500):  # SQLite's limit on a statement's variables
                part = list(keys[i:i + 500])
                marks = ",".join("?" * len(part))
                rows = self._db.execute(f"SELECT key, slot FROM pictures WHERE store = ? AND key IN ({marks})",
                                        [self.name, *part]).fetchall()
                found.update(rows)
        return found

    def add(self, items: Iterable[tuple[str, np.ndarray]]) -> dict[str, int]:
        """Append pictures (key, uint8 3 x S x S) not stored yet; their records. Pictures past the disk cap
        are not stored (absent from the answer)."""
        items = [(k, a) for k, a in items if a.shape == (3, self.side, self.side)]
        if not items:
            return {}
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # other processes append to the same file
            known = self.slots_of([k for k, _ in items])
            fresh = [(k, a) for k, a in dict(items).items() if k not in known]
            end = os.fstat(self._fd).st_size
            room = max(0, (self.cap - end) // self.record_bytes)
            fresh = fresh[:room]
            if fresh:
                blob = b"".join(np.ascontiguousarray(a, dtype=np.uint8).tobytes() for _, a in fresh)
                os.pwrite(self._fd, blob, end)  # the data first: an index row never points past the file
                first = end // self.record_bytes
                rows = [(self.name, k, first + i) for i, (k, _) in enumerate(fresh)]
                with self._db_lock:
                    self._db.executemany("INSERT OR IGNORE INTO pictures VALUES (?, ?, ?)", rows)
                known.update({k: s for _, k, s in rows})
        return known

    def read(self, slots: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
        """uint8 len(slots) x 3 x S x S, in the order given."""
        if out is None:
            out = np.empty((len(slots), 3, self.side, self.side), dtype=np.uint8)
        for i, slot in enumerate(slots):
            view = memoryview(out[i].reshape(-1))
            got = os.preadv(self._fd, [view], int(slot) * self.record_bytes)
            if got != self.record_bytes:
                raise OSError(f"picture record {slot} of {self.data_path} is cut short")
        return out

    def disk_bytes(self) -> int:
        return os.fstat(self._fd).st_size


_STORES: dict[tuple[str, str], PictureStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(name: str, side: int) -> PictureStore:
    """The process's one open store of this kind under the current cache root."""
    root = cache_root()
    with _STORES_LOCK:
        key = (str(root), name)
        if key not in _STORES:
            _STORES[key] = PictureStore(name, side, root)
        return _STORES[key]
