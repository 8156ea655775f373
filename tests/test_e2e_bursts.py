"""A class set made of bursts, in real browsers (issue 28): the validation figure the Train page shows is honest,
and Live does not call new pictures of the trained kind "unfamiliar".

A classroom films each object as a burst of near-identical frames (the app names them burst-<time>-NN.jpg).
Split picture by picture, frames of one burst land on both sides and the page says ~100% on validation while
unseen pictures score far less (issue 28: 100% against 0.629). Here 3 classes x 8 bursts x 5 frames of real
demo fabric (small shifts, brightness changes) are uploaded through the Data page's own classes; the page must
say that the 24 bursts are kept together; one click trains; the figure the page shows must agree, within its
95% range, with the model's accuracy on real fabric pictures nobody uploaded; and no burst may straddle
training and validation. Then Live films new fabric (at most 2 of 10 pictures unfamiliar) and noise (flagged).

Checked to fail when the split lets near-copies across (nearcopies.group_ids returning one group per picture:
the Data page's note is missing; with the note kept but the split made picture by picture, the page showed
91.7% on validation against 64.2% on the held-out pictures, and 21 bursts straddled the split). The Live part
is not that sharp on these pictures: the threshold as it was before issue 28 (the 95th percentile of the
validation pictures alone) flagged none of the new fabric here, even with the split made picture by picture
(1 of 10); it fails when the check flags pictures of the trained kind wholesale, or misses noise."""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tests.conftest import textile_root
from tests.live_frames import camera_frame, write_y4m
from tests.test_e2e_browser import CHROMIUM, free_port, no_traceback, shot, start_app, visit_home
from tests.test_e2e_classroom import class_count, open_camera_browser, own_classes, start_camera
from transfer_core.core.metrics import wilson_interval
from transfer_core.data.nearcopies import burst_of
from transfer_core.inference.predict import answer, load_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CLASSES = ("global", "local", "nominal")  # the demo's classes, made in the app under the same names
BURSTS, FRAMES = 8, 5  # per class: 8 objects filmed, 5 frames each (the app's smallest burst): 40 pictures
HELD_OUT = 40  # real pictures per class nobody uploaded, to check the shown figure against
FIRST_UNSEEN = 300  # where the held-out pictures start among each class's demo pictures (bursts: from 0)
SMALL = 128  # image size chosen under Advanced: the one click as it is, faster
NEW_ON_LIVE, MAX_UNFAMILIAR = 10, 2  # new fabric filmed on Live; how many of them may be flagged
SHOWN = re.compile(r"Finished: best validation accuracy (\d+(?:\.\d+)?)%")
READOUT = "[data-testid=stMarkdownContainer] h3"  # Live's answer beside the video: a class, Not sure, Unfamiliar
ANSWERS = {*CLASSES, "Not sure", "Unfamiliar"}


# ---------------------------------------------------------------------------------------------- the pictures
def burst(picture: Image.Image, frames: int, rng: np.random.Generator) -> list[Image.Image]:
    """Frames of a hand-held burst: shifted by up to 6 pixels (edges continued by their mirror image, so the
    scale is the picture's own) and 0.85-1.15x as bright."""
    rgb = np.asarray(picture.convert("RGB"))
    padded = np.pad(rgb, ((6, 6), (6, 6), (0, 0)), mode="symmetric")
    out = []
    for _ in range(frames):
        dx, dy = rng.integers(0, 13, 2)
        frame = Image.fromarray(padded[dy:dy + rgb.shape[0], dx:dx + rgb.shape[1]])
        out.append(ImageEnhance.Brightness(frame).enhance(rng.uniform(0.85, 1.15)))
    return out


def burst_set(folder: Path) -> dict[str, list[Path]]:
    """Per class, BURSTS demo pictures each filmed as a burst, named as the app names its burst frames (one burst a
    few seconds after the other)."""
    rng, start, made = np.random.default_rng(0), time.mktime((2026, 12, 7, 10, 0, 0, 0, 0, -1)), {}
    for c, cls in enumerate(CLASSES):
        (folder / cls).mkdir(parents=True)
        made[cls] = []
        for b, source in enumerate(demo(cls, 0, BURSTS)):
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start + 10 * (c * BURSTS + b)))
            for i, frame in enumerate(burst(Image.open(source), FRAMES, rng)):
                made[cls].append(folder / cls / f"burst-{stamp}-{i + 1:02d}.jpg")
                frame.save(made[cls][-1], quality=92)
    return made


def demo(cls: str, offset: int, n: int) -> list[Path]:
    return sorted((textile_root() / cls).glob("*.jpg"))[offset:offset + n]


