"""The Live page in a real browser: real Streamlit server, headless Chromium whose webcam is a video made
from real demo pictures, the video sent to the server over WebRTC and classified there.

Reports the rate of classified frames the page shows (the whole chain: camera, WebRTC, the model, the
page's readout), and saves a screenshot for the README."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import TEXTILE_CLASSES, copy_textile, textile_root
from tests.live_frames import camera_frame, write_y4m
from tests.test_e2e_browser import CHROMIUM, VIEW, free_port, no_traceback, shot, start_app
from transfer_core.core.config import TrainConfig
from transfer_core.workflows.train import train

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
COUNTER = re.compile(r"(\d+) frames classified")


def fake_camera(path: Path) -> Path:
    """Two real demo pictures of each class, each filmed for a second, as a 640x480 webcam at 10 frames/s."""
    pictures = [Image.open(p) for c in TEXTILE_CLASSES for p in sorted((textile_root() / c).glob("*.jpg"))[-2:]]
    return write_y4m(path, [camera_frame(p) for p in pictures], fps=10, hold=10)


def classified(page) -> int:
    return int(COUNTER.search(page.get_by_text(COUNTER).inner_text()).group(1))


def test_live_page_classifies_the_camera_and_shows_why(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: scripts/test.sh installs it with apt")
    from playwright.sync_api import sync_playwright

    data = copy_textile(tmp_path / "fabric", 12)
    result = train(TrainConfig(data=str(data), freeze="all", epochs=1, batch_size=16, seed=0),
                   runs_dir=tmp_path / "runs")
    assert result.final.kind == "RunFinished", result.final
    camera = fake_camera(tmp_path / "camera.y4m")
    port = free_port()
    app = start_app(tmp_path / "runs", tmp_path / "ws", port)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS + [
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}"])
            page = browser.new_page(viewport=VIEW)
            page.set_default_timeout(120_000)
            page.goto(f"{base}/Live")
            page.get_by_text("Press START").wait_for()
            page.frame_locator("iframe[title='streamlit_webrtc.component.webrtc_streamer']") \
                .get_by_role("button", name="START").click()
            # A class name with its probability: "global / 87% sure", or "... best guess global, 44%".
            classes = "|".join(TEXTILE_CLASSES)
            answer = re.compile(rf"^({classes})\s+\d+% sure|best guess ({classes}), (only )?\d+%", re.I | re.M)
            shown = page.locator("[data-testid=stMarkdownContainer]").filter(has_text=answer).first
            shown.wait_for()
            print(f"\nthe page answers: {shown.inner_text()!r}")
            first, start = classified(page), time.monotonic()
            page.wait_for_timeout(8000)
            last, seconds = classified(page), time.monotonic() - start
            rate = (last - first) / seconds
            print(f"browser-measured: {last - first} frames classified in {seconds:.1f} s = {rate:.1f} frames/s "
                  f"(camera 10 frames/s); the page says: {page.get_by_text(COUNTER).inner_text()}")
            assert rate > 0, "the counter on the page stopped: frames no longer reach the model"
            page.get_by_role("button", name="Why? (heat map)").click()
            page.get_by_text("Where it looked for").wait_for()
            no_traceback(page)
            page.mouse.move(5, 5)  # the button's help text, shown while the pointer rests on it, off the picture
            shot(page, "7-live")
            browser.close()

            # A browser without a camera: the page says so in words instead of an empty box.
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
            page = browser.new_page(viewport=VIEW)
            page.goto(f"{base}/Live")
            page.frame_locator("iframe").first.get_by_text("No camera found on this computer. The Predict page") \
                .wait_for(timeout=120_000)
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
