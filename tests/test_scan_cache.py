"""A folder's pictures are opened once between the Data page's scan and training's (data/scancache.py), and
a changed folder is scanned afresh. Real textile pictures on disk; decodes counted at Pillow's door."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import copy_textile, textile_root
from PIL import Image

from transfer_core.data import scancache
from transfer_core.data.datasets import scan_dataset


class Spy:
    """Pictures decoded (Pillow's Image.open) and files read (Path.read_bytes) from now on; scanning does
    both in a thread pool, and list.append is atomic."""

    def __init__(self, monkeypatch):
        self.decodes: list[object] = []
        self.read: list[str] = []
        real_open, real_read = Image.open, Path.read_bytes
        monkeypatch.setattr(Image, "open", lambda fp, *a, **k: self.decodes.append(fp) or real_open(fp, *a, **k))
        monkeypatch.setattr(Path, "read_bytes", lambda p: self.read.append(str(p)) or real_read(p))

    def clear(self) -> None:
        self.decodes.clear()
        self.read.clear()

    def only(self, path: Path) -> bool:
        return len(self.decodes) == 1 and self.read == [str(path)]


@pytest.fixture
def opened(monkeypatch) -> Spy:
    scancache.clear_scan_cache()
    return Spy(monkeypatch)


def page_scan(folder: Path):
    """As the Data page scans (ui/data_view.py)."""
    return scan_dataset(str(folder), val_split=0.2, seed=0)


def training_scan(folder: Path, run_dir: Path):
    """As the trainer scans (training/trainer.py), into its own run folder."""
    return scan_dataset(str(folder), val_split=0.2, seed=0, extract_to=run_dir / "data", test_share=True)


def same_report(a, b) -> bool:
    return (a.classes, a.train, a.val, a.test, a.skipped, a.warnings, a.fingerprint()) == \
           (b.classes, b.train, b.val, b.test, b.skipped, b.warnings, b.fingerprint())


def test_training_reuses_the_data_pages_scan(tmp_path, opened):
    folder = copy_textile(tmp_path / "photos", 10)
    first = page_scan(folder)
    assert len(opened.decodes) == len(opened.read) == 30  # every picture opened once to check it
    opened.clear()
    second = training_scan(folder, tmp_path / "run")
    assert opened.decodes == opened.read == []  # served from what the first scan found
    assert same_report(first, second)


def test_a_changed_folder_is_scanned_afresh(tmp_path, opened):
    folder = copy_textile(tmp_path / "photos", 10)
    page_scan(folder)

    touched = min((folder / "local").glob("*.jpg"))
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 5_000_000_000))
    opened.clear()
    page_scan(folder)
    assert opened.only(touched)  # only the touched picture is opened again

    added = folder / "nominal" / "new.jpg"
    shutil.copy(max((textile_root() / "nominal").glob("*.jpg")), added)
    opened.clear()
    report = training_scan(folder, tmp_path / "run")
    assert opened.only(added)
    assert report.counts()["nominal"]["total"] == 11

    rewritten = min((folder / "global").glob("*.jpg"))
    rewritten.write_bytes(b"\xff\xd8\xff\xe0 no longer a picture")
    opened.clear()
    report = page_scan(folder)
    assert opened.only(rewritten)
    assert [s.path for s in report.skipped] == [f"global/{rewritten.name}"]

    removed = max((folder / "local").glob("*.jpg"))
    removed.unlink()
    opened.clear()
    report = training_scan(folder, tmp_path / "run2")
    assert opened.decodes == [] and report.counts()["local"]["total"] == 9
    assert Path(removed) not in {s.path for s in report.train + report.val + report.test}


def test_a_moved_picture_takes_its_new_class(tmp_path, opened):
    # The data check's "move to another class": same bytes, new place, new label.
    folder = copy_textile(tmp_path / "photos", 10)
    page_scan(folder)
    picture = min((folder / "local").glob("*.jpg"))
    moved = folder / "global" / f"moved_{picture.name}"
    shutil.move(picture, moved)
    report = page_scan(folder)
    assert report.counts()["global"]["total"] == 11 and report.counts()["local"]["total"] == 9
    assert next(s.label for s in report.train + report.val + report.test if s.path == moved) == \
           report.classes.index("global")


def test_the_cache_stays_bounded(tmp_path, opened, monkeypatch):
    monkeypatch.setattr(scancache, "MAX_FILES", 12)
    page_scan(copy_textile(tmp_path / "photos", 10))
    assert scancache.remembered() == 12  # the least recently used forgotten first


def test_the_data_pages_signature_walks_the_folder_only_when_a_folder_changed(tmp_path, monkeypatch):
    """A redraw of the Data page must not list 100,000 files: while no folder's time has changed, the
    signature of the last walk holds; a picture added, removed or moved changes it."""
    from transfer_core.data import folder_index
    from ui import data_view

    data = copy_textile(tmp_path / "data", 2)
    time.sleep(folder_index.RACY_S)  # a listing in the same clock tick as the copy is rightly not trusted
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(data_view.os, "walk", lambda *a, **kw: walks.append(1) or real_walk(*a, **kw))
    first = data_view._signature(str(data))
    assert data_view._signature(str(data)) == first and len(walks) == 1  # a redraw: no walk
    picture = next((data / "local").glob("*.jpg"))
    (data / "nominal" / "added.jpg").write_bytes(picture.read_bytes())
    added = data_view._signature(str(data))
    assert added != first and added[0] == first[0] + 1 and len(walks) == 2
    picture.rename(data / "global" / picture.name)  # moved to another class: the same count
    assert data_view._signature(str(data)) != added and len(walks) == 3
