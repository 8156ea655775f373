"""Each page's logic, through Streamlit's AppTest (no browser): real images, real training, real run folders."""
from __future__ import annotations

import io
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.conftest import copy_textile, textile_root
from transfer_core.service.jobs import default_queue

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120


@pytest.fixture
def app_dirs(tmp_path, monkeypatch):
    """Runs and workspaces in a temporary folder, as the app reads them from the environment."""
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRANSFER_STUDIO_WORKSPACES", str(tmp_path / "workspaces"))
    return tmp_path


def page(name: str, token: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if name != "app.py":
        at.switch_page(name)  # from the entry point, as a user navigates, so page links resolve
    if token:
        at.query_params["ws"] = token
    return at


def no_exception(at: AppTest) -> AppTest:
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    return at


def raw_texts(at: AppTest) -> str:
    """The Markdown of every text element, as the page wrote it."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [e.value for e in at.error] + [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


def texts(at: AppTest) -> str:
    """What a person reads: the same, with Markdown's escapes (of user text, see ui.common.md_escape) removed."""
    return re.sub(r"\\(.)", r"\1", raw_texts(at))


def wait_for_task(at: AppTest, key: str, timeout: float = 600) -> None:
    """Heavy work runs as a task in the engine's queue: wait for the one the page submitted, then redraw."""
    task_id = at.session_state[key]
    assert default_queue().wait(task_id, timeout=timeout)
    task = default_queue().task(task_id)
    assert task.error is None, task.error
    at.run()


def choose_folder(at: AppTest, folder: Path) -> None:
    """Upload a folder the way the browser sends it: one file per picture, named class/file."""
    at.radio(key="data_source").set_value("folder").run()
    files = [(f"{folder.name}/{p.parent.name}/{p.name}", p.read_bytes(), "image/jpeg")
             for p in sorted(folder.glob("*/*")) if p.is_file()]
    at.file_uploader(key="upload_folder").set_value(files).run()
    next(b for b in at.button if b.label.startswith("Use these")).click().run()


def test_home_says_what_it_does_and_which_device(app_dirs):
    at = no_exception(page("app.py").run())
    assert "your own pictures" in texts(at)
    # the device this machine really trains on: the GPU where torch sees one, else the CPU
    assert ("GPU" if torch.cuda.is_available() else "CPU") in texts(at)
    assert at.query_params["ws"], "the workspace token is put in the URL so a refresh keeps it"


def test_home_names_the_gpu_when_torch_sees_one(app_dirs, monkeypatch):
    # Mocked: no GPU here. AppTest runs the page in this process, so it sees torch as patched here.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA T4 (test)")
    at = no_exception(page("app.py").run())
    assert "GPU: NVIDIA T4 (test)" in texts(at) and "CPU" not in texts(at)


def test_data_page_demo_shows_classes_counts_and_thumbnails(app_dirs):
    at = no_exception(page("pages/1_Data.py").run())
    at.button[0].click().run()  # "Use the demo pictures"
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "3" and metrics["Pictures"] == "2000"
    assert metrics["For validation"] == "200" and metrics["For testing"] == "200"
    assert len(at.get("image")) >= 3  # a row of thumbnails per class


def test_data_page_upload_lists_skipped_files_with_reasons(app_dirs, tmp_path):
    folder = copy_textile(tmp_path / "my_photos", 4)
    (folder / "nominal" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "local" / "notes.txt").write_text("hello")
    at = page("pages/1_Data.py").run()
    choose_folder(at, folder)
    no_exception(at)
    assert {m.label: m.value for m in at.metric}["Pictures"] == "12"
    skipped = at.dataframe[0].value
    reasons = dict(zip(skipped["file"], skipped["why"]))
    assert any("broken.jpg" in f for f in reasons) and any("notes.txt" in f for f in reasons)
    assert "Few images" in texts(at)  # 4 per class is too few: the page says so


def test_data_page_explains_a_folder_without_classes(app_dirs, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, p in enumerate(sorted((textile_root() / "nominal").glob("*.jpg"))[:3]):
        (flat / f"{i}.jpg").write_bytes(p.read_bytes())
    at = page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("folder").run()
    at.file_uploader(key="upload_folder").set_value(
        [(f"flat/{p.name}", p.read_bytes(), "image/jpeg") for p in sorted(flat.iterdir())]).run()
    at.button[0].click().run()
    no_exception(at)
    assert "at least two classes" in texts(at)


def test_train_page_starts_a_job_shows_curves_and_finishes(app_dirs, tmp_path):
    folder = copy_textile(tmp_path / "train_me", 8)
    at = page("pages/1_Data.py").run()
    choose_folder(at, folder)
    token = at.query_params["ws"]
    at = start(token, 2)
    assert at.selectbox(key="backbone").value == "mobilenet_v2"  # the one-click default works offline
    job = default_queue().jobs()[-1]
    assert job.owner == token and job.config.epochs == 2
    assert default_queue().wait(job.id, timeout=300)
    at.run()
    no_exception(at)
    assert "Finished: best validation accuracy" in texts(at)
    assert len(at.get("plotly_chart")) >= 2  # loss and accuracy curves
    assert (Path(app_dirs) / "runs" / job.id / "owner.json").is_file()

    at = no_exception(page("pages/3_Evaluate.py", token).run())
    wait_for_task(at, f"calibration_task_{job.id}")  # measured in the queue, not on the page's thread
    # 6 validation pictures: too few to correct the confidence (calibration.MIN_TO_FIT): the model's own is used
    assert {m.label for m in at.metric} >= {"Accuracy", "Macro F1", "Confidence error as trained",
                                            "Confidence Predict uses"}
    assert "After calibration" not in {m.label for m in at.metric} and "Too few validation pictures" in texts(at)
    per_class = at.dataframe[0].value
    assert list(per_class["class"]) == ["global", "local", "nominal"]

    at = no_exception(page("pages/4_Predict.py", token).run())
    picture = sorted((textile_root() / "local").glob("*.jpg"))[-1]
    buf = io.BytesIO()
    Image.open(picture).convert("CMYK").save(buf, "JPEG")  # an unusual format still works
    at.file_uploader(key="predict_files").set_value([("cmyk.jpg", buf.getvalue(), "image/jpeg"),
                                                    ("bad.jpg", b"nope", "image/jpeg")]).run()
    wait_for_task(at, "predict_task")  # answered in the queue, not on the page's thread
    no_exception(at)
    assert "sure)" in texts(at)
    asked = at.session_state["predict_task"]
    assert default_queue().task(asked).kind == "Classifying the pictures"
    assert "sure)" in texts(no_exception(at.run())) and at.session_state["predict_task"] == asked  # not again
    assert "bad.jpg was skipped" in texts(at)
    at.slider(key="threshold").set_value(1.0).run()  # nothing is ever 100% sure: every answer is "not sure"
    at.toggle(key="gradcam").set_value(True).run()
    wait_for_task(at, "predict_task")  # answered in the queue, not on the page's thread
    wait_for_task(at, f"calibration_task_{job.id}")  # what the threshold does, measured in the queue
    no_exception(at)
    assert "**Not sure** (best guess" in texts(at) and "On the validation pictures: At 100%" in texts(at)
    assert any("where it looked" in str(img.proto) for img in at.get("image"))

    at = no_exception(page("pages/5_Runs.py", token).run())
    table = at.dataframe[0].value
    assert list(table["whose"]) == ["yours"] and list(table["status"]) == ["finished"]
    assert any(b.label.startswith("Download") for b in at.get("download_button"))
    next(b for b in at.button if b.label.startswith("Export for use outside")).click().run()
    wait_for_task(at, f"export_task_{job.id}")
    no_exception(at)
    assert "The exported files match the app on 6 validation pictures" in texts(at)


def start(token: str, epochs: int) -> AppTest:
    train = page("pages/2_Train.py", token).run()
    train.number_input(key="epochs").set_value(epochs)
    next(b for b in train.button if b.label == "Start training").click().run()
    return no_exception(train)


def test_a_second_start_is_queued_and_stopping_one_run_leaves_the_other(app_dirs, tmp_path):
    # Session A trains on the 2,000 demo pictures (it takes a while to even get ready); session B starts
    # a small run meanwhile: B must wait its turn, and A's Stop must not touch B.
    a = page("pages/1_Data.py").run()
    a.button[0].click().run()  # the demo pictures
    a = start(a.query_params["ws"], 4)
    b = page("pages/1_Data.py").run()
    choose_folder(b, copy_textile(tmp_path / "queue_me", 6))
    b = start(b.query_params["ws"], 1)
    job_a, job_b = default_queue().jobs()[-2:]
    assert job_a.state == "running" and job_b.state == "queued"
    assert "number 1 in the queue" in texts(b)
    assert not default_queue().stop(job_a.id, owner=job_b.owner), "one person cannot stop another's run"
    a.run()
    a.button(key=f"stop_{job_a.id}").click().run()
    assert default_queue().wait(job_a.id, timeout=300) and default_queue().wait(job_b.id, timeout=300)
    assert job_a.final.kind == "RunStopped" and job_b.final.kind == "RunFinished"


def test_evaluate_and_predict_without_runs_point_to_train(app_dirs):
    for name in ("pages/3_Evaluate.py", "pages/4_Predict.py"):
        at = no_exception(page(name).run())
        assert "No trained model yet" in texts(at)


def test_a_failed_run_is_explained_in_words_and_the_app_keeps_working(app_dirs, tmp_path):
    folder = copy_textile(tmp_path / "vanishing", 4)
    at = page("pages/1_Data.py").run()
    choose_folder(at, folder)
    token = at.query_params["ws"]
    uploaded = Path(session_data_path(token, app_dirs))
    shutil.rmtree(uploaded)  # the pictures disappear before training starts (a drive unplugged...)
    at = start(token, 1)
    job = default_queue().jobs()[-1]
    assert default_queue().wait(job.id, timeout=120)
    at.run()
    no_exception(at)
    assert job.final.kind == "RunFailed"
    assert "Training failed:" in texts(at) and "does not exist" in texts(at)
    assert "Traceback" not in texts(at)
    assert any(b.label == "Start training" and not b.disabled for b in at.button), "the user can start again"


def session_data_path(token: str, root: Path) -> str:
    from transfer_core.service.workspaces import Workspace

    return Workspace(root / "workspaces", token).read_json("data_choice.json")["path"]


def test_advanced_methods_reach_the_engine_and_the_scratch_baseline_is_overlaid(app_dirs, tmp_path):
    folder = copy_textile(tmp_path / "compare_me", 6)
    at = page("pages/1_Data.py").run()
    choose_folder(at, folder)
    train = page("pages/2_Train.py", at.query_params["ws"]).run()
    train.number_input(key="epochs").set_value(1)
    train.select_slider(key="l2sp").set_value(0.01)
    train.checkbox(key="scratch_baseline").check()
    train.text_input(key="unfreeze_at").input("1")
    next(b for b in train.button if b.label == "Start training").click().run()
    no_exception(train)
    pretrained, scratch = default_queue().jobs()[-2:]
    assert pretrained.config.l2sp == 0.01 and pretrained.config.unfreeze_at == (1,)
    assert pretrained.config.tags["compare_to"] == scratch.id and scratch.config.tags["compare_to"] == pretrained.id
    assert scratch.config.pretrained is False
    for job in (pretrained, scratch):
        assert default_queue().wait(job.id, timeout=300)
        assert job.final.kind == "RunFinished", getattr(job.final, "error", "")
    train.run()
    no_exception(train)
    specs = [c.proto.spec for c in train.get("plotly_chart")]  # each chart's plotly JSON
    assert sum("from scratch: validation" in spec for spec in specs) == 2  # loss and accuracy, overlaid
    assert "from scratch: Finished" in texts(train)


def test_data_check_flags_a_wrong_label_and_moves_it_on_request(app_dirs, tmp_path):
    folder = copy_textile(tmp_path / "checked", 20)
    wrong = sorted((folder / "nominal").glob("*.jpg"))[0]
    wrong.rename(folder / "global" / f"flipped_{wrong.name}")  # a nominal picture filed as 'global'
    at = page("pages/1_Data.py").run()
    choose_folder(at, folder)
    next(b for b in at.button if b.label == "Check my pictures").click().run()
    no_exception(at)  # drawn at once: the check waits its turn in the engine's queue, off the page's thread
    task = default_queue().task(at.session_state["quality_task"])
    assert task.kind == "Checking the pictures" and default_queue().wait(task.id, timeout=300), task.error
    at.run()
    assert "may have the wrong label" in texts(at)
    move = next((b for b in at.button if b.key and b.key.startswith("move_") and "flipped_" in b.key), None)
    assert move is not None, "the flipped picture is among the flagged ones"
    move.click().run()
    no_exception(at)
    uploaded = Path(session_data_path(at.query_params["ws"], app_dirs))
    assert list(uploaded.rglob("flipped_*"))[0].parent.name == "nominal"
    undo = at.button(key="quality_undo")
    assert "flipped_" in undo.label
    undo.click().run()
    no_exception(at)
    assert list(uploaded.rglob("flipped_*"))[0].parent.name == "global", "Undo put it back"
