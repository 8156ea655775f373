"""The Data page: it opens on the source in use (no button one click from replacing the person's data), and a
project made there ("Download this project") opens in another app's folders ("Open a project") as that
person's own classes and runs, predicting exactly as before. Real pages (AppTest), real pictures, real runs."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.conftest import copy_textile
from tests.test_app_pages import choose_folder, no_exception, page, texts, wait_for_task
from transfer_core.core.config import TrainConfig
from transfer_core.inference.predict import load_model, predict_probs
from transfer_core.runstore.runs import list_runs
from transfer_core.service.workspaces import OwnerTag, Workspace, new_token, run_owner_is
from transfer_core.workflows.train import train
from ui.project_view import KEY_OPEN, KEY_SAVE

FAST = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0, freeze="all")


def _buttons(at) -> dict[str, object]:
    return {b.label: b for b in at.button}


def _choice(tmp_path: Path, token: str) -> dict:
    return Workspace(tmp_path / "workspaces", token).read_json("data_choice.json")


def test_back_on_data_the_source_in_use_shows_and_no_button_replaces_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "workspaces"))
    token = new_token()
    at = page("pages/1_Data.py", token)
    at.run()
    choose_folder(at, copy_textile(tmp_path / "mine", 4))
    no_exception(at)
    again = no_exception(page("pages/1_Data.py", token).run())  # a new visit, as after another page
    assert again.radio(key="data_source").value == "folder"
    assert "Use the demo pictures" not in _buttons(again) and "Switch to the demo pictures" not in _buttons(again)
    again.radio(key="data_source").set_value("demo").run()  # only the person's own choice leads there
    switch = _buttons(again)["Switch to the demo pictures"]
    assert switch.proto.type == "secondary" and "You are using **Upload: mine**" in texts(again)
    assert _choice(tmp_path, token)["label"] == "Upload: mine"  # nothing replaced until pressed
    switch.click().run()
    assert "Demo" in _choice(tmp_path, token)["label"]
    demo = no_exception(page("pages/1_Data.py", token).run())
    assert demo.radio(key="data_source").value == "demo" and "The demo pictures are the ones in use." in texts(demo)


def test_a_project_downloaded_in_one_app_opens_in_another_and_predicts_the_same(tmp_path, monkeypatch):
    """Person A's app (its runs and workspaces folders) makes the file; person B's app, with folders of its own,
    opens it: B's data is the classes, B owns the run, the Train settings came along, the answers are equal."""
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "a" / "runs"))
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "a" / "workspaces"))
    alice = new_token()
    at = page("pages/1_Data.py", alice)
    at.run()
    choose_folder(at, copy_textile(tmp_path / "fabric", 8))
    chosen = {**_choice(tmp_path / "a", alice), "val_split": 0.3, "seed": 5}  # as the split's controls set them
    Workspace(tmp_path / "a" / "workspaces", alice).write_json("data_choice.json", chosen)
    run = train(TrainConfig(data=chosen["path"], **FAST), runs_dir=tmp_path / "a" / "runs",
                callbacks=[OwnerTag(alice)]).run_dir
    Workspace(tmp_path / "a" / "workspaces", alice).write_json("train_settings.json", {"epochs": 7, "seed": 3})
    at = no_exception(page("pages/1_Data.py", alice).run())
    assert at.multiselect(key="project_runs").value == [str(run)]  # the person's newest model, picked for them
    _buttons(at)["Prepare the project file"].click().run()
    wait_for_task(at, KEY_SAVE)
    download = next(b for b in at.get("download_button") if b.proto.label == "Download this project")
    project = _saved_path(at)
    assert download.proto.type == "primary" and project.is_file() and "3 classes, 24 pictures, 1 model(s)" in texts(at)

    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "b" / "runs"))  # another app's folders
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "b" / "workspaces"))
    bob = new_token()
    at = page("pages/1_Data.py", bob)
    at.run()
    at.radio(key="data_source").set_value("project").run()
    at.file_uploader(key="project_file").set_value([(project.name, project.read_bytes(), "application/zip")]).run()
    _buttons(at)["Open this project"].click().run()
    wait_for_task(at, KEY_OPEN)
    no_exception(at)
    assert "Opened **fabric**" in "\n".join(s.value for s in at.success)
    assert at.radio(key="data_source").value == "own"  # the opened classes, ready for more pictures
    opened = _choice(tmp_path / "b", bob)
    assert Path(opened["path"]).parent == Workspace(tmp_path / "b" / "workspaces", bob).path / "sets"
    assert sorted(p.name for p in Path(opened["path"]).iterdir() if p.is_dir()) == ["global", "local", "nominal"]
    assert Workspace(tmp_path / "b" / "workspaces", bob).read_json("train_settings.json") == {"epochs": 7, "seed": 3}
    assert (opened["val_split"], opened["seed"]) == (0.3, 5)  # the data's own split, not the Train setting "seed"
    (copy,) = list_runs(tmp_path / "b" / "runs")
    assert copy.id == Path(run).name and run_owner_is(copy.path, bob) and not run_owner_is(copy.path, alice)
    pictures = sorted(str(p) for p in (tmp_path / "fabric").rglob("*.jpg"))
    assert torch.equal(predict_probs(load_model(run), pictures), predict_probs(load_model(copy.path), pictures))
    assert json.loads((copy.path / "config.json").read_text())["data"].startswith("workspace:")


def _saved_path(at) -> Path:
    from transfer_core.service.jobs import default_queue

    return default_queue().task(at.session_state[KEY_SAVE]).result.path
