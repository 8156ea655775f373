"""The classroom loop through the real pages (issue 16): make classes and fill them on the Data page, train on
them; on Predict, correct an answer of a demo-data run (a copy in the workspace first), then Retrain."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import textile_root
from tests.test_app_pages import (
    no_exception,
    page,
    texts,
    wait_for_task,
)
from tests.test_classbuilder import fake_demo, tree_digest
from transfer_core.core.config import TrainConfig
from transfer_core.data.classbuilder import list_classes, set_info
from transfer_core.service.jobs import default_queue
from transfer_core.service.workspaces import OwnerTag, Workspace, new_token, share_run
from transfer_core.workflows.train import train


@pytest.fixture
def app_dirs(tmp_path, monkeypatch):
    """Runs and workspaces in a temporary folder, as in test_app_pages."""
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "workspaces"))
    return tmp_path


def pictures(cls: str, n: int, offset: int = 0) -> list[tuple[str, bytes, str]]:
    files = sorted((textile_root() / cls).glob("*.jpg"))[offset:offset + n]
    return [(p.name, p.read_bytes(), "image/jpeg") for p in files]


def add_class(at, name: str) -> None:
    at.text_input(key="cb_new_class").input(name).run()
    at.button(key="cb_add_class").click().run()
    no_exception(at)


def upload_into(at, cls: str, files) -> None:
    uploader = next(u for u in at.file_uploader if u.key.startswith(f"cb_up:{cls}:"))
    uploader.set_value(files).run()
    at.button(key=f"cb_addpics:{cls}").click().run()
    no_exception(at)


def counts(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_make_two_classes_fill_them_tidy_them_and_train_on_them(app_dirs):
    at = page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("own").run()
    no_exception(at)
    add_class(at, "good")
    add_class(at, "破损")  # any language
    add_class(at, " GOOD ")  # the same name again, whatever the capitals and spaces
    assert "There is already a class 'good'" in texts(at)
    add_class(at, "../../escape")
    assert "'escape' made" in " ".join(t.value for t in at.toast)
    at.button(key="cb_del:escape").click().run()
    at.button(key="cb_delyes:escape").click().run()
    assert counts(at) == {"good": "0", "破损": "0"}
    assert at.button(key="cb_use").disabled, "one can not train on empty classes"

    upload_into(at, "good", pictures("nominal", 5))
    upload_into(at, "破损", pictures("global", 4) + [("broken.jpg", b"\xff\xd8 not a jpeg", "image/jpeg")])
    assert counts(at) == {"good": "5", "破损": "4"}
    assert all(not u.value for u in at.file_uploader), "an upload box empties once its pictures are added"
    assert "'broken.jpg' was not added: not an image." in texts(at)
    assert len(at.get("image")) == 9, "each picture as a thumbnail"

    at.button(key="cb_rm:good/textile_0001.jpg").click().run()
    at.selectbox(key="cb_mv:good/textile_0002.jpg").set_value("破损").run()
    no_exception(at)
    assert counts(at) == {"good": "3", "破损": "5"}

    at.toggle(key="cb_use_camera").set_value(True).run()
    at.selectbox(key="cb_camera_class").set_value("good").run()
    shot = io.BytesIO()
    Image.open(sorted((textile_root() / "nominal").glob("*.jpg"))[9]).save(shot, "JPEG")
    at.camera_input(key="cb_camera:0").set_value(("shot.jpg", shot.getvalue(), "image/jpeg")).run()
    no_exception(at)
    assert counts(at) == {"good": "4", "破损": "5"}, "a photo goes straight into the chosen class"
    assert at.camera_input(key="cb_camera:1").value is None, "and the camera is ready for the next one"

    token = at.query_params["ws"]
    own = Workspace(app_dirs / "workspaces", token).path / "sets" / "my-classes"
    assert {k: len(v) for k, v in list_classes(own).items()} == {"good": 4, "破损": 5}
    assert "textile_0002.jpg" in list_classes(own)["破损"]

    at.button(key="cb_use").click().run()
    no_exception(at)
    assert "**My classes** is your training data" in texts(at)
    assert counts(at)["Classes"] == "2" and counts(at)["Pictures"] == "9", "the normal report of the data"
    train_page = no_exception(page("pages/2_Train.py", token).run())
    assert "Pictures: My classes" in texts(train_page)
    assert any(b.label == "Start training" and not b.disabled for b in train_page.button)


def test_many_pictures_are_shown_a_page_at_a_time(app_dirs):
    at = page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("own").run()
    add_class(at, "a")
    add_class(at, "b")
    upload_into(at, "a", pictures("local", 26))
    assert len(at.get("image")) == 12
    at.number_input(key="cb_page:a").set_value(3).run()
    assert len(at.get("image")) == 2
    at.button(key="cb_rm:a/textile_0026.jpg").click().run()
    at.button(key="cb_rm:a/textile_0025.jpg").click().run()
    no_exception(at)
    assert counts(at)["a"] == "24" and len(at.get("image")) == 12, "on the last page left"
    assert at.number_input(key="cb_page:a").value == 2


def demo_run(app_dirs, token: str) -> str:
    config = TrainConfig(data=str(app_dirs / "demo"), epochs=1, image_size=64, batch_size=8, freeze="all")
    return train(config, runs_dir=app_dirs / "runs", callbacks=[OwnerTag(token)]).run_dir.name


def correct(at, index: int, cls: str) -> None:
    at.selectbox(key=f"correct_class_{index}").set_value(cls).run()
    at.button(key=f"correct_{index}").click().run()
    no_exception(at)


def test_correcting_a_demo_run_copies_into_the_workspace_then_retrains(app_dirs, monkeypatch):
    demo = fake_demo(monkeypatch, app_dirs / "demo", per_class=10)  # what the app takes for the demo pictures
    token = new_token()
    run_id = demo_run(app_dirs, token)
    assert TrainConfig.load(app_dirs / "runs" / run_id / "config.json").data == "demo:."
    demo_before = tree_digest(demo)
    at = no_exception(page("pages/4_Predict.py", token).run())
    assert at.selectbox(key="predict_run").value == run_id
    wrong = pictures("nominal", 1, offset=500)[0]
    at.file_uploader(key="predict_files").set_value([("mine.jpg", wrong[1], "image/jpeg")]).run()
    wait_for_task(at, "predict_task")  # answered in the queue, not on the page's thread
    correct(at, 0, "local")
    task = default_queue().task(at.session_state["correction_task"])
    assert task.kind == "Copying the pictures into your workspace", "the copy is a task, off the page's thread"
    wait_for_task(at, "correction_task")
    no_exception(at)
    words = texts(at)
    assert ("The demo pictures were copied into your workspace so you can add to them; the shared demo is "
            "unchanged.") in words
    assert "1 picture(s) added to **My copy of the demo pictures**, now your training data" in words

    sets = Workspace(app_dirs / "workspaces", token).path / "sets"
    copy = sets / "copy-of-demo"
    assert set_info(copy)["copied_from"] == "demo:."
    assert "mine.jpg" in list_classes(copy)["local"] and len(list_classes(copy)["local"]) == 11
    assert tree_digest(demo) == demo_before and not list(demo.rglob("mine*"))

    correct(at, 0, "global")  # a second correction: straight into the same copy, no new copy
    assert [d.name for d in sets.iterdir()] == ["copy-of-demo"]
    assert "mine.jpg" in list_classes(copy)["global"]
    assert "2 picture(s) added" in texts(at)

    at.button(key="retrain").click().run()
    no_exception(at)
    job = default_queue().jobs()[-1]
    original = TrainConfig.load(app_dirs / "runs" / run_id / "config.json")
    assert job.owner == token and Path(job.config.data) == copy
    assert job.config.differences(original).keys() == {"data", "tags"}
    assert at.session_state["retrain_followed"]["job"] == job.id, "followed where Retrain was pressed"
    assert default_queue().wait(job.id, timeout=300) and job.final.kind == "RunFinished", job.final
    at.run()  # the page once the new run is over: Predict switches to its model and compares the two (a task)
    assert at.selectbox(key="predict_run").value == job.id
    wait_for_task(at, "retrain_compare_task")
    assert f"is now used here instead of run {run_id}" in texts(at)
    assert "On the 2 picture(s) you added: new model" in texts(at)
    data = no_exception(page("pages/1_Data.py", token).run())
    assert "Using: My copy of the demo pictures" in [h.value for h in data.subheader], "now the training data"
    assert "'global/mine.jpg' and 'local/mine.jpg'" in texts(data), "the same picture in two classes is said"


def test_a_correction_of_my_own_data_goes_straight_in_and_someone_elses_is_refused(app_dirs, tmp_path):
    me, other = new_token(), new_token()
    theirs = Workspace(app_dirs / "workspaces", other).path / "sets" / "my-classes"
    for cls, n in (("nominal", 6), ("local", 6)):
        (theirs / cls).mkdir(parents=True)
        for name, data, _ in pictures(cls, n):
            (theirs / cls / name).write_bytes(data)
    config = TrainConfig(data=str(theirs), epochs=1, image_size=64, batch_size=8, freeze="all")
    run_id = train(config, runs_dir=app_dirs / "runs", callbacks=[OwnerTag(other)]).run_dir.name
    share_run(app_dirs / "runs" / run_id, other, app_dirs / "runs", run=True)  # else I would not see it at all
    at = page("pages/4_Predict.py", me).run()
    at.segmented_control(key="predict_run_whose").set_value("all").run()
    at.file_uploader(key="predict_files").set_value(pictures("global", 1)).run()
    wait_for_task(at, "predict_task")  # answered in the queue, not on the page's thread
    assert not [s for s in at.selectbox if s.key == "correct_class_0"], "not even offered"
    assert "someone else's pictures" in texts(at) and len(list((theirs / "local").iterdir())) == 6

    at = page("pages/4_Predict.py", other).run()
    assert at.selectbox(key="predict_run").value == run_id
    at.file_uploader(key="predict_files").set_value(pictures("global", 1)).run()
    wait_for_task(at, "predict_task")  # answered in the queue, not on the page's thread
    correct(at, 0, "local")
    assert "correction_task" not in at.session_state, "no copy: the owner's own pictures take it directly"
    assert len(list_classes(theirs)["local"]) == 7
    assert "1 picture(s) added to **my-classes**" in texts(at)


def test_two_tabs_correcting_at_once_make_one_copy(app_dirs, monkeypatch):
    from transfer_core.data.owncopies import correction_target
    from ui.corrections import _copy_then_add

    fake_demo(monkeypatch, app_dirs / "demo", per_class=5)
    workspace = Workspace(app_dirs / "workspaces", new_token()).path
    target = correction_target("demo:.", workspace)  # both tabs saw no copy yet and queued one
    for name, data, _ in pictures("global", 2):
        _copy_then_add(target, workspace / "sets", "run", "local", name, data, lambda *_: None, None)
    assert [d.name for d in (workspace / "sets").iterdir()] == ["copy-of-demo"]
    assert len(list_classes(workspace / "sets" / "copy-of-demo")["local"]) == 5 + 2


def test_a_burst_from_the_live_camera_fills_the_chosen_class(app_dirs, monkeypatch):
    """The video thread keeps the newest frame; Record saves that many pictures into the class picked."""
    import numpy as np
    import streamlit_webrtc.component

    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)  # as in test_live
    at = page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("own").run()
    add_class(at, "cup")
    add_class(at, "pen")
    at.toggle(key="cb_burst").set_value(True).run()
    at.selectbox(key="cb_burst_class").set_value("pen").run()
    at.select_slider(key="cb_burst_size").set_value(5).run()
    at.button(key="cb_burst_go").click().run()
    assert "No picture from the camera yet" in texts(no_exception(at)) and counts(at)["pen"] == "0"
    frame = np.asarray(Image.open(sorted((textile_root() / "nominal").glob("*.jpg"))[0]).convert("RGB"))
    at.session_state["cb_burst_frame"].put(frame)  # what the video thread leaves once the camera runs
    at.button(key="cb_burst_go").click().run()
    no_exception(at)
    assert counts(at) == {"cup": "0", "pen": "5"}
    assert "5 pictures added to pen." in " ".join(t.value for t in at.toast)
