"""Private by default and the teacher's view, in real browsers on one real server (issue 29): Ana trains on her
own pictures; Ben, on his own link, sees neither her run nor her pictures until she shares the run, and then
only the run (her pictures once she ticks that box too); the teacher, with the server's key, sees both
workspaces by name and stops Ben's training. Screenshots: assets/screenshots/privacy-*.png (the README)."""
from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import copy_textile, textile_root
from tests.test_e2e_browser import CHROMIUM, VIEW, app_running, no_traceback, one_click_training, shot, upload_folder, \
    visit_home

pytestmark = [pytest.mark.browser, pytest.mark.slow]
KEY = "class-7b-secret-key"
TIMEOUT = 180_000  # ms: a shared, loaded machine


def main_images(page) -> int:
    """Pictures drawn in the page's main pane (not the sidebar's icons)."""
    return page.locator("[data-testid=stMain] [data-testid=stImage] img").count()


def test_a_run_stays_private_until_shared_and_the_teacher_sees_all_and_stops_a_job(tmp_path):
    if not shutil.which(CHROMIUM) and not CHROMIUM.startswith("/"):
        pytest.fail("Debian's chromium is not installed: scripts/test.sh installs it with apt")
    from playwright.sync_api import sync_playwright

    pictures = copy_textile(tmp_path / "anas-cups", 8)
    for i, picture in enumerate(sorted((pictures / "global").iterdir())):  # some labels wrong: the model is
        if i % 2:                                                           # sure to get pictures wrong
            picture.rename(pictures / "nominal" / f"moved-{picture.name}")
    env = {"TRANSFER_STUDIO_RUNS": str(tmp_path / "runs"), "TRANSFER_STUDIO_WORKSPACES": str(tmp_path / "workspaces"),
           "TRANSFER_STUDIO_TEACHER_KEY": KEY}
    with app_running(env, tmp_path / "server.log") as (base, _proc), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        ana, ben, teacher = (browser.new_context(viewport=VIEW).new_page() for _ in range(3))
        for page in (ana, ben, teacher):
            page.set_default_timeout(TIMEOUT)

        try:
            a, b = visit_home(ana, base), visit_home(ben, base)
            upload_folder(ana, base, a, pictures)
            one_click_training(ana, base, a, "Upload: anas-cups")

            # Ben: nothing of Ana's anywhere.
            for name in ("Evaluate", "Predict"):
                ben.goto(f"{base}/{name}?ws={b}")
                ben.get_by_text("No trained model yet").wait_for()
            ben.goto(f"{base}/Runs?ws={b}")
            ben.get_by_text("No runs yet").wait_for()

            # Ana names herself and shares the run (not its pictures).
            ana.goto(f"{base}/Runs?ws={a}")
            name = ana.get_by_role("textbox", name="Your name on this server")
            name.fill("Ana")
            name.press("Enter")
            ana.get_by_text("Only you see this run").wait_for()
            ana.get_by_text("Share this run with everyone on this server").click()
            ana.get_by_text("Everyone on this server sees this run, but not its pictures.").wait_for()
            shot(ana, "privacy-share")

            ben.goto(f"{base}/Evaluate?ws={b}")
            ben.get_by_text("shares it without its pictures, so they are not shown").wait_for()
            box = ben.locator("[data-testid=stSelectbox]").first
            picked = box.inner_text() + " | " + " ".join(i.input_value() for i in box.locator("input").all())
            assert "shared by Ana · " in picked, picked
            assert main_images(ben) == 0
            ben.goto(f"{base}/Predict?ws={b}")
            ben.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(
                str(next((textile_root() / "local").iterdir())))
            ben.get_by_text(re.compile(r"\(\d+% sure\)|Not sure|does not look like")).first.wait_for()
            ben.get_by_text("someone else's pictures").wait_for()
            assert ben.get_by_text("This is actually").count() == 0, "a correction of Ana's pictures is not offered"
            no_traceback(ben)

            ana.get_by_text("Share its pictures too").click()
            ana.get_by_text("Everyone on this server sees this run and its pictures.").wait_for()
            ben.goto(f"{base}/Evaluate?ws={b}")
            ben.get_by_text(re.compile(r"is \w+, predicted \w+")).first.wait_for()
            assert main_images(ben) >= 1

            # Ben starts training on the demo pictures; the teacher sees both workspaces and stops it.
            ben.goto(f"{base}/Train?ws={b}")
            ben.get_by_role("button", name="Use the demo pictures").click()
            ben.get_by_role("button", name="Start training").click()
            teacher.goto(f"{base}/Teacher?teacher={KEY}x")
            teacher.get_by_text("That teacher key is not right.").wait_for()
            assert teacher.get_by_text("Ana").count() == 0
            teacher.goto(f"{base}/Teacher?teacher={KEY}")
            teacher.get_by_text("Workspaces (2)").wait_for()
            assert KEY not in teacher.url, "the key leaves the address bar once checked"
            teacher.get_by_text(re.compile(r"^Unnamed, since .*: mobilenet_v2, training now")).wait_for()
            assert teacher.get_by_text(a).count() == teacher.get_by_text(b).count() == 0
            shot(teacher, "privacy-teacher")
            teacher.get_by_role("button", name="Stop").first.click()
            teacher.get_by_text("job: it ends within a moment").wait_for()
            teacher.get_by_text("Nothing is training or waiting.").wait_for()  # the queue redraws by itself
            ben.get_by_text(re.compile(r"Stopped after \d+ epoch\(s\)")).wait_for()
            no_traceback(teacher)
        except BaseException:
            for name, page in (("ana", ana), ("ben", ben), ("teacher", teacher)):  # what each saw, for the log
                page.screenshot(path=str(tmp_path / f"failed-{name}.png"), full_page=True)
            print(f"screenshots of the failure: {tmp_path}/failed-*.png")
            raise
        browser.close()
