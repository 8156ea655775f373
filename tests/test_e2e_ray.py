"""The app on a local Ray cluster (TRANSFER_STUDIO_RAY_ADDRESS=local), in real Chromium: the home page says
where runs train, and a folder uploaded by a person trains with the one click on a Ray worker, its first
model and its end shown live, as in-process. (This is how a Ray driver started on a page's script thread
was found to hang every job.)"""
from __future__ import annotations

import json

import pytest

from tests.conftest import copy_textile
from tests.test_e2e_browser import (
    app_running,
    browser_page,  # noqa: F401 - a fixture this test uses
    one_click_training,
    upload_folder,
    visit_home,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_person_trains_on_ray_through_the_app(browser_page, tmp_path):
    env = {"TRANSFER_STUDIO_RUNS": str(tmp_path / "runs"), "TRANSFER_STUDIO_RAY_ADDRESS": "local",
           "TRANSFER_STUDIO_WORKSPACES": str(tmp_path / "workspaces"), "TRANSFER_STUDIO_SLOTS": "2"}
    with app_running(env, tmp_path / "server.log") as (base, proc):
        page = browser_page
        page.set_default_timeout(180_000)
        token = visit_home(page, base)
        page.get_by_text("a Ray cluster, up to 2 runs at a time").wait_for()
        upload_folder(page, base, token, copy_textile(tmp_path / "fabric", 8))
        one_click_training(page, base, token, "Upload: fabric")
        trainers = [json.loads(p.read_text())["pid"] for p in (tmp_path / "runs").rglob("process.json")]
        assert trainers and proc.pid not in trainers  # it trained in a Ray worker, not in the app's process