def new_fabric() -> list[Image.Image]:
    """NEW_ON_LIVE demo pictures of the three classes that neither the bursts nor the held-out check used."""
    files = [f for i in range(NEW_ON_LIVE) for f in demo(CLASSES[i % 3], FIRST_UNSEEN + HELD_OUT + i, 1)]
    return [Image.open(f).convert("RGB") for f in files]


def noise(n: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- the pages
def upload_classes(page, base: str, token: str, made: dict[str, list[Path]]) -> None:
    """Name each class, upload its frames into its box, add them, then train on these classes."""
    own_classes(page, base, token)
    for cls, files in made.items():
        page.get_by_label("New class name", exact=True).fill(cls)
        page.get_by_label("New class name", exact=True).press("Enter")
        page.get_by_role("button", name="Add class").click()
        class_count(page, cls, 0)
        page.get_by_test_id("stFileUploader").filter(has_text=f"Pictures of {cls}").locator("input[type=file]") \
            .set_input_files([str(f) for f in files])
        page.get_by_role("button", name=f"Add {len(files)} picture(s) to {cls}").click()
        class_count(page, cls, len(files))
    page.get_by_role("button", name="Train on these classes").click()
    page.get_by_text("is your training data").wait_for()
    no_traceback(page)


def groups_kept_together(page, base: str, token: str) -> int:
    """The number of groups the Data page says it keeps together (0 when it says nothing)."""
    page.goto(f"{base}/Data?ws={token}")
    page.get_by_text("Using: My classes").wait_for()
    page.get_by_text("For validation").first.wait_for()  # the scan's report is drawn
    note = page.get_by_text(re.compile(r"\d+ group\(s\) of near-copies"))
    page.get_by_text("A few pictures from each class").wait_for()
    no_traceback(page)
    return int(re.search(r"(\d+) group", note.first.inner_text()).group(1)) if note.count() else 0


def one_click_small(page, base: str, token: str, shots: Path) -> float:
    """The Train page's defaults, the image size made small under Advanced, Start; the figure shown at the end."""
    page.goto(f"{base}/Train?ws={token}")
    page.get_by_text("Pictures: My classes").wait_for()
    page.get_by_text("Advanced settings").click()
    size = page.get_by_test_id("stSlider").filter(has_text="Image size (pixels)").get_by_role("slider")
    size.focus()
    while int(re.search(r"\d+", size.get_attribute("aria-valuetext") or size.inner_text()).group()) > SMALL:
        size.press("ArrowLeft")
        page.wait_for_timeout(300)
    page.wait_for_timeout(1500)  # the page reruns with the new size before Start reads it
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(SHOWN).wait_for(timeout=1_200_000)
    no_traceback(page)
    shot(page, "bursts-train", shots, settle_ms=300)
    return float(SHOWN.search(page.get_by_text(SHOWN).inner_text()).group(1)) / 100


def live_readouts(p, video: Path, base: str, token: str, seconds: float, shots: Path) -> list[str]:
    """Live on the trained model, filmed by a camera playing `video`: its answer (the heading beside the video)
    read every half second for `seconds`."""
    browser, page = open_camera_browser(p, video)
    try:
        page.goto(f"{base}/Live?ws={token}")
        page.get_by_text("Press START").wait_for()
        start_camera(page)
        page.locator(READOUT).filter(has_text=re.compile("|".join(ANSWERS))).first.wait_for()
        seen, end = [], time.time() + seconds
        while time.time() < end:
            seen += [t.strip() for t in page.locator(READOUT).all_inner_texts() if t.strip() in ANSWERS][:1]
            page.wait_for_timeout(500)
        no_traceback(page)
        page.mouse.move(5, 5)
        shot(page, f"bursts-live-{video.stem}", shots, settle_ms=300)
        return seen
    finally:
        browser.close()


# ---------------------------------------------------------------------------------------------- the checks
def burst_ids(names) -> dict[str, str]:
    """name -> class/burst, for names below the data set ("global/burst-20261207-100000-01.jpg")."""
    return {n: f"{Path(n).parent.name}/{burst_of(Path(n))}" for n in names}


def check_the_split(made: dict[str, list[Path]], validation: dict) -> None:
    uploaded = burst_ids(f"{cls}/{f.name}" for cls, files in made.items() for f in files)
    held = set(burst_ids(validation["names"]).values())
    straddling = {b for n, b in uploaded.items() if b in held and n not in validation["names"]}
    assert not straddling, f"bursts on both sides of training and validation: {sorted(straddling)}"


def check_the_figure(shown: float, validation: dict, run_dir: Path) -> None:
    """The shown figure minus the held-out one is within its 95% range: Newcombe's hybrid score interval (each
    figure's Wilson interval, the two half-widths on the side of the difference added in quadrature). The shown
    figure is counted over the validation bursts, not frames: a burst's frames are right or wrong together.
    (Whether the two 95% ranges merely overlap is too loose: a picture-by-picture split showed 91.7% on 24
    validation pictures against 64.2% held out, and the ranges still touched.)"""
    bursts = len(set(burst_ids(validation["names"]).values()))
    low, high = wilson_interval(shown * bursts, bursts)
    model = load_model(run_dir)
    right = total = 0
    for cls in CLASSES:
        answers = answer(model, [Image.open(f) for f in demo(cls, FIRST_UNSEEN, HELD_OUT)])
        right += sum(a.top[0][0] == cls for a in answers)
        total += len(answers)
    held = right / total
    held_low, held_high = wilson_interval(right, total)
    above = shown >= held
    tolerance = math.hypot(shown - low, held_high - held) if above else math.hypot(high - shown, held - held_low)
    print(f"\nshown on the Train page: {shown:.1%} on {len(validation['names'])} validation pictures from {bursts} "
          f"bursts (95%: {low:.0%}-{high:.0%}); held-out real pictures: {right}/{total} = {held:.1%} "
          f"(95%: {held_low:.0%}-{held_high:.0%}); difference {shown - held:+.1%}, allowed +-{tolerance:.1%}")
    assert abs(shown - held) <= tolerance, "the figure the Train page shows does not hold on unseen pictures"


def test_a_burst_made_class_set_gets_an_honest_figure_and_live_knows_its_kind(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: scripts/test.sh installs it with apt")
    from playwright.sync_api import sync_playwright

    started = time.time()
    made = burst_set(tmp_path / "bursts")
    fabric, static = new_fabric(), noise()
    hold = 15  # 1.5 s per picture at 10 frames/s: a loop of the new fabric takes 15 s
    fabric_video = write_y4m(tmp_path / "fabric.y4m", [camera_frame(p) for p in fabric], fps=10, hold=hold)
    noise_video = write_y4m(tmp_path / "noise.y4m", [np.asarray(p) for p in static], fps=10, hold=hold)
    port, runs = free_port(), tmp_path / "runs"
    app = start_app(runs, tmp_path / "ws", port)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as p:
            browser, page = open_camera_browser(p, fabric_video)
            token = visit_home(page, base)
            upload_classes(page, base, token, made)
            together = groups_kept_together(page, base, token)
            shot(page, "bursts-data", tmp_path, settle_ms=300)
            assert together == BURSTS * len(CLASSES), f"the Data page keeps {together} group(s) together"
            shown = one_click_small(page, base, token, tmp_path)
            browser.close()
            run_dir = next(runs.glob("*/best.pt")).parent
            config = json.loads((run_dir / "config.json").read_text())
            assert config["image_size"] == SMALL and config["schedule"] == "progressive", config
            validation = json.loads((run_dir / "validation.json").read_text())
            right = sum(int(np.argmax(pr)) == label for pr, label in zip(validation["probs"], validation["labels"]))
            assert abs(right / len(validation["labels"]) - shown) < 0.001, "the shown figure is validation.json's"
            check_the_figure(shown, validation, run_dir)
            check_the_split(made, validation)

            # Live, filmed by a camera showing new fabric in turn: the share of its answers that say Unfamiliar
            # is about the share of the pictures (each is shown as long), read over one and a half loops.
            loop = NEW_ON_LIVE * hold / 10
            seen = live_readouts(p, fabric_video, base, token, 1.5 * loop, tmp_path)
            share = sum(s == "Unfamiliar" for s in seen) / max(1, len(seen))
            print(f"Live on new fabric: {len(seen)} readouts, {share:.0%} unfamiliar: {sorted(set(seen))}")
            assert len(seen) >= loop, "too few readouts to cover the video's pictures"
            assert share <= MAX_UNFAMILIAR / NEW_ON_LIVE, f"Live called {share:.0%} of its readouts unfamiliar"
            noisy = live_readouts(p, noise_video, base, token, len(static) * hold / 10, tmp_path)
            print(f"Live on noise: {len(noisy)} readouts, {sorted(set(noisy))}")
            assert noisy and sum(s == "Unfamiliar" for s in noisy) >= 0.9 * len(noisy), noisy
        # The engine on the very frames Live was filmed with: picture by picture.
        model = load_model(run_dir)
        flagged = sum(bool(a.unfamiliar) for a in answer(model, [Image.fromarray(camera_frame(p)) for p in fabric]))
        assert flagged <= MAX_UNFAMILIAR, f"{flagged} of {NEW_ON_LIVE} new pictures of the trained kind unfamiliar"
        assert all(a.unfamiliar for a in answer(model, static)), "noise must be unfamiliar"
    finally:
        app.terminate()
        app.wait(timeout=30)
        print(f"\nburst-made classes, end to end: {time.time() - started:.0f} s")
