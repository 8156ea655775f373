"""Every page in Simplified Chinese in a real browser (a server started with TRANSFER_STUDIO_LANG=zh, the demo
pictures chosen, a finished run present): one screenshot per page into docs/screenshots/zh/ (linked from the
README, looked at for clipped or overflowing labels), and the page's own words checked for English left."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import copy_textile, textile_root
from tests.test_e2e_browser import app_running, browser_page, no_traceback  # noqa: F401 - browser_page: a fixture
from tests.test_e2e_browser import shot as browser_shot
from tests.test_i18n_app import english_left
from transfer_core.core.config import TrainConfig
from transfer_core.data.datasets import demo_dataset_path
from transfer_core.service.workspaces import OwnerTag, Workspace, new_token
from transfer_core.workflows.train import train

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots" / "zh"
pytestmark = [pytest.mark.browser, pytest.mark.slow]
PAGES = [("1-home", "", "工作流程"), ("2-data", "Data", "你的图片"), ("3-train", "Train", "预训练网络"),
         ("4-evaluate", "Evaluate", "各类别"), ("5-predict", "Predict", "要分类的图片"), ("6-runs", "Runs", "比较训练"),
         ("7-live", "Live", "置信度低于此值时回答")]
# Streamlit's and the camera component's own words, which no catalog of the app reaches (see README).
WIDGET_WORDS = ["Drag and drop files here", "Drag and drop file here", "Browse files", "Limit", "per file",
                "Take Photo", "Clear photo", "Skip to main content", "add icon"]


@pytest.fixture
def zh_server(tmp_path):
    token = new_token()
    runs, spaces = tmp_path / "runs", tmp_path / "workspaces"
    train(TrainConfig(data=str(copy_textile(tmp_path / "data", 8)), epochs=2), runs_dir=runs,
          callbacks=[OwnerTag(token)])
    Workspace(spaces, token).write_json("data_choice.json", {"path": str(demo_dataset_path()),
                                                             "label": "Demo: textile defects",
                                                             "val_split": 0.2, "seed": 0})
    env = {"TRANSFER_STUDIO_RUNS": str(runs), "TRANSFER_STUDIO_WORKSPACES": str(spaces), "TRANSFER_STUDIO_LANG": "zh"}
    with app_running(env, tmp_path / "server.log") as (base, _proc):
        yield base, token


def shot(page, name: str) -> None:
    browser_shot(page, name, folder=SHOTS, settle_ms=1500)  # charts redraw at the new size


def page_words(page) -> str:
    text = page.evaluate("() => document.querySelector('[data-testid=stApp]').innerText")
    # Code (a command, a folder) is shown as it is typed, in every language: as english_left drops `...`
    code = page.evaluate("() => [...document.querySelectorAll('[data-testid=stApp] code')].map(e => e.innerText)")
    for typed in sorted(code, key=len, reverse=True):
        text = text.replace(typed, " ")
    for words in WIDGET_WORDS:
        text = text.replace(words, " ")
    return text


def test_every_page_in_chinese_in_a_real_browser(zh_server, browser_page):
    base, token = zh_server
    page = browser_page
    page.set_default_timeout(120_000)
    left = {}
    for name, path, heading in PAGES:
        page.goto(f"{base}/{path}?ws={token}")
        page.get_by_text(heading).first.wait_for()
        if name == "5-predict":
            picture = sorted((textile_root() / "local").glob("*.jpg"))[0]
            page.locator("input[type=file]").first.set_input_files(str(picture))
            page.get_by_text("把握").first.wait_for()
        page.wait_for_timeout(3000)  # the page's tasks (calibration) and charts settle
        no_traceback(page)
        shot(page, name)
        found = [w for line in page_words(page).splitlines() for w in english_left(line)]
        if found:
            left[name] = found
    assert left == {}
