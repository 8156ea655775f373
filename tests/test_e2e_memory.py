"""A run that needs more memory than its process may have, in the real app and real Chromium: it ends as
interrupted, with words, while another person's session on the same server keeps working.

The server's operator caps each run's address space (TRANSFER_STUDIO_JOB_MEMORY_LIMIT_MB, RLIMIT_AS in the
run's child process: the kernel's OOM killer itself cannot be called on a shared test machine) and sets a
memory budget far above it (TRANSFER_STUDIO_MEMORY_MB), so the engine tries to hold every decoded picture in
memory. The cap is the address space a child needs once the engine is imported (measured here, with a
real tiny run) plus 250 MB: the demo's 1,600 training pictures at 288 px are 520 MB decoded."""
from __future__ import annotations

import re

import pytest

from tests.conftest import copy_textile
from tests.test_e2e_browser import (
    app_running,
    browser_page,  # noqa: F401 - a fixture this test uses
    no_traceback,
    visit_home,
)
from transfer_core.core.config import TrainConfig
from transfer_core.service.childjobs import JOB_LIMIT_ENV, ChildProcess
from transfer_core.service.jobs import JobQueue
from transfer_core.training.callbacks import Callback

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HEADROOM_MB = 250


class AddressSpace(Callback):
    """In the child: its address space (VmSize) when the pictures are about to load."""

    def __init__(self, out):
        self.out = out

    def before_fit(self, trainer):
        size = next(line for line in open("/proc/self/status") if line.startswith("VmSize:"))
        self.out.write_text(str(int(size.split()[1]) // 1024))


def child_baseline_mb(tmp_path) -> int:
    out = tmp_path / "vmsize"
    queue = JobQueue(ChildProcess())
    job = queue.submit(TrainConfig(data=str(copy_textile(tmp_path / "probe", 4)), schedule="fixed", epochs=1,
                                   image_size=96, freeze="all"), tmp_path / "probe-runs", callbacks=[AddressSpace(out)])
    assert queue.wait(job.id, timeout=600)
    return int(out.read_text())


def test_a_run_out_of_memory_is_interrupted_in_words_and_the_app_serves_everyone_else(browser_page, tmp_path):
    limit = child_baseline_mb(tmp_path) + HEADROOM_MB
    env = {"TRANSFER_STUDIO_RUNS": str(tmp_path / "runs"), "TRANSFER_STUDIO_WORKSPACES": str(tmp_path / "ws"),
           "TRANSFER_STUDIO_MEMORY_MB": "100000", JOB_LIMIT_ENV: str(limit)}
    with app_running(env, tmp_path / "server.log") as (base, proc):
        page = browser_page
        page.set_default_timeout(180_000)
        token = visit_home(page, base)
        page.goto(f"{base}/Data?ws={token}")
        page.get_by_role("button", name="Use the demo pictures").click()
        page.get_by_text("Using: Demo: textile defects").wait_for()  # saved before leaving, not lost in the goto
        page.goto(f"{base}/Train?ws={token}")
        page.get_by_text("Pictures: Demo: textile defects").wait_for()
        page.get_by_text("Advanced settings").click()
        slider = page.get_by_role("slider", name="Image size (pixels)")
        slider.focus()
        slider.press("End")  # the largest size offered, 288 px
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"ran out of memory at 1,800 pictures")).wait_for(timeout=600_000)
        page.get_by_text("100,000 MB").first.wait_for()
        no_traceback(page)
        assert proc.poll() is None, "the server is still running"

        # Another person, on the same server: their pages work, and the run is listed as interrupted for its owner.
        other = page.context.browser.new_page()
        other.set_default_timeout(120_000)
        visit_home(other, base)
        no_traceback(other)
        other.close()
        page.goto(f"{base}/Runs?ws={token}")
        page.get_by_text("interrupted", exact=True).first.wait_for(state="attached")
        no_traceback(page)
