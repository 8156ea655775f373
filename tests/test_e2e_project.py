"""A project taken from one app to another, in real Chromium (issue 29, part 4): app A (its own runs and
workspaces folders) packs a person's pictures and model with "Download this project"; A stops; app B, with
folders of its own, opens the downloaded file on its Data page. B's person then has the classes as their own
set and the run as their own, and the run answers exactly as A's did (`predict --json`, byte for byte). A
damaged file is refused in words. Screenshots: assets/screenshots/project-*.png (the README shows them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_textile
from tests.test_e2e_browser import (  # noqa: F401 - browser_page is a fixture
    ROOT,
    SHOTS,
    browser_page,
    free_port,
    no_traceback,
    start_app,
    upload_folder,
    visit_home,
)
from transfer_core.core.config import TrainConfig
from transfer_core.runstore.runs import list_runs
from transfer_core.service.workspaces import OwnerTag, Workspace, run_owner_is
from transfer_core.workflows.train import train

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FAST = dict(schedule="fixed", image_size=64, batch_size=8, epochs=1, seed=0, freeze="all")


def predict_json(run: Path, pictures: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "transfer_core", "predict", str(run), str(pictures), "--json"],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=600, check=True)
    return out.stdout.splitlines()


def test_a_project_from_one_app_opens_in_another_and_predicts_the_same(browser_page, tmp_path):
    page = browser_page
    page.set_default_timeout(180_000)
    a, b = tmp_path / "a", tmp_path / "b"
    folder = copy_textile(tmp_path / "fabric", 8)
    a.mkdir()
    b.mkdir()

    port = free_port()
    app = start_app(a / "runs", a / "workspaces", port)
    base = f"http://127.0.0.1:{port}"
    try:
        alice = visit_home(page, base)
        upload_folder(page, base, alice, folder)
        data = Workspace(a / "workspaces", alice).read_json("data_choice.json")["path"]
        run = Path(train(TrainConfig(data=data, **FAST), runs_dir=a / "runs", callbacks=[OwnerTag(alice)]).run_dir)
        page.goto(f"{base}/Data?ws={alice}")
        page.get_by_text("Take this project with you").wait_for()
        # back on Data, the page shows the source in use, and no button one click from replacing it
        assert page.get_by_role("radio", name="Upload a folder from my computer").is_checked()
        assert page.get_by_role("button", name="Use the demo pictures").count() == 0
        page.get_by_role("button", name="Prepare the project file").click()
        download_button = page.get_by_role("button", name="Download this project")
        download_button.wait_for()
        page.get_by_text("3 classes, 24 pictures, 1 model(s)").wait_for()
        no_traceback(page)
        view(page, page.get_by_text("Take this project with you"), "project-1-download")
        with page.expect_download() as got:
            download_button.click()
        project = tmp_path / "carried.zip"
        got.value.save_as(project)
    finally:
        app.terminate()
        app.wait(timeout=60)

    port = free_port()
    app = start_app(b / "runs", b / "workspaces", port)
    base = f"http://127.0.0.1:{port}"
    try:
        bob = visit_home(page, base)
        page.goto(f"{base}/Data?ws={bob}")
        broken = tmp_path / "broken.zip"
        broken.write_bytes(project.read_bytes()[: project.stat().st_size // 2])
        _open(page, broken)
        page.get_by_text("This project file is damaged or cut short").wait_for()
        assert not (b / "runs").exists() or not list_runs(b / "runs")
        view(page, None, "project-2-refused")
        _open(page, project)
        page.get_by_text("Opened fabric: 3 classes, 24 pictures and 1 model(s).").wait_for()
        page.get_by_text("Using: fabric").wait_for()
        page.locator(".js-plotly-plot").first.wait_for()  # the page drawn to its end, pictures checked
        no_traceback(page)
        view(page, None, "project-3-opened")
    finally:
        app.terminate()
        app.wait(timeout=60)

    (copy,) = list_runs(b / "runs")
    assert run_owner_is(copy.path, bob) and copy.id == run.name
    opened = Path(Workspace(b / "workspaces", bob).read_json("data_choice.json")["path"])
    assert sorted(p.name for p in opened.iterdir() if p.is_dir()) == ["global", "local", "nominal"]
    assert json.loads((copy.path / "config.json").read_text())["data"].startswith("workspace:")
    before, after = predict_json(run, folder), predict_json(copy.path, folder)
    assert len(before) == 24 and before == after


def view(page, element, name: str) -> None:
    """What the window shows (the whole Data page is long), scrolled to `element` when given."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    if element is not None:
        element.scroll_into_view_if_needed()
    page.mouse.move(0, 0)  # no help text left open
    page.wait_for_timeout(800)  # pictures and help icons settle
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _open(page, file: Path) -> None:
    page.get_by_text("Open a project saved from Transfer Studio").click()
    # Open only once the server holds the new file: a click before would open the file uploaded before it.
    with page.expect_response(lambda r: "upload_file" in r.url and r.request.method == "PUT"):
        page.locator("input[type=file]").set_input_files(str(file))
    page.get_by_text(file.name, exact=True).first.wait_for()
    page.wait_for_timeout(1500)  # the widget's new value reaches the script before the click's rerun
    page.get_by_role("button", name="Open this project").click()
