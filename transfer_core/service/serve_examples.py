"""How to call a run over HTTP (`python -m transfer_core serve`): the commands the Runs page shows, kept here so
the page and the tests use the same text (tests/test_serve.py runs the Python example against the real server).

Pure strings: importing this does not import Ray or FastAPI, so the app's pages stay quick.
"""
from __future__ import annotations

import shlex
from pathlib import Path

DEFAULT_PORT = 8000


def start_command(run_dir: str | Path, port: int = DEFAULT_PORT) -> str:
    return f"python -m transfer_core serve {shlex.quote(str(run_dir))} --port {port}"


def curl_example(port: int = DEFAULT_PORT, picture: str = "photo.jpg") -> str:
    url = f"http://127.0.0.1:{port}/predict"
    return (f"curl -X POST -H 'Content-Type: image/jpeg' --data-binary @{picture} {url}\n"
            f"curl -F file=@{picture} -F file=@another.jpg '{url}?threshold=0.8'")


def python_example(port: int = DEFAULT_PORT, picture: str = "photo.jpg") -> str:
    return (f"import requests\n\n"
            f"with open({picture!r}, 'rb') as f:\n"
            f"    answers = requests.post('http://127.0.0.1:{port}/predict', data=f,\n"
            f"                            headers={{'Content-Type': 'image/jpeg'}}).json()\n"
            f"print(answers[0]['answer'], answers[0]['top'])\n")
