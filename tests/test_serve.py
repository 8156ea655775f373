"""`python -m transfer_core serve`: the real server (Ray Serve, a real trained run, real textile pictures) answers
100 requests, raw bytes and multipart forms, as `predict --json` answers the same pictures; says what is
wrong with a bad request in a 4xx; and Ctrl-C leaves no Ray process behind."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import copy_textile

from tests.test_e2e_browser import free_port
from transfer_core.core.config import TrainConfig
from transfer_core.service.picture_requests import FIELD
from transfer_core.service.serve_examples import python_example
from transfer_core.workflows.train import train

REQUESTS = 100
START_S = 150  # Ray, its Serve controller and proxy, a replica loading torch: ~30 s on a busy 2-core machine


@pytest.fixture(scope="module")
def run_and_pictures(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    result = train(TrainConfig(schedule="fixed", data=str(copy_textile(tmp / "data", 20)), freeze="all",
                               image_size=96, batch_size=16, epochs=1, seed=0), runs_dir=tmp / "runs")
    assert result.final.kind == "RunFinished", result.final
    return result.run_dir, sorted(copy_textile(tmp / "unseen", 4, offset=300).glob("*/*.jpg"))


def cli_predict(run: Path, pictures: list[Path], *options: str) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "transfer_core", "predict", str(run), *map(str, pictures), "--json",
                          *options], capture_output=True, text=True, check=True, timeout=300).stdout
    return {label(Path(r["image"])): r for r in map(json.loads, out.splitlines())}


def label(picture: Path) -> str:
    """A unique name for each picture (the classes' folders hold files of the same names)."""
    return f"{picture.parent.name}-{picture.name}"


def post(url: str, body: bytes, content_type: str) -> tuple[int, object]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def multipart(files: list[tuple[str, bytes]], field: str = FIELD) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
             f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def descendants(pid: int) -> set[int]:
    """Every process started below `pid` (Ray's gcs_server, raylet, agents, workers), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in _state(p)}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def wait_healthy(url: str, server: subprocess.Popen) -> dict:
    deadline = time.time() + START_S
    while time.time() < deadline:
        assert server.poll() is None, server.stdout.read()
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"the server did not answer /health within {START_S} s")


def same_answer(served: dict, cli: dict) -> None:
    assert {k: v for k, v in served.items() if k not in ("image", "top", "novelty")} == \
        {k: v for k, v in cli.items() if k not in ("image", "top", "novelty")}
    assert [t["class"] for t in served["top"]] == [t["class"] for t in cli["top"]]
    # One picture per batch here, a folder's worth there, other thread counts: the last float digits may differ.
    assert served["top"][0]["probability"] == pytest.approx(cli["top"][0]["probability"], abs=1e-4)
    assert served["novelty"] == pytest.approx(cli["novelty"], abs=1e-3)


@pytest.mark.slow
def test_serve_answers_as_predict_and_refuses_bad_requests(run_and_pictures):
    run, pictures = run_and_pictures
    expected = cli_predict(run, pictures)
    strict = cli_predict(run, pictures, "--threshold", "0.9", "--top-k", "1")
    assert len(expected) == len(pictures) == 12
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "transfer_core", "serve", str(run), "--port", str(port),
                               "--max-mb", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    ray_processes: set[int] = set()
    try:
        health = wait_healthy(url, server)
        assert health["status"] == "ok" and health["classes"] == ["global", "local", "nominal"]
        ray_processes = descendants(server.pid)
        assert len(ray_processes) >= 3  # gcs_server, raylet, the replica...: else the check at the end is idle
        answered = 0
        for i in range(REQUESTS):
            picture = pictures[i % len(pictures)]
            if i % 2 == 0:  # raw bytes: one answer, no name
                status, body = post(f"{url}/predict", picture.read_bytes(), "image/jpeg")
                assert status == 200, body
                assert [r["image"] for r in body] == [None]
                same_answer(body[0], expected[label(picture)])
            else:  # a form with one or three pictures, answered in their order
                chosen = [pictures[(i + j) % len(pictures)] for j in range(1 if i % 4 == 1 else 3)]
                status, body = post(f"{url}/predict", *multipart([(label(p), p.read_bytes()) for p in chosen]))
                assert status == 200, body
                assert [r["image"] for r in body] == [label(p) for p in chosen]
                for record, p in zip(body, chosen):
                    same_answer(record, expected[label(p)])
            answered += 1
        assert answered == REQUESTS
        status, body = post(f"{url}/predict?threshold=0.9&top_k=1", pictures[0].read_bytes(), "image/png")
        assert status == 200 and len(body[0]["top"]) == 1
        same_answer(body[0], strict[label(pictures[0])])

        # The Python example the Runs page shows works as printed.
        example = subprocess.run([sys.executable, "-c", python_example(port, str(pictures[0]))], capture_output=True,
                                 text=True, timeout=120)
        assert example.stdout.startswith(expected[label(pictures[0])]["answer"] + " [{"), example.stderr

        # Bad requests: a 4xx whose message says what is wrong, never a server error.
        readme = (Path(__file__).parents[1] / "README.md").read_bytes()[:5000]
        bad = {"not a picture": (readme, "image/jpeg", 415, "not an image"),
               "not a picture type": (pictures[0].read_bytes(), "text/plain", 415, "text/plain"),
               "empty": (b"", "image/jpeg", 400, "empty"),
               "too big": (os.urandom(1_200_000), "image/jpeg", 413, "at most 1 MB"),
               "form without pictures": (*multipart([("a.jpg", b"x")], field="photo"), 400, FIELD),
               "a damaged picture in a form": (*multipart([("fine.jpg", pictures[0].read_bytes()),
                                                           ("cut.jpg", pictures[1].read_bytes()[:300])]), 415,
                                               "cut.jpg")}
        for what, (data, content_type, code, words) in bad.items():
            status, body = post(f"{url}/predict", data, content_type)
            assert status == code, (what, body)
            assert words in body["detail"], (what, body)
        status, body = post(f"{url}/predict?threshold=2", pictures[0].read_bytes(), "image/jpeg")
        assert status == 422, body

        with urllib.request.urlopen(url + "/docs", timeout=30) as response:
            assert "swagger" in response.read().decode().lower()
        with urllib.request.urlopen(url + "/openapi.json", timeout=30) as response:
            spec = json.loads(response.read())
        assert {"/predict", "/health"} <= set(spec["paths"])
        assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    finally:
        ray_processes |= descendants(server.pid)
        server.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            output, _ = server.communicate(timeout=90)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
    assert server.returncode == 0, output
    assert "Stopping the server" in output
    deadline = time.time() + 30
    while alive(ray_processes) and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(ray_processes), [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in alive(ray_processes)]
