"""A page redraw where nothing changed parses no event log and walks no data folder (runstore/index.py,
data/folder_index.py); a change (a new event, a deleted run, a new picture) is seen on the next read.
Run folders written by the engine's own writer; real textile pictures on disk."""
from __future__ import annotations

import os
import shutil
import time

from conftest import copy_textile

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import DataReady, EpochEnd, RunFinished, RunStarted
from transfer_core.data import folder_index
from transfer_core.data.datasets import class_folders
from transfer_core.runstore import index
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.workspaces import list_runs_for, new_token


def a_run(runs_dir, epochs: int = 3, finished: bool = True) -> RunFolder:
    run = RunFolder.create(runs_dir, TrainConfig(data="photos", epochs=epochs))
    t = time.time()
    run.append_event(RunStarted(run.id, t, backbone="resnet18"))
    run.append_event(DataReady(run.id, t, classes=("a", "b"), num_train=40, num_val=10))
    for epoch in range(1, epochs + 1):
        run.append_event(EpochEnd(run.id, t + epoch, epoch=epoch, epochs=epochs, val_accuracy=0.5 + epoch / 10))
    if finished:
        run.append_event(RunFinished(run.id, t + epochs + 1, best_val_accuracy=0.8, best_epoch=epochs,
                                     epochs_run=epochs))
    return run


class Parses:
    """Event logs parsed from now on (RunFolder.events, the one reader every summary goes through)."""

    def __init__(self, monkeypatch):
        self.runs: list[str] = []
        real = RunFolder.events
        monkeypatch.setattr(RunFolder, "events", lambda run: self.runs.append(run.id) or real(run))

    def take(self) -> list[str]:
        out, self.runs[:] = list(self.runs), []
        return out


def test_an_unchanged_redraw_parses_no_event_log_and_a_change_is_seen(tmp_path, monkeypatch):
    runs_dir, token = tmp_path / "runs", new_token()
    runs = [a_run(runs_dir) for _ in range(3)]
    parses = Parses(monkeypatch)
    first = list_runs_for(token, runs_dir)
    assert sorted(parses.take()) == sorted(r.id for r in runs)
    again = list_runs_for(token, runs_dir)
    assert parses.take() == [] and [o.summary for o in again] == [o.summary for o in first]

    grown = a_run(runs_dir, finished=False)  # a run that is training: each epoch adds a line
    assert parses.take() == [] and {o.summary.id for o in list_runs_for(token, runs_dir)} >= {grown.id}
    assert parses.take() == [grown.id]
    grown.append_event(EpochEnd(grown.id, time.time(), epoch=4, epochs=4, val_accuracy=0.95))
    seen = {o.summary.id: o.summary for o in list_runs_for(token, runs_dir)}
    assert parses.take() == [grown.id] and seen[grown.id].epochs_run == 4
    assert seen[grown.id].best_val_accuracy == 0.95

    shutil.rmtree(runs[0].path)
    assert runs[0].id not in {o.summary.id for o in list_runs_for(token, runs_dir)}
    assert parses.take() == []


def test_the_teachers_list_reads_through_the_same_index(tmp_path, monkeypatch):
    from transfer_core.service import classroom

    runs_dir = tmp_path / "runs"
    a_run(runs_dir), a_run(runs_dir)
    parses = Parses(monkeypatch)
    classroom._runs_by_owner(runs_dir), classroom._runs_by_owner(runs_dir)
    assert len(parses.take()) == 2  # each run once, not once per redraw


def test_a_trainer_that_died_without_a_word_shows_as_interrupted_without_a_parse(tmp_path, monkeypatch):
    """A killed trainer changes no file: whether it lives is asked again on each read, the log is not."""
    runs_dir = tmp_path / "runs"
    run = a_run(runs_dir, finished=False)
    monkeypatch.setattr(index, "_trainer_alive", lambda owner: True)
    monkeypatch.setattr("transfer_core.runstore.runs._trainer_alive", lambda owner: True)
    assert index.run_index(runs_dir).summary(run.path).status == "running"
    parses = Parses(monkeypatch)
    monkeypatch.setattr(index, "_trainer_alive", lambda owner: False)
    assert index.run_index(runs_dir).summary(run.path).status == "interrupted"
    assert parses.take() == []


def test_a_run_folder_made_in_the_same_clock_tick_as_a_listing_is_not_missed(tmp_path):
    """The runs folder's time says whether a run came or went, but only to the clock's tick: a listing of
    a folder changed just before is read again next time."""
    runs_dir = tmp_path / "runs"
    a_run(runs_dir)
    runs = index.RunIndex(runs_dir)
    assert len(runs.summaries()) == 1
    stamp = os.stat(runs_dir).st_mtime_ns
    late = a_run(runs_dir)
    os.utime(runs_dir, ns=(stamp, stamp))  # as if the new folder came within the same tick
    assert late.id in {s.id for s in runs.summaries()}


def test_the_data_folder_is_walked_once_until_a_folder_changes(tmp_path, monkeypatch):
    data = copy_textile(tmp_path / "data", 3)
    time.sleep(folder_index.RACY_S)
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda *a, **kw: walks.append(a[0]) or real_walk(*a, **kw))
    counts = folder_index.folder_counts(data)
    assert counts.pictures == {"global": 3, "local": 3, "nominal": 3} and len(walks) == 1
    assert folder_index.class_folders(data) == class_folders(data)  # the engine's answer (it walks again)
    walks.clear()
    assert folder_index.folder_counts(data) == counts and folder_index.class_folders(data) and walks == []

    picture = next((data / "local").glob("*.jpg"))
    shutil.copy(picture, data / "nominal" / "new.jpg")
    assert folder_index.folder_counts(data).pictures["nominal"] == 4 and len(walks) == 1
    for p in list((data / "local").iterdir()):
        p.unlink()
    assert folder_index.class_folders(data) == ("global", "nominal")


def test_a_listing_in_the_same_tick_as_a_change_is_made_again(tmp_path, monkeypatch):
    data = copy_textile(tmp_path / "data", 2)  # just written: its folders' times are within RACY_S
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda *a, **kw: walks.append(a[0]) or real_walk(*a, **kw))
    monkeypatch.setattr(folder_index, "RACY_S", 3600.0)
    folder_index.folder_counts(data), folder_index.folder_counts(data)
    assert len(walks) == 2
