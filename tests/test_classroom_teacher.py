"""The teacher's view (transfer_core/service/classroom.py): the key, the workspaces by name with their pictures
and runs, stopping anyone's job, gathering pupils' classes. Real pictures, a real tiny run, a real queue."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import copy_textile
from transfer_core.core.config import TrainConfig
from transfer_core.data.classbuilder import list_classes, set_info
from transfer_core.service.classroom import (
    TEACHER_KEY_ENV,
    gather,
    is_teacher,
    queue_lines,
    stop_job,
    workspaces_overview,
)
from transfer_core.service.jobs import JobQueue
from transfer_core.service.workspaces import NotAllowed, OwnerTag, Workspace, new_token, owner_hash, workspace_id
from transfer_core.training.callbacks import Callback
from transfer_core.workflows.train import train

KEY = "class-7b-secret-key"
TINY = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0, freeze="all", max_images=12)


@pytest.fixture
def teacher(monkeypatch):
    monkeypatch.setenv(TEACHER_KEY_ENV, KEY)
    return KEY


def test_only_the_servers_key_opens_it_and_a_short_or_missing_key_opens_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv(TEACHER_KEY_ENV, raising=False)
    assert not is_teacher("") and not is_teacher(None) and not is_teacher(KEY)
    monkeypatch.setenv(TEACHER_KEY_ENV, "short")
    assert not is_teacher("short"), "a key a class could guess is not accepted"
    monkeypatch.setenv(TEACHER_KEY_ENV, KEY)
    assert is_teacher(KEY) and not is_teacher(KEY + "x") and not is_teacher(KEY[:-1]) and not is_teacher(None)
    with pytest.raises(NotAllowed, match="teacher's key"):
        workspaces_overview("wrong-key-wrong-key", tmp_path / "workspaces", tmp_path / "runs")


def _pupil(root: Path, name: str | None, classes: dict[str, int], source: Path) -> Workspace:
    """A workspace as the app leaves it: its own set of real pictures, chosen on the Data page."""
    ws = Workspace(root, new_token())
    if name:
        ws.set_display_name(name)
    data = ws.path / "sets" / "my-classes"
    for cls, n in classes.items():
        (data / cls).mkdir(parents=True)
        for picture in sorted((source / cls.lower()).iterdir())[:n]:
            shutil.copyfile(picture, data / cls / picture.name)
    ws.write_json("data_choice.json", {"path": str(data), "label": "My classes", "val_split": 0.2, "seed": 0})
    return ws


def test_the_overview_names_workspaces_counts_their_pictures_and_runs_and_never_shows_a_key(teacher, tmp_path):
    source = copy_textile(tmp_path / "textile", 6)
    root, runs = tmp_path / "workspaces", tmp_path / "runs"
    ana = _pupil(root, "Ana", {"nominal": 6, "local": 4}, source)
    ben = _pupil(root, None, {"global": 5}, source)
    Workspace(root, new_token())  # opened the app, did nothing
    sneaky = Workspace(root, new_token())
    sneaky.write_json("data_choice.json", {"path": str(source), "label": "elsewhere"})  # not its own: not followed
    train(TrainConfig(data=str(ana.path / "sets" / "my-classes"), **TINY), runs_dir=runs,
          callbacks=[OwnerTag(ana.token)])

    listed = workspaces_overview(teacher, root, runs)
    views = {v.name: v for v in listed}
    assert views["Ana"].classes == {"local": 4, "nominal": 6} and views["Ana"].data_label == "My classes"
    (run,) = views["Ana"].runs
    assert run.summary.status == "finished" and 0 <= run.summary.best_val_accuracy <= 1
    (unnamed,) = [v for v in listed if v.classes == {"global": 5}]
    assert unnamed.name.startswith("Unnamed, since ") and unnamed.runs == []
    assert len(listed) == 4 and sum(v.empty for v in listed) == 2, "the idle one, and the one naming elsewhere"
    # Everything the Teacher page writes of a workspace (ui/teacher_view.py):
    shown = json.dumps([[v.name, v.data_label, v.classes, [(r.name, r.summary.backbone) for r in v.runs]]
                        for v in listed])
    for ws in (ana, ben, sneaky):
        for secret in (ws.token, workspace_id(ws.token), owner_hash(ws.token)):
            assert secret not in shown


class Gate(Callback):
    def __init__(self, gate: threading.Event):
        self.gate = gate

    def before_fit(self, trainer):
        assert self.gate.wait(timeout=300)


def test_the_teacher_stops_anyones_job_and_a_wrong_key_stops_nothing(teacher, tmp_path, textile_small):
    root, runs = tmp_path / "workspaces", tmp_path / "runs"
    ana, ben = Workspace(root, new_token()), Workspace(root, new_token())
    ana.set_display_name("Ana")
    gate, queue = threading.Event(), JobQueue()
    config = TrainConfig(data=str(textile_small), **TINY)
    first = queue.submit(config, runs, owner=ana.token, callbacks=[Gate(gate)])
    deadline = time.time() + 120
    while first.state != "running" and time.time() < deadline:  # the queue's own thread starts it
        time.sleep(0.05)
    second = queue.submit(config, runs, owner=ben.token)
    lines = queue_lines(teacher, root, queue.jobs())
    assert [(j.id, j.state) for _, j in lines] == [(first.id, "running"), (second.id, "queued")]
    assert lines[0][0] == "Ana" and lines[1][0].startswith("Unnamed")
    assert [j.id for j in workspaces_overview(teacher, root, runs, queue.jobs())[0].jobs] in ([first.id], [second.id])
    with pytest.raises(NotAllowed):
        queue_lines("not-the-key-at-all", root, queue.jobs())
    with pytest.raises(NotAllowed):
        stop_job("not-the-key-at-all", queue, second.id)
    assert second.state == "queued"
    assert stop_job(teacher, queue, second.id) and second.state == "cancelled"
    assert stop_job(teacher, queue, first.id)
    gate.set()
    assert queue.wait(first.id, timeout=300) and first.final.kind == "RunStopped"


def test_gathering_merges_same_class_names_copies_and_leaves_the_pupils_pictures(teacher, tmp_path):
    source = copy_textile(tmp_path / "textile", 6)
    root = tmp_path / "workspaces"
    ana = _pupil(root, "Ana", {"nominal": 6, "local": 3}, source)
    ben = _pupil(root, "Ben", {"Nominal": 4, "global": 2}, source)  # the same pictures' names: they collide
    before = {ws.path.name: list_classes(ws.path / "sets" / "my-classes") for ws in (ana, ben)}
    me = Workspace(root, new_token())
    views = [v for v in workspaces_overview(teacher, root, tmp_path / "runs") if v.name in ("Ana", "Ben")]
    with pytest.raises(NotAllowed):
        gather("not-the-key-at-all", views, me)
    assert not (me.path / "sets").exists()

    folder = gather(teacher, sorted(views, key=lambda v: v.name), me)
    merged = list_classes(folder)
    assert {c: len(p) for c, p in merged.items()} == {"global": 2, "local": 3, "nominal": 10}
    assert folder.parent == me.path / "sets" and set_info(folder)["label"] == "Gathered from Ana, Ben"
    assert [p.name for p in (me.path / "sets").iterdir()] == [folder.name], "no half-made set is left"
    assert {ws.path.name: list_classes(ws.path / "sets" / "my-classes") for ws in (ana, ben)} == before
