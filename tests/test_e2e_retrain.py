"""The loop closes, in a real browser (issue 29, part 3): on Live a frame is corrected and Retrain pressed; its
progress shows there; when the new run's model is kept, Live switches to it and says how both models do on the
same pictures. Kept short: 8 real pictures per class, 64 px, one epoch.

Screenshot: assets/screenshots/retrain-notice.png (the README shows it)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import TEXTILE_CLASSES, copy_textile, textile_root
from tests.live_frames import camera_frame, write_y4m
from tests.test_e2e_browser import CHROMIUM, VIEW, free_port, no_traceback, shot, start_app
from tests.test_e2e_classroom import BROWSER_FLAGS, pick, start_camera
from transfer_core.core.config import TrainConfig
from transfer_core.data.classbuilder import SETS
from transfer_core.runstore.runs import RunFolder
from transfer_core.service.workspaces import OwnerTag, Workspace, new_token
from transfer_core.workflows.train import train

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SMALL = dict(freeze="all", epochs=1, image_size=64, batch_size=16, schedule="fixed", seed=0)
NOTICE = re.compile(r"New model: (\d+) of (\d+) right, the old one (\d+) of (\d+)")


def shows(picker, run_id: str, timeout_s: float = 120) -> None:
    """The model picker shows this run (its chosen value is its input's text)."""
    deadline = time.time() + timeout_s
    while run_id not in picker.locator("input").input_value():
        assert time.time() < deadline, f"the picker shows {picker.locator('input').input_value()!r}, not {run_id}"
        time.sleep(0.5)


def test_retrain_from_live_switches_to_the_new_model_and_compares_the_two(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: scripts/test.sh installs it with apt")
    from playwright.sync_api import sync_playwright

    token, runs, spaces = new_token(), tmp_path / "runs", tmp_path / "ws"
    data = copy_textile(Workspace(spaces, token).path / SETS / "fabric", 8)  # the person's own pictures
    old = train(TrainConfig(data=str(data), **SMALL), runs_dir=runs, callbacks=[OwnerTag(token)]).run_dir
    camera = write_y4m(tmp_path / "camera.y4m", [camera_frame(Image.open(sorted((textile_root() / "local")
                                                                                 .glob("*.jpg"))[-1]))], fps=10)
    port = free_port()
    app = start_app(runs, spaces, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=BROWSER_FLAGS + [f"--use-file-for-fake-video-capture={camera}"])
            page = browser.new_page(viewport=VIEW)
            page.set_default_timeout(180_000)
            page.goto(f"http://127.0.0.1:{port}/Live?ws={token}")
            picker = page.get_by_test_id("stSelectbox").filter(has_text="Trained model")
            shows(picker, old.name)
            start_camera(page)
            page.get_by_role("button", name="Keep this frame to correct it").click()
            page.get_by_text("The frame kept").wait_for()
            pick(page, "This is actually", "local")
            page.get_by_role("button", name="Add it to this class").click()
            page.get_by_text(re.compile(r"1 picture\(s\) added to")).wait_for()
            page.get_by_role("button", name="Retrain").click()

            # Its progress where it was pressed (a waiting line first if the machine is busy), then the switch.
            progress = page.get_by_text(re.compile(r"Retraining \(run (\S+)\)|Waiting for the machine: run"))
            progress.first.wait_for()
            new = re.search(r"run ([\w.-]+)", progress.first.inner_text()).group(1)
            page.get_by_text("is now used here instead of run").wait_for(timeout=300_000)
            shows(picker, new)  # Live's picker shows the new run: its model answers the camera
            notice = page.get_by_text(NOTICE)
            notice.wait_for(timeout=300_000)
            right_new, n, right_old, n_again = map(int, NOTICE.search(notice.inner_text()).groups())
            assert n == n_again > 0 and 0 <= right_new <= n and 0 <= right_old <= n
            page.get_by_text(re.compile(r"On the 1 picture\(s\) you added: new model [01] right, the old one [01]")) \
                .wait_for()
            no_traceback(page)
            page.mouse.move(5, 5)
            shot(page, "retrain-notice")
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert RunFolder(runs / new).config.tags.get("retrained_from") == old.name
    assert RunFolder(runs / new).status() == "finished" and set(RunFolder(runs / new).read_json("classes.json")) \
        == set(TEXTILE_CLASSES)
