"""End to end, as a person uses it: the real Streamlit server, real headless Chromium, real pictures.

Uploads a small folder through the real file input, trains, watches the live curve gain points, sees the
run finish, evaluates, predicts an uploaded picture. Saves a screenshot of each page into assets/
(the README shows them).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import copy_textile, textile_root

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "assets" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.slow]
VIEW = {"width": 1400, "height": 1000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{proc.log_path.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError("streamlit did not start")


def launch(env: dict, port: int, log: Path) -> subprocess.Popen:
    """`streamlit run app.py` as a user starts it. Its output goes to a file: an unread pipe fills up and
    would freeze the server mid-test."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true",
                                 f"--server.port={port}", "--browser.gatherUsageStats=false"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log_path = log
    return proc


@contextmanager
def app_running(env: dict, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """The app started as a person starts it, with `env` added to this environment: its address and process,
    stopped at the end whatever happened."""
    port = free_port()
    proc = launch({**os.environ, **env}, port, log)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}", proc
    except BaseException:
        print(f"--- the app's log ({log}), its end:\n{log.read_text(errors='replace')[-6000:]}")  # shown by pytest
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def server(tmp_path):
    env = {"TRANSFER_STUDIO_RUNS": str(tmp_path / "runs"), "TRANSFER_STUDIO_WORKSPACES": str(tmp_path / "workspaces")}
    with app_running(env, tmp_path / "server.log") as (base, _proc):
        yield base, tmp_path


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: scripts/test.sh installs it with apt")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page(viewport=VIEW)
        yield page
        browser.close()


def shot(page, name: str, folder: Path = SHOTS, settle_ms: int = 800) -> None:
    """The whole page: Streamlit scrolls inside its main pane, so the window is made as tall as the page."""
    folder.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => (document.querySelector('[data-testid=stMain]') || document.body).scrollHeight")
    page.set_viewport_size({"width": VIEW["width"], "height": max(VIEW["height"], min(int(height) + 60, 5000))})
    page.wait_for_timeout(settle_ms)  # let charts redraw at the new size
    page.screenshot(path=str(folder / f"{name}.png"))
    page.set_viewport_size(VIEW)


def plotted_points(page) -> int:
    """Markers drawn in the page's plotly charts (each epoch adds markers to the curves)."""
    return page.locator(".js-plotly-plot .scatterlayer path.point").count()


def no_traceback(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0


def visit_home(page, base: str) -> str:
    """Open the start page as a new visitor; returns the workspace token the app put in the URL."""
    page.goto(base)
    page.get_by_text("How it works").wait_for()
    return re.search(r"ws=([\w-]+)", page.url).group(1)


def one_click_training(page, base: str, token: str, data_label: str) -> None:
    """The Train page with its defaults, as a person presses Start: the first model, then the end. With
    fewer than 20 validation pictures the first model is the model ("Your model is ready": small data)."""
    page.goto(f"{base}/Train?ws={token}")
    page.get_by_text(f"Pictures: {data_label}").wait_for()
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"Your (first )?model is ready after \d+ s")).wait_for(timeout=600_000)
    page.get_by_text("Finished: best validation accuracy").wait_for(timeout=900_000)
    no_traceback(page)


def exactly_as_set(page) -> None:
    """The fixed schedule, once the page has redrawn for it: the time limit (and, with few pictures, the note
    that they end at the first model) goes away, and until then the page may show old and new controls."""
    page.get_by_text("Exactly as set", exact=True).click()
    page.get_by_text("Time limit (minutes, 0 = automatic)").wait_for(state="detached")
    page.get_by_text("the first model will be the model").wait_for(state="detached")


def upload_folder(page, base: str, token: str, folder: Path) -> None:
    """The Data page's folder upload, through the real file input, as a person does it."""
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    page.goto(f"{base}/Data?ws={token}")
    page.get_by_text("Upload a folder from my computer").click()
    page.locator("input[type=file]").set_input_files(str(folder))
    page.get_by_role("button", name=f"Use these {files} file(s)").click()
    page.get_by_text(f"Using: Upload: {folder.name}").wait_for()


