"""How many pictures a second `python -m transfer_core serve` answers over HTTP, with 1 and 2 replicas, against
calling `predict` in-process (side by side in one run, on the same pictures).

    python bench/serve_load.py [--run RUN_FOLDER] [--requests 200] [--clients 4] [--time-cap 120]

Without --run, trains a tiny real run first (mobilenet_v2, frozen, 1 epoch, 60 demo pictures per class,
224 px). Bounded and local: each way answers at most --requests requests or stops at --time-cap seconds,
whichever comes first; the server listens on 127.0.0.1 only, on a free port, and is stopped with Ctrl-C's
signal after its turn. The ways:
  predict    in this process, one picture per call: load_model once, then answer() + as_json, one after another
  serve-1    the real server (a subprocess) with 1 replica; --clients threads each POST a picture's bytes and
             wait for the answer before sending the next
  serve-2    the same with 2 replicas (each gets half the cores)
Every served answer is compared with in-process predict's for the same picture. Prints a table, writes
bench/results/serve_load.json (rendered into the README by bench/readme_tables.py).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import code_version  # noqa: E402  (bench/ is this script's own folder)

from tests.test_e2e_browser import free_port  # noqa: E402
from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.data.datasets import demo_dataset_path  # noqa: E402
from transfer_core.inference.folders import as_json  # noqa: E402
from transfer_core.inference.predict import answer, load_model  # noqa: E402
from transfer_core.workflows.train import train  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "serve_load.json"
START_S = 240


def tiny_run(runs_dir: Path) -> Path:
    config = TrainConfig(data=str(demo_dataset_path()), freeze="all", epochs=1, max_images=60)
    return train(config, runs_dir=runs_dir).run_dir


def pictures(per_class: int = 10) -> list[bytes]:
    """Demo pictures the tiny run did not train on (the last of each class), as a client would send them."""
    root = demo_dataset_path()
    return [f.read_bytes() for c in sorted(p.name for p in root.iterdir() if p.is_dir())
            for f in sorted((root / c).glob("*.jpg"))[-per_class:]]


def timed(call, shots: list[bytes], requests: int, clients: int, cap: float) -> dict:
    """`call(picture) -> answer` from `clients` threads until `requests` are answered or `cap` seconds pass."""
    latencies, answers, lock, t0 = [], {}, threading.Lock(), time.perf_counter()
    counter = iter(range(requests))

    def client():
        while time.perf_counter() - t0 < cap:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            got = call(shots[i % len(shots)])
            with lock:
                latencies.append(time.perf_counter() - start)
                answers[i % len(shots)] = got

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    cuts = statistics.quantiles(latencies, n=20)
    return {"requests_done": len(latencies), "seconds": round(seconds, 2), "clients": clients,
            "requests_per_s": round(len(latencies) / seconds, 2), "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p95_ms": round(cuts[18] * 1000, 1), "answers": answers}


def in_process(run: Path, shots, requests: int, cap: float) -> dict:
    model = load_model(run)
    call = lambda data: as_json(None, answer(model, [data])[0])  # noqa: E731
    call(shots[0])  # the first call pays for lazy set-up; the server's first request does so before its turn too
    return timed(call, shots, requests, 1, cap)


def served(run: Path, replicas: int, shots, requests: int, clients: int, cap: float) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "transfer_core", "serve", str(run), "--port", str(port),
                               "--replicas", str(replicas)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        _wait(url, replicas, t0, server)
        started = time.perf_counter() - t0

        def call(data: bytes) -> dict:
            request = urllib.request.Request(url + "/predict", data=data, headers={"Content-Type": "image/jpeg"})
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())[0]

        for shot in shots[:clients * 2]:  # every replica has answered once before the clock starts
            call(shot)
        return {**timed(call, shots, requests, clients, cap), "start_seconds": round(started, 1)}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _wait(url: str, replicas: int, t0: float, server: subprocess.Popen) -> None:
    while time.perf_counter() - t0 < START_S:
        if server.poll() is not None:
            raise SystemExit(f"the server ended with code {server.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not answer within {START_S} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a trained run folder (default: train a tiny one first)")
    ap.add_argument("--requests", type=int, default=200, help="requests per way (at most)")
    ap.add_argument("--clients", type=int, default=4, help="client threads sending to the server at once")
    ap.add_argument("--time-cap", type=float, default=120, help="seconds per way (at most)")
    ap.add_argument("--out", type=Path, default=RESULT)
    a = ap.parse_args(argv)
    shots = pictures()
    with tempfile.TemporaryDirectory() as tmp:
        run = a.run or tiny_run(Path(tmp))
        ways = {"predict": in_process(run, shots, a.requests, a.time_cap)}
        for replicas in (1, 2):
            ways[f"serve-{replicas}"] = served(run, replicas, shots, a.requests, a.clients, a.time_cap)
            ways[f"serve-{replicas}"]["replicas"] = replicas
        desc = json.loads((run / "model.json").read_text())
    reference = ways["predict"].pop("answers")
    for name in ("serve-1", "serve-2"):
        got = ways[name].pop("answers")
        ways[name]["same_answers"] = sum(got[i]["answer"] == reference[i]["answer"] for i in got)
        ways[name]["compared"] = len(got)
        for key in ("requests_per_s", "p50_ms", "p95_ms"):
            ways[name][f"{key}_vs_predict"] = round(ways[name][key] / ways["predict"][key], 2)
    result = {"kind": "serve-load", "date": date.today().isoformat(),
              "command": "python bench/serve_load.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
              "commit": code_version(), "cpu_cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
              "backbone": desc.get("backbone"), "pictures": len(shots), "ways": ways}
    for name, w in ways.items():
        ratio = f"  x{w['requests_per_s_vs_predict']} req/s of predict" if name != "predict" else ""
        print(f"{name:>8}: {w['requests_done']} requests in {w['seconds']} s, {w['requests_per_s']} req/s, "
              f"p50 {w['p50_ms']} ms, p95 {w['p95_ms']} ms{ratio}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "ways"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
