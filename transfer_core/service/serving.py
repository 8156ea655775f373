"""A trained run as a prediction endpoint over HTTP, on Ray Serve: `python -m transfer_core serve RUN_DIR`.

    POST /predict   a picture's bytes (Content-Type image/*) or a multipart form (field `file`, one or
                    several pictures); ?threshold=0.8&top_k=3 as `predict`. Answers a JSON list, one object per
                    picture, exactly the lines `predict --json` prints (inference/folders.as_json).
    GET  /health    {"status": "ok", ...} once a replica has loaded the model
    GET  /docs      the OpenAPI page (FastAPI)

Ray Serve runs N replicas of the model (--replicas), each a process of its own, and spreads requests over
them; on a machine with a GPU or a Ray cluster the same deployment scales out. Here it starts a Ray cluster
inside this process (as the app does with TRANSFER_STUDIO_RAY_ADDRESS=local) that ends with it: Ctrl-C
shuts down the deployment, then Ray, and leaves no process behind.
"""
# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations (Request) at runtime.
import asyncio
import os
import signal
import socket
import threading
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from ray import serve

from transfer_core.core.i18n import _
from transfer_core.inference.folders import as_json
from transfer_core.inference.predict import answer, load_model
from transfer_core.runstore.runs import RunFolder
from transfer_core.service import rayjobs
from transfer_core.service.picture_requests import (
    FIELD,
    Limits,
    PictureRequestError,
    decode,
    form_pictures,
    kind_of,
    read_body,
)

APP_NAME = "transfer-studio-predict"
# /docs shows both ways of sending pictures; the handler reads the body itself (to enforce the size limit
# before parsing), so FastAPI cannot infer this from its signature.
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}

api = FastAPI(title="Transfer Studio prediction", version="1",
              description="Classify pictures with a run trained in Transfer Studio. The answers are those of "
                          "`python -m transfer_core predict RUN_DIR PICTURE --json`.")


async def _form_files(request: Request, body: bytes, limits: Limits) -> list[tuple[str | None, bytes]]:
    """(Defined before Predictor: the deployment captures what it uses when it is declared.)
    The `file` parts of a multipart body already read (and size-checked) by read_body."""
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=limits.max_pictures + 1,
                                                         max_part_size=limits.max_bytes)
    except HTTPException as exc:  # starlette's words for a malformed form or too many parts
        raise PictureRequestError(400, _("The form cannot be read: {why}").format(why=exc.detail)) from None
    files = [f for f in form.getlist(FIELD) if hasattr(f, "read")]
    return [(f.filename, await f.read()) for f in files]


@serve.deployment(ray_actor_options={"num_cpus": 0, "runtime_env": rayjobs.WORKER_ENV})
@serve.ingress(api)
class Predictor:
    """One replica: the run's model, loaded once, answering one request at a time (a second waits on the lock,
    so two requests never share the replica's cores)."""

    def __init__(self, run_dir: str, limits: Limits, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.model = load_model(run_dir, device="cpu")
        self.limits, self.lock = limits, threading.Lock()

    @api.get("/health")
    def health(self) -> dict:
        return {"status": "ok", "run": self.model.run.path.name, "classes": self.model.classes}

    @api.post("/predict", openapi_extra=_BODY_DOC)
    async def predict(self, request: Request, threshold: float = Query(0.0, ge=0.0, le=1.0),
                      top_k: int = Query(3, ge=1)) -> list[dict]:
        try:
            pictures = await self._pictures(request)
        except PictureRequestError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return await asyncio.to_thread(self._answer, pictures, threshold, top_k)

    async def _pictures(self, request: Request) -> list[tuple[str | None, object]]:
        kind = kind_of(request.headers.get("content-type"))
        body = await read_body(request.headers.get("content-length"), request.stream(), self.limits)
        if kind == "picture":
            return [(None, decode(None, body))]
        uploads = await _form_files(request, body, self.limits)
        return [(name, decode(name, data)) for name, data in form_pictures(uploads, self.limits)]

    def _answer(self, pictures: list, threshold: float, top_k: int) -> list[dict]:
        with self.lock:
            answers = answer(self.model, [image for _name, image in pictures], threshold=threshold, k=top_k)
        return [as_json(name, ans) for (name, _image), ans in zip(pictures, answers)]


def check_port(host: str, port: int) -> None:
    """A port already taken is said now, in words, rather than as a proxy that never starts."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ValueError(_("cannot listen on {host}:{port} ({why}): choose another with --port").format(
                host=host, port=port, why=exc.strerror or exc)) from None


def start(run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
          limits: Limits = Limits()) -> str:
    """Start Ray, then the deployment; returns its address once every replica has loaded the model."""
    if not RunFolder(run_dir).has_model():
        raise FileNotFoundError(_("{path} has no trained model yet (it needs best.pt and model.json).").format(
            path=run_dir))
    if replicas < 1:
        raise ValueError(_("--replicas must be 1 or more, not {n}").format(n=replicas))
    check_port(host, port)
    import ray

    if not ray.is_initialized():
        rayjobs.connect("local")
        # Again: Ray's core worker put its own SIGTERM handler in place, which aborts and leaves processes behind.
        _stop_on_signals()
    serve.start(http_options={"host": host, "port": port})
    threads = max(1, (os.cpu_count() or 1) // replicas)  # the machine's cores shared by the replicas
    app = Predictor.options(num_replicas=replicas).bind(str(Path(run_dir).resolve()), limits, threads)
    serve.run(app, name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


def stop() -> None:
    """The deployment, its proxy and controller, then Ray's own processes."""
    import ray

    if not ray.is_initialized():  # refused before Ray started (no model, port taken): nothing to stop
        return
    print(_("Stopping the server..."), flush=True)
    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def serve_until_stopped(run_dir: str | Path, **options) -> None:
    """start(), say where, wait for Ctrl-C (or SIGTERM), stop()."""
    _stop_on_signals()
    try:
        url = start(run_dir, **options)
        print(_("Serving {run} on {url}: POST pictures to {url}/predict, API docs on {url}/docs. Ctrl-C stops it.")
              .format(run=Path(run_dir).name, url=url), flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def _stop_on_signals() -> None:
    """`kill` stops it as cleanly as Ctrl-C; and Ctrl-C works even when started where SIGINT was ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
