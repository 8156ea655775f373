"""Runs are shared, so nothing in a run folder, its download or its export may reveal a person's workspace key
or a server path; nor may the pages another person sees. Found by a trial with two browser sessions: the
Runs page showed `workspaces/<key>/uploads/...`, and that key gave the owner's Delete button to everyone."""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import copy_textile
from tests.test_app_pages import (  # noqa: F401
    app_dirs,
    choose_folder,
    no_exception,
    page,
    texts,
    wait_for_task,
)
from transfer_core.core.config import TrainConfig
from transfer_core.data.datasets import demo_dataset_path
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.jobs import default_queue
from transfer_core.service.workspaces import Workspace, share_run, workspace_id
from transfer_core.workflows.train import train

REPO = Path(__file__).resolve().parents[1]


def secrets_of(tmp_path: Path, token: str | None = None) -> list[bytes]:
    """Strings no shared file may contain: the key, and every absolute folder of this server in play."""
    found = [str(tmp_path), str(REPO), sys.prefix, str(demo_dataset_path()), str(Path.home()), "/tmp/"]
    return [s.encode() for s in found + ([token] if token else [])]


def blobs(path: Path):
    """(name, bytes) of every file below `path`, with the members of zip files (bundles, torch files) opened."""
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        data = f.read_bytes()
        yield str(f.relative_to(path)), data
        if zipfile.is_zipfile(io.BytesIO(data)):
            yield from zip_blobs(str(f.relative_to(path)), data)


def zip_blobs(name: str, data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for member in zf.namelist():
            yield f"{name}!{member}", zf.read(member)


def leaks(items, forbidden: list[bytes]) -> list[str]:
    return [f"{name}: {s.decode()}" for name, data in items for s in forbidden if s in data]


def everything_shown(at: AppTest) -> str:
    """Every text, table, JSON and label a page shows."""
    parts = [texts(at)] + [str(j.value) for j in at.json] + [str(d.value) for d in at.dataframe]
    parts += [str(w.proto) for kind in ("selectbox", "multiselect") for w in at.get(kind)]
    return "\n".join(parts)


@pytest.mark.slow
def test_upload_train_export_leaks_no_key_and_no_server_path(app_dirs, tmp_path):
    at = page("pages/1_Data.py").run()
    choose_folder(at, copy_textile(tmp_path / "holiday_photos", 5))
    token = at.query_params["ws"]
    workspace = Workspace(app_dirs / "workspaces", token)
    assert token not in str(workspace.path) and workspace.path.name == workspace_id(token)
    assert any((workspace.path / "uploads").iterdir()), "the upload is kept in the person's workspace"

    train_page = page("pages/2_Train.py", token).run()
    train_page.number_input(key="epochs").set_value(1)
    next(b for b in train_page.button if b.label == "Start training").click().run()
    job = default_queue().jobs()[-1]
    assert default_queue().wait(job.id, timeout=600) and job.final.kind == "RunFinished"
    run_dir = app_dirs / "runs" / job.id

    runs_page = no_exception(page("pages/5_Runs.py", token).run())
    next(b for b in runs_page.button if b.label.startswith("Export for use outside")).click().run()
    wait_for_task(runs_page, f"export_task_{job.id}")
    no_exception(runs_page)
    export_zip = Path(runs_page.session_state[f"exported_{job.id}"][0])
    from transfer_core.results.bundle import model_bundle

    items = list(blobs(run_dir)) + list(zip_blobs("model download", model_bundle(run_dir)))
    items += list(zip_blobs("export", export_zip.read_bytes()))
    assert any(name.endswith("config.json") for name, _ in items)
    assert leaks(items, secrets_of(tmp_path, token)) == []
    # The reference still finds the pictures on this server: resume and the mistakes gallery need them.
    assert all(Path(p).is_file() for p in RunFolder(run_dir).validation_images())
    assert RunFolder(run_dir).config.data.startswith("workspace:")

    share_run(run_dir, token, app_dirs / "runs", run=True)  # private otherwise: the other person would see nothing
    other = no_exception(page("pages/5_Runs.py").run())  # someone else, with a key of their own
    assert other.query_params["ws"] != token
    other.selectbox(key="detail_run").set_value(job.id).run()
    shown = everything_shown(no_exception(other))
    assert job.id in shown and "Upload" in shown
    assert [s for s in secrets_of(tmp_path, token) if s.decode() in shown] == []
    assert workspace.path.name not in shown


def test_a_demo_run_names_its_data_without_the_package_path(tmp_path):
    config = TrainConfig(schedule="fixed", data=str(demo_dataset_path()), epochs=1, max_images=24, image_size=64, freeze="all")
    result = train(config, runs_dir=tmp_path / "runs")
    assert result.final.kind == "RunFinished", result.final
    run = RunFolder(result.run_dir)
    assert run.config.data == "demo:."
    assert leaks(blobs(run.path), secrets_of(tmp_path)) == []
    assert all(Path(p).is_file() for p in run.validation_images())


def test_a_failure_message_kept_in_a_run_has_no_server_path(tmp_path):
    folder = copy_textile(tmp_path / "photos", 3)
    config = TrainConfig(schedule="fixed", data=str(folder), epochs=1, weights_file=str(tmp_path / "missing" / "weights.pth"))
    result = train(config, runs_dir=tmp_path / "runs")
    assert result.final.kind == "RunFailed" and "weights.pth" in result.final.detail
    events = (result.run_dir / "events.jsonl").read_bytes()
    assert leaks([("events.jsonl", events)], secrets_of(tmp_path)) == []


def test_a_command_line_runs_download_does_not_name_its_folder(tmp_path):
    # A folder typed on the command line is kept in the run's own config (the person who typed it runs the
    # server, and resume needs it); the download that anyone may take shows it as a label.
    folder = copy_textile(tmp_path / "photos", 3)
    result = train(TrainConfig(schedule="fixed", data=str(folder), epochs=1, image_size=64, freeze="all"), runs_dir=tmp_path / "runs")
    from transfer_core.results.bundle import model_bundle

    assert leaks(zip_blobs("download", model_bundle(result.run_dir)), secrets_of(tmp_path)) == []
    assert RunFolder(result.run_dir).config.data == str(folder.resolve())
