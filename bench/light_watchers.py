"""Watchers that speak Streamlit's own websocket protocol instead of drawing pages in Chromium.

A classroom's watchers each run on their own laptop; on the 2-core test machine ten real Chromium tabs
share one core and fall behind on drawing, which says nothing about the server. These clients do what a
browser tab does on the wire: open a session on a page with the workspace link's query string, and
re-request each auto-refreshing fragment at the interval the server asks for (in Streamlit the browser
drives those reruns). They note when each progress line first arrives. They draw nothing.
"""
from __future__ import annotations

import asyncio
import re
import threading
import time

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

PROGRESS_BYTES = re.compile("Epoch (\\d+) of \\d+ · batch (\\d+) of \\d+".encode())


class LightWatcher:
    def __init__(self, base: str, page: str, query: str):
        self.url = base.replace("http", "ws", 1) + "/_stcore/stream"
        self.page, self.query = page, query
        self.seen: dict[tuple[int, int], float] = {}
        self.messages = 0
        self.page_hash = ""

    async def run(self, stop: asyncio.Event) -> None:
        async with websockets.connect(self.url, subprotocols=["streamlit"], max_size=None,
                                      origin=self.url.replace("ws", "http", 1).rsplit("/_stcore", 1)[0]) as ws:
            await self._rerun(ws)
            timers: dict[str, asyncio.Task] = {}
            reader = asyncio.create_task(self._read(ws, timers))
            await stop.wait()
            reader.cancel()
            for task in timers.values():
                task.cancel()

    async def _read(self, ws, timers: dict) -> None:
        async for raw in ws:
            arrived = time.time()
            self.messages += 1
            for match in PROGRESS_BYTES.finditer(raw):
                self.seen.setdefault((int(match.group(1)), int(match.group(2))), arrived)
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = msg.new_session.page_script_hash
            elif kind == "auto_rerun" and msg.auto_rerun.fragment_id not in timers:
                timers[msg.auto_rerun.fragment_id] = asyncio.create_task(
                    self._every(ws, msg.auto_rerun.interval, msg.auto_rerun.fragment_id))

    async def _every(self, ws, interval: float, fragment_id: str) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._rerun(ws, fragment_id)

    async def _rerun(self, ws, fragment_id: str = "") -> None:
        back = BackMsg()
        state = back.rerun_script
        state.query_string = self.query
        state.page_name = self.page
        state.page_script_hash = self.page_hash
        if fragment_id:
            state.fragment_id, state.is_auto_rerun = fragment_id, True
        await ws.send(back.SerializeToString())


class LightWatchers:
    """N light watchers on one event loop in a background thread: start(), then stop() when done."""

    def __init__(self, base: str, page: str, query: str, n: int):
        self.watchers = [LightWatcher(base, page, query) for _ in range(n)]
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)
        self._ready = threading.Event()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._ready.set()
        await asyncio.gather(*(w.run(self._stop) for w in self.watchers))

    def start(self) -> "LightWatchers":
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
