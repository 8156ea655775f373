"""Load test: many browser sessions watching one live training run, on the real server, in real Chromium.

    python bench/load_test.py [--watchers 10] [--per-class 80] [--epochs 3] [--no-pin] [--json out.json]

One run, side by side: the same training job is started twice through the app, first with nobody watching,
then with N more browser sessions on the Train page (a teacher's class following one run through the
shared workspace link). It prints
  - how late each watcher sees each progress update: the time a batch's progress first shows in a tab minus
    the time the engine recorded it (events.jsonl), as median / 95th percentile / worst;
  - how many distinct updates each watcher saw;
  - training throughput (images/s, from the engine's own epoch events) without and with the watchers, and
    their ratio.
In a classroom every browser runs on its own computer. Here they share the server's machine, so by
default the server (and its training) is pinned to one half of the cores and Chromium to the other: the
ratio then shows what serving N watchers costs the server, not what drawing N pages costs this machine.
`--no-pin` lets them share all cores.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
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
PROGRESS_BYTES = re.compile(PROGRESS.pattern.encode())  # the same words inside the server's messages
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-renderer-backgrounding", "--disable-background-timer-throttling"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, cores: set[int]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TRANSFER_STUDIO_RUNS": str(tmp / "runs"), "TRANSFER_STUDIO_WORKSPACES": str(tmp / "ws")}
    # The server dumps every thread's stack on SIGUSR1 into its log, so a stuck page can be explained.
    launcher = ("import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
                "from streamlit.web.cli import main; sys.argv[0] = 'streamlit'; main()")
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", launcher, "run", "app.py", "--server.headless=true",
                             f"--server.port={port}", "--browser.gatherUsageStats=false"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: os.sched_setaffinity(0, cores))
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


class Arrivals:
    """When each progress line first reached a browser over its websocket, by the browser's own network
    clock (Chrome DevTools Protocol): what the server delivers, before the page has drawn it. Drawing
    comes on top; here ten tabs share one core for that, a classroom's laptops would not."""

    def __init__(self, page):
        self.seen: dict[tuple[int, int], float] = {}
        self.offset: float | None = None  # wall clock minus the network clock, from the handshake
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.webSocketWillSendHandshakeRequest", self._handshake)
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.send("Network.enable")

    def _handshake(self, event: dict) -> None:
        self.offset = event["wallTime"] - event["timestamp"]

    def _frame(self, event: dict) -> None:
        response = event["response"]
        if self.offset is None:
            return
        raw = response["payloadData"]
        data = base64.b64decode(raw) if response.get("opcode") == 2 else raw.encode()
        for match in PROGRESS_BYTES.finditer(data):
            self.seen.setdefault((int(match.group(1)), int(match.group(2))), event["timestamp"] + self.offset)


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
        shot = Path(tempfile.gettempdir()) / f"load_test_failure_{os.getpid()}.png"
        page.screenshot(path=str(shot))  # what it showed instead
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


def split_cores(pin: bool) -> tuple[set[int], set[int]]:
    """(server cores, browser cores): with `pin`, half the cores each, so the browsers' drawing does not
    count as the server's cost (in a classroom every browser runs on its own computer)."""
    cores = sorted(os.sched_getaffinity(0))
    if not pin or len(cores) < 2:
        return set(cores), set(cores)
    half = len(cores) // 2
    return set(cores[:half]), set(cores[half:])


def summary(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"median": None, "p95": None, "max": None, "samples": 0}
    return {"median": round(statistics.median(values), 2), "p95": round(values[int(0.95 * (len(values) - 1))], 2),
            "max": round(values[-1], 2), "samples": len(values)}


def measure(watchers: int, per_class: int, epochs: int, pin: bool = True) -> dict:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="load_test_"))
    server_cores, browser_cores = split_cores(pin)
    proc, base = start_server(tmp, server_cores)
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, browser_cores)  # Chromium and this script's polling inherit it
    try:
        folder = copy_textile(tmp / "fabric", per_class)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=ARGS)
            starter = new_page(browser)
            token = choose_data(starter, base, folder)
            open_train(starter, base, token, epochs)
            alone, _ = run_and_watch(starter, [], tmp / "runs")
            pages = [new_page(browser) for _ in range(watchers)]
            arrivals = [Arrivals(page) for page in pages]
            for i, page in enumerate(pages, 1):
                open_train(page, base, token, epochs)
                print(f"watcher {i} of {watchers} is on the Train page", flush=True)
            open_train(starter, base, token, epochs)
            watched, seen = run_and_watch(starter, pages, tmp / "runs")
            browser.close()
        ev_alone, ev_watched = engine_events(alone), engine_events(watched)
        lat = sorted(latencies(ev_watched, seen))
        net = sorted(latencies(ev_watched, [a.seen for a in arrivals]))
        return {"watchers": watchers, "images": per_class * 3, "epochs": epochs,
                "server_cores": sorted(server_cores), "browser_cores": sorted(browser_cores),
                "images_per_sec_alone": round(throughput(ev_alone), 2),
                "images_per_sec_watched": round(throughput(ev_watched), 2),
                "throughput_ratio": round(throughput(ev_watched) / max(throughput(ev_alone), 1e-9), 3),
                "updates_per_watcher": [len(s) for s in seen],
                "progress_updates_recorded": len({(e["epoch"], e["step"]) for e in ev_watched
                                                  if e["kind"] == "Progress" and e["phase"] == "train"}),
                "updates_arrived_per_watcher": [len(a.seen) for a in arrivals],
                "latency_s": summary(lat), "arrival_latency_s": summary(net)}
    except BaseException:
        proc.send_signal(signal.SIGUSR1)  # every server thread's stack, for the log kept below
        time.sleep(2)
        print(f"failed; the server log and screenshots are kept in {tmp}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.sched_setaffinity(0, mine)
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--watchers", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=80, help="real textile images per class (3 classes)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="let server and browsers share all cores (default: server and browsers on separate halves)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    result = measure(args.watchers, args.per_class, args.epochs, args.pin)
    print(f"{result['watchers']} watchers, {result['images']} images, {result['epochs']} epochs; "
          f"server on cores {result['server_cores']}, browsers on {result['browser_cores']}")
    print(f"training throughput: {result['images_per_sec_alone']} images/s alone, "
          f"{result['images_per_sec_watched']} watched: ratio {result['throughput_ratio']}")
    net, lat = result["arrival_latency_s"], result["latency_s"]
    print(f"update reached the browser (websocket): median {net['median']} s, p95 {net['p95']} s, max {net['max']} s "
          f"({net['samples']} samples); updates arrived per watcher {result['updates_arrived_per_watcher']} "
          f"of {result['progress_updates_recorded']} recorded")
    print(f"update shown on screen: median {lat['median']} s, p95 {lat['p95']} s, max {lat['max']} s "
          f"({lat['samples']} samples); updates seen per watcher {result['updates_per_watcher']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
