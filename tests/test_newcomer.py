"""What a newcomer tripped over in a side-by-side trial (issue 13), each checked through the real pages."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest

from tests.conftest import copy_textile
from tests.test_app_pages import (  # noqa: F401
    app_dirs,
    choose_folder,
    no_exception,
    page,
    raw_texts,
    texts,
)
from tests.test_jobs import FileGate
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import EpochEnd
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.jobs import default_queue
from transfer_core.service.workspaces import OwnerTag, new_token, share_run
from transfer_core.training.callbacks import Callback
from transfer_core.workflows.train import make_trainer, train

TINY = dict(schedule="fixed", image_size=64, batch_size=8, freeze="all")


class StopAfterFirstEpoch(Callback):
    def __init__(self, stop: threading.Event):
        self.stop = stop

    def on_event(self, trainer, event) -> None:
        if isinstance(event, EpochEnd):
            self.stop.set()


def stopped_run(data, runs, token) -> RunFolder:
    stop = threading.Event()
    trainer = make_trainer(TrainConfig(data=str(data), epochs=3, **TINY), runs_dir=runs, stop=stop,
                      callbacks=[OwnerTag(token), StopAfterFirstEpoch(stop)])
    result = trainer.run_training()
    assert result.final.kind == "RunStopped"
    return RunFolder(result.run_dir)


def test_one_class_is_said_plainly_and_start_is_not_offered(app_dirs, tmp_path):
    folder = copy_textile(tmp_path / "my_pets", 4)
    for name in ("global", "nominal"):
        for f in (folder / name).iterdir():
            f.unlink()
        (folder / name).rmdir()
    (folder / "local").rename(folder / "*cats*")
    at = page("pages/1_Data.py").run()
    choose_folder(at, folder)
    assert "\\*cats\\*" in raw_texts(no_exception(at)), "a name is shown as typed, never as Markdown (italics)"
    message = texts(at)
    assert "Only one class found ('*cats*'): add a second class folder beside it." in message
    assert "holds images but no class folders" not in message
    train = no_exception(page("pages/2_Train.py", at.query_params["ws"]).run())
    assert "only one class ('*cats*') was found" in texts(train)
    assert not [b for b in train.button if b.label == "Start training"]


def test_an_unfreeze_epoch_beyond_the_run_is_refused_in_words(app_dirs):
    at = page("pages/2_Train.py").run()
    at.button(key="use_demo_here").click().run()
    at.number_input(key="epochs").set_value(4).run()
    at.text_input(key="unfreeze_at").input("9").run()
    assert "unfreezing at epoch 9 can never happen in a run of 4 epochs" in texts(no_exception(at))
    assert next(b for b in at.button if b.label == "Start training").disabled


@pytest.fixture
def two_peoples_runs(app_dirs, tmp_path):
    data = copy_textile(tmp_path / "photos", 5)
    me, other = new_token(), new_token()
    runs = app_dirs / "runs"
    mine = train(TrainConfig(data=str(data), epochs=1, **TINY), runs_dir=runs, callbacks=[OwnerTag(me)])
    theirs = train(TrainConfig(data=str(data), epochs=1, **TINY), runs_dir=runs, callbacks=[OwnerTag(other)])
    share_run(theirs.run_dir, other, runs, run=True)  # private otherwise: I would not see it at all
    return me, mine.run_dir.name, theirs.run_dir.name


@pytest.mark.parametrize("name,key", [("pages/3_Evaluate.py", "evaluate_run"), ("pages/4_Predict.py", "predict_run")])
def test_evaluate_and_predict_open_on_my_own_run_and_say_whose(two_peoples_runs, name, key):
    me, mine, theirs = two_peoples_runs  # theirs is the newer one
    at = no_exception(page(name, me).run())
    picker = at.selectbox(key=key)
    assert picker.value == mine and len(picker.options) == 1, picker.options
    assert re.fullmatch(f"yours · {mine} · mobilenet_v2 · finished · best accuracy "
                        r"[\d.]+% \(95% sure: \d+%-\d+%\)", picker.options[0]), picker.options
    at.segmented_control(key=f"{key}_whose").set_value("all").run()
    picker = no_exception(at).selectbox(key=key)
    assert picker.value == mine and len(picker.options) == 2
    assert picker.options[0].startswith("shared · " + theirs)


def test_a_stopped_run_counts_its_epochs_lists_everywhere_and_resumes(app_dirs, tmp_path):
    token = new_token()
    run = stopped_run(copy_textile(tmp_path / "photos", 5), app_dirs / "runs", token)
    final = run.final_event()
    assert final.epochs_run == len(run.epochs()) == 1
    for name, key in (("pages/3_Evaluate.py", "evaluate_run"), ("pages/4_Predict.py", "predict_run")):
        at = no_exception(page(name, token).run())
        assert at.selectbox(key=key).value == run.id, name
    assert "stopped before its results were measured" in texts(page("pages/3_Evaluate.py", token).run())

    at = no_exception(page("pages/2_Train.py", token).run())
    assert f"was stopped after 1 of 3 epochs" in texts(at)
    at.button(key=f"resume_{run.id}").click().run()
    no_exception(at)
    job = default_queue().get(run.id)
    assert job is not None and default_queue().wait(job.id, timeout=300)
    assert job.final.kind == "RunFinished" and job.final.epochs_run == 3
    assert RunFolder(run.path).status() == "finished"


def test_colour_means_the_share_on_every_chart_and_runs_differ_by_line_style(two_peoples_runs, app_dirs):
    from transfer_core.results.compare import compare_runs
    from ui import charts

    _, mine, theirs = two_peoples_runs
    runs = [RunFolder(app_dirs / "runs" / i) for i in (mine, theirs)]
    epochs = runs[0].epochs()
    figures = [charts.loss_curves(epochs), charts.accuracy_curves(epochs), *charts.compared_runs(
        compare_runs([r.path for r in runs])), charts.class_counts({"a": {"train": 3, "val": 1, "test": 1}})]
    seen = {}
    for fig in figures:
        for trace in fig.data:
            share = next(s for s in charts.SHARE_COLOURS if trace.name.endswith(s))
            colour = trace.marker.color if trace.type == "bar" else trace.line.color
            seen.setdefault(share, set()).add(colour)
    assert seen == {share: {colour} for share, colour in charts.SHARE_COLOURS.items()}
    loss, _ = charts.compared_runs(compare_runs([r.path for r in runs]))
    assert len({t.line.dash for t in loss.data}) == 2, "each run has its own line style"


def test_the_data_line_follows_the_choice_at_once_and_a_pending_upload_is_named(app_dirs, tmp_path):
    at = page("pages/1_Data.py").run()
    at.button[0].click().run()  # the demo pictures
    assert "Data: Demo: textile defects" in [c.value for c in no_exception(at).sidebar.caption]
    folder = copy_textile(tmp_path / "mine", 3)
    at.radio(key="data_source").set_value("folder").run()
    files = [(f"mine/{p.parent.name}/{p.name}", p.read_bytes(), "image/jpeg") for p in sorted(folder.glob("*/*"))]
    at.file_uploader(key="upload_folder").set_value(files).run()
    assert "Press **Use these 9 file(s)** to use them. Until then the model would learn from: Demo" in texts(at)
    next(b for b in at.button if b.label.startswith("Use these")).click().run()
    assert "Data: Upload: mine" in [c.value for c in no_exception(at).sidebar.caption]
    assert "Press Use these" not in texts(at)


def test_runs_page_asks_before_deleting_says_it_did_and_names_downloads_by_name(two_peoples_runs, app_dirs):
    me, mine, theirs = two_peoples_runs
    at = no_exception(page("pages/5_Runs.py", me).run())
    table = at.dataframe[0].value
    assert set(table["whose"]) == {"yours", "shared"}
    assert all(a.endswith("%") for a in table["best accuracy"])
    at.selectbox(key="detail_run").set_value(mine).run()
    at.text_input(key=f"name_{mine}").set_value("frozen: all layers").run()
    options = no_exception(at).selectbox(key="detail_run").options
    assert any(o.startswith("yours · frozen: all layers") for o in options)
    from ui.common import download_name

    assert download_name("frozen: all layers") == "frozen_all_layers.zip" and download_name("??") == "run.zip"
    at.button(key=f"delete_{mine}").click().run()
    assert "for good?" in texts(no_exception(at)) and (app_dirs / "runs" / mine).is_dir(), "nothing gone yet"
    at.button(key=f"delete_yes_{mine}").click().run()
    assert "Deleted frozen: all layers." in texts(no_exception(at))
    assert not (app_dirs / "runs" / mine).exists()
    assert [o for o in at.selectbox(key="detail_run").options if "frozen" in o] == []


def test_the_network_table_shows_every_network_and_whether_it_works_here(app_dirs):
    from transfer_core.models.backbones import list_backbones

    at = page("pages/2_Train.py").run()
    at.button(key="use_demo_here").click().run()
    table = no_exception(at).dataframe[0]
    assert list(table.value.columns[:2]) == ["network", "weights"]  # the deciding column is never cut off
    assert len(table.value) == len(list_backbones())
    assert "works here?" in table.proto.columns  # the column's title, with its help


def test_train_settings_survive_a_refresh_of_the_same_link(app_dirs):
    at = page("pages/2_Train.py").run()
    at.button(key="use_demo_here").click().run()
    at.number_input(key="epochs").set_value(7).run()
    at.select_slider(key="lr").set_value(3e-3).run()
    at.select_slider(key="freeze_mobilenet_v2").set_value(2).run()
    at.select_slider(key="batch_size").set_value(16).run()
    token = at.query_params["ws"]
    again = no_exception(page("pages/2_Train.py", token).run())  # a refresh: a new session, the same link
    assert again.number_input(key="epochs").value == 7 and again.select_slider(key="lr").value == 3e-3
    assert again.select_slider(key="freeze_mobilenet_v2").value == 2
    assert again.select_slider(key="batch_size").value == 16
    assert not again.warning or all("Session State" not in w.value for w in again.warning)
    fresh = no_exception(page("pages/2_Train.py").run())  # another person keeps the defaults
    fresh.button(key="use_demo_here").click().run()
    assert fresh.number_input(key="epochs").value == TrainConfig(data="").epochs


@pytest.mark.slow
def test_the_learning_rate_finder_runs_as_a_task_and_offers_exactly_its_suggestion(app_dirs, tmp_path):
    at = page("pages/1_Data.py").run()
    choose_folder(at, copy_textile(tmp_path / "photos", 8))
    at = page("pages/2_Train.py", at.query_params["ws"]).run()
    at.select_slider(key="image_size_mobilenet_v2").set_value(96).run()
    next(b for b in at.button if b.label == "Find a good learning rate").click().run()
    no_exception(at)  # the page is drawn at once: the work waits its turn in the engine's queue
    task = default_queue().task(at.session_state["lr_find_task"])
    assert task is not None and task.kind == "Finding a learning rate"
    assert default_queue().wait(task.id, timeout=300) and task.error is None
    assert task.progress[2] == "trying learning rates"  # after "reading the pictures"
    at.run()
    suggestion = float(f"{task.result.suggestion:.2g}")
    use = next(b for b in no_exception(at).button if b.label.startswith("Use "))
    assert use.label == f"Use {suggestion:g}"
    use.click().run()
    assert no_exception(at).select_slider(key="lr").value == suggestion


def test_the_data_pages_scan_is_a_task_that_does_not_wait_for_a_training_run(app_dirs, tmp_path, monkeypatch):
    """Opening every picture of a folder happens in the queue's lane for file work, not on the page's thread,
    and not behind someone's run that holds the device; the page shows its progress until it is over."""
    from ui import data_view

    monkeypatch.setattr(data_view, "SCAN_WAIT_S", 0.0)  # as a folder too large for the page's moment
    scanned_on, drawn = [], threading.Event()
    real_scan = data_view.scan_dataset

    def scan_dataset(*args, **kwargs):  # where it runs; it waits until the page was drawn once without it
        scanned_on.append(threading.current_thread().name)
        assert drawn.wait(timeout=120)
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(data_view, "scan_dataset", scan_dataset)
    gate = FileGate(tmp_path / "gate")  # the run trains in a child process of the app
    held = default_queue().submit(TrainConfig(data=str(copy_textile(tmp_path / "theirs", 4)), schedule="fixed",
                                              epochs=1, image_size=64, freeze="all"),
                                  app_dirs / "runs", owner="someone-else-0123456789", callbacks=[gate])
    try:
        at = page("pages/1_Data.py").run()
        choose_folder(at, copy_textile(tmp_path / "photos", 8))
        no_exception(at)
        assert not at.metric, "drawn before the scan was over: no report yet"
        drawn.set()
        task = default_queue().task(at.session_state["data_scan_task"])
        assert default_queue().wait(task.id, timeout=120) and task.error is None
        assert held.state == "running", "the scan finished while a run held the device"
        at.run()
        assert {m.label: m.value for m in no_exception(at).metric}["Pictures"] == "24"
        assert scanned_on and all(name.startswith("transfer-studio-job task-") for name in scanned_on)
    finally:
        drawn.set()
        gate.set()
        default_queue().wait(held.id, timeout=300)


def test_after_a_restart_the_train_page_points_to_the_interrupted_run(app_dirs, tmp_path):
    token = new_token()
    run = stopped_run(copy_textile(tmp_path / "photos", 5), app_dirs / "runs", token)
    # What a restart leaves: no final event, and a training process that no longer exists.
    events = (run.path / "events.jsonl").read_text().splitlines()
    (run.path / "events.jsonl").write_text("\n".join(e for e in events if '"RunStopped"' not in e) + "\n")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run.path / "process.json").write_text(json.dumps({"pid": int(gone.stdout), "since": 0, "start": 0}))
    assert RunFolder(run.path).status() == "interrupted"
    at = no_exception(page("pages/2_Train.py", token).run())
    assert "was interrupted when the app stopped after 1 of 3 epochs" in texts(at)
    assert at.button(key=f"resume_{run.id}").label == "Resume training"