def test_upload_train_watch_evaluate_predict_in_a_real_browser(server, browser_page, tmp_path):
    base, _ = server
    page = browser_page
    page.set_default_timeout(120_000)
    folder = copy_textile(tmp_path / "fabric", 8)
    token = visit_home(page, base)
    shot(page, "1-home")

    upload_folder(page, base, token, folder)
    page.get_by_text("Check the pictures for problems").wait_for()  # the page's last section: all drawn
    page.locator(".js-plotly-plot").first.wait_for()
    no_traceback(page)
    shot(page, "2-data")

    page.goto(f"{base}/Train?ws={token}")  # a fresh page load: the choice of data must survive it
    page.get_by_text("Pictures: Upload: fabric").wait_for()
    # Every planned epoch runs, so the curves can be seen gaining points (the one click's first model and
    # early end are in tests/test_e2e_classroom.py and tests/test_progressive.py).
    exactly_as_set(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"Epoch \d of 8")).first.wait_for()
    deadline = time.time() + 900  # generous: a shared CI machine can be slow
    seen = []
    while time.time() < deadline and not page.get_by_text("Finished: best validation accuracy").count():
        seen.append(plotted_points(page))
        page.wait_for_timeout(500)
    shot(page, "3-train")  # also a record of what the page showed if the next line fails
    page.get_by_text("Finished: best validation accuracy").wait_for(timeout=10_000)
    assert max(seen) > min(seen), f"the live curves never gained points: {seen}"
    no_traceback(page)
    shot(page, "3-train")

    page.goto(f"{base}/Evaluate?ws={token}")
    page.get_by_text("Per class").wait_for()
    page.get_by_text("Confusion matrix").first.wait_for()
    no_traceback(page)
    shot(page, "4-evaluate")

    page.goto(f"{base}/Predict?ws={token}")
    picture = sorted((textile_root() / "global").glob("*.jpg"))[-1]
    page.locator("input[type=file]").first.set_input_files(str(picture))
    # An answer: a class and how sure, or (for ~5% of normal pictures, by design) "unfamiliar".
    page.get_by_text(re.compile(r"\d+% sure|does not look like your training pictures")).first.wait_for()
    page.get_by_text("Show why (heat map)").click()  # Grad-CAM over the picture
    page.get_by_text("where it looked").first.wait_for()
    no_traceback(page)
    shot(page, "5-predict")
    # This headless browser has no camera: the page says so in words (before, a permission text over an
    # empty box). And Streamlit's developer "Deploy" button is not shown to people using the app.
    page.get_by_text("Use my camera").click()
    page.frame_locator("iframe").first.get_by_text("No camera found on this computer").wait_for()
    assert page.get_by_text("Deploy", exact=True).count() == 0

    page.goto(f"{base}/Runs?ws={token}")
    page.get_by_text("Compare runs").wait_for()
    page.get_by_role("button", name=re.compile("Download the trained model")).wait_for()
    no_traceback(page)
    shot(page, "6-runs")


def start_app(runs: Path, workspaces: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "TRANSFER_STUDIO_RUNS": str(runs), "TRANSFER_STUDIO_WORKSPACES": str(workspaces)}
    proc = launch(env, port, runs.parent / f"server-{time.time():.0f}.log")
    wait_for_port(port, proc)
    return proc


def test_app_killed_mid_run_lists_it_interrupted_and_resumes_it(browser_page, tmp_path):
    """SIGKILL the server while it trains (no clean-up at all), start it again, resume from the Runs page."""
    page, runs, workspaces = browser_page, tmp_path / "runs", tmp_path / "ws"
    page.set_default_timeout(120_000)
    folder = copy_textile(tmp_path / "fabric", 10)
    port = free_port()
    app = start_app(runs, workspaces, port)
    base = f"http://127.0.0.1:{port}"
    try:
        token = visit_home(page, base)
        upload_folder(page, base, token, folder)
        page.goto(f"{base}/Train?ws={token}")
        exactly_as_set(page)  # every planned epoch runs: the resume must reach all 6
        epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
        epochs.fill("6")
        epochs.press("Enter")
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Start training").click()
        deadline = time.time() + 900
        while time.time() < deadline and not list(runs.glob("*/checkpoint.pt")):
            time.sleep(0.2)
        run = list(runs.glob("*/checkpoint.pt"))[0].parent
    finally:
        app.kill()  # SIGKILL: like pulling the plug on the laptop
        app.wait(timeout=30)
    assert (run / "best.pt").is_file() and (run / "checkpoint.pt").is_file()
    finished_epochs = sum('"EpochEnd"' in line for line in (run / "events.jsonl").read_text().splitlines())
    assert finished_epochs < 6, "the kill must come before the run's end"

    app = start_app(runs, workspaces, port)
    try:
        page.goto(f"{base}/Runs?ws={token}")
        # The runs table is drawn on a canvas; its cells are also in the page for screen readers.
        # A restarted server on a loaded machine (CI beside other work) took over 120 s once to list it.
        page.get_by_text("interrupted", exact=True).first.wait_for(state="attached", timeout=300_000)
        no_traceback(page)
        page.get_by_role("button", name="Resume training").click()
        page.get_by_text("Follow it on the Train page").click()
        page.get_by_text("Finished: best validation accuracy").wait_for(timeout=600_000)
        no_traceback(page)
        epochs_done = {int(m) for m in re.findall(r'"kind": "EpochEnd".*?"epoch": (\d+)',
                                                  (run / "events.jsonl").read_text())}
        assert epochs_done == set(range(1, 7)), "resumed from the checkpoint and ran to the planned end"
    finally:
        app.terminate()
        app.wait(timeout=30)
