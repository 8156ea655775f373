"""Load test: many browser sessions watching one live training run, on the real server, in real Chromium.

    python bench/load_test.py [--watchers 10] [--per-class 80] [--epochs 3] [--json out.json]

One run, side by side: the same training job is started twice through the app, first with nobody watching,
then with N more browser sessions on the Train page (a teacher's class following one run through the
shared workspace link). It prints
  - how late each watcher sees each progress update: the time a batch's progress first shows in a tab minus
    the time the engine recorded it (events.jsonl), as median / 95th percentile / worst;
  - how many distinct updates each watcher saw;
  - training throughput (images/s, from the engine's own epoch events) without and with the watchers, and
    their ratio.
The browsers run on the same machine as the server here, so the ratio includes the cost of rendering
N live pages on the same cores: on a real classroom network the clients are other machines.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import copy_textile  # noqa: E402  (the same real images the tests use)
from tests.test_e2e_browser import upload_folder, visit_home  # noqa: E402  (the same steps a person takes)

PROGRESS = re.compile(r"Epoch (\d+) of \d+ · batch (\d+) of \d+")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-renderer-backgrounding", "--disable-background-timer-throttling"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TRANSFER_STUDIO_RUNS": str(tmp / "runs"), "TRANSFER_STUDIO_WORKSPACES": str(tmp / "ws")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true",
                             f"--server.port={port}", "--browser.gatherUsageStats=false"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError("the app did not start")


def new_page(browser):
    """A separate browser session (its own cookies and websocket), patient with a busy machine."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(120_000)
    page.set_default_navigation_timeout(120_000)
    return page


def choose_data(page, base: str, folder: Path) -> str:
    token = visit_home(page, base)
    upload_folder(page, base, token, folder)
    page.get_by_text("A few pictures from each class").wait_for()
    return token


def open_train(page, base: str, token: str, epochs: int) -> None:
    page.goto(f"{base}/Train?ws={token}")
    try:
        page.get_by_role("button", name="Start training").wait_for()
    except Exception:
        page.screenshot(path=str(Path(tempfile.gettempdir()) / "load_test_failure.png"))  # what it showed instead
        raise
    epochs_box = page.get_by_role("spinbutton", name="Epochs", exact=True)
    epochs_box.fill(str(epochs))
    epochs_box.press("Enter")
    page.wait_for_timeout(1000)


def shown_progress(page) -> tuple[int, int] | None:
    loc = page.get_by_text(PROGRESS)
    if not loc.count():
        return None
    try:
        text = loc.first.inner_text(timeout=2000)
    except Exception:  # the line was redrawn between finding and reading it: no reading this round
        return None
    match = PROGRESS.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def run_and_watch(starter, watchers, runs_dir: Path, timeout: float = 1200) -> tuple[Path, dict]:
    """Start a run from `starter`; until it ends, note when each watcher first shows each (epoch, batch)."""
    before = set(runs_dir.glob("*")) if runs_dir.is_dir() else set()
    starter.get_by_role("button", name="Start training").click()
    seen: list[dict] = [{} for _ in watchers]
    deadline = time.time() + timeout
    while time.time() < deadline:
        for i, page in enumerate(watchers):
            key = shown_progress(page)
            if key is not None and key not in seen[i]:
                seen[i][key] = time.time()
        if starter.get_by_text(re.compile("Finished: best validation accuracy|Training failed")).count():
            break
        time.sleep(0.1)
    run = next(iter(set(runs_dir.glob("*")) - before))
    return run, seen


def engine_events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]


def throughput(events: list[dict]) -> float:
    rates = [e["images_per_sec"] for e in events if e["kind"] == "EpochEnd"]
    return statistics.mean(rates) if rates else 0.0


def latencies(events: list[dict], seen: list[dict]) -> list[float]:
    """Seconds from the engine recording a batch's progress to a watcher first showing it."""
    emitted = {}
    for e in events:
        if e["kind"] == "Progress" and e["phase"] == "train":
            emitted.setdefault((e["epoch"], e["step"]), e["time"])
    return [t - emitted[k] for s in seen for k, t in s.items() if k in emitted]


def measure(watchers: int, per_class: int, epochs: int) -> dict:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="load_test_"))
    proc, base = start_server(tmp)
    try:
        folder = copy_textile(tmp / "fabric", per_class)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=ARGS)
            starter = new_page(browser)
            token = choose_data(starter, base, folder)
            open_train(starter, base, token, epochs)
            alone, _ = run_and_watch(starter, [], tmp / "runs")
            pages = [new_page(browser) for _ in range(watchers)]
            for page in pages:
                open_train(page, base, token, epochs)
            open_train(starter, base, token, epochs)
            watched, seen = run_and_watch(starter, pages, tmp / "runs")
            browser.close()
        ev_alone, ev_watched = engine_events(alone), engine_events(watched)
        lat = sorted(latencies(ev_watched, seen))
        return {"watchers": watchers, "images": per_class * 3, "epochs": epochs,
                "images_per_sec_alone": round(throughput(ev_alone), 2),
                "images_per_sec_watched": round(throughput(ev_watched), 2),
                "throughput_ratio": round(throughput(ev_watched) / max(throughput(ev_alone), 1e-9), 3),
                "updates_per_watcher": [len(s) for s in seen],
                "progress_updates_recorded": len({(e["epoch"], e["step"]) for e in ev_watched
                                                  if e["kind"] == "Progress" and e["phase"] == "train"}),
                "latency_s": {"median": round(statistics.median(lat), 2) if lat else None,
                              "p95": round(lat[int(0.95 * (len(lat) - 1))], 2) if lat else None,
                              "max": round(lat[-1], 2) if lat else None, "samples": len(lat)}}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--watchers", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=80, help="real textile images per class (3 classes)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    result = measure(args.watchers, args.per_class, args.epochs)
    print(f"{result['watchers']} watchers, {result['images']} images, {result['epochs']} epochs")
    print(f"training throughput: {result['images_per_sec_alone']} images/s alone, "
          f"{result['images_per_sec_watched']} watched: ratio {result['throughput_ratio']}")
    lat = result["latency_s"]
    print(f"update latency: median {lat['median']} s, p95 {lat['p95']} s, max {lat['max']} s "
          f"({lat['samples']} samples); updates seen per watcher {result['updates_per_watcher']} "
          f"of {result['progress_updates_recorded']} recorded")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
