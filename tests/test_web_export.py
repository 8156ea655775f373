"""The exported web page (bundle/web/) in real Chromium, served by a plain static server: it gives the
engine's answers to real pictures, its resize rule (resize_rule.js) gives resize_rule.py's pixels, and
index.html?selftest=1 says all its parity pictures agree. Screenshot: assets/screenshots/web-page.png."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from conftest import copy_textile
from PIL import Image

from tests.test_e2e_browser import CHROMIUM, free_port, wait_for_port
from transfer_core.core.config import TrainConfig
from transfer_core.data.datasets import load_rgb
from transfer_core.inference.predict import answer, load_model, predict_probs
from transfer_core.models import resize_rule
from transfer_core.results.export import PARITY_PROB, export_run
from transfer_core.runstore.runs import RunFolder
from transfer_core.workflows.train import train

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync"]
SHOTS = Path(__file__).resolve().parent.parent / "assets" / "screenshots"
TIMEOUT = 180_000  # ms: a shared, loaded machine


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny real run (3 classes x 20 textile pictures, 96 px, 1 epoch) exported; its web/ folder on a static
    server (python -m http.server, nothing of Transfer Studio), with a few test pictures beside the page."""
    tmp = tmp_path_factory.mktemp("web")
    data = copy_textile(tmp / "data", 20)
    result = train(TrainConfig(schedule="fixed", data=str(data), freeze=3, image_size=96, batch_size=8, epochs=1,
                               seed=0), runs_dir=tmp / "runs")
    bundle = export_run(result.run_dir, tmp / "bundle", devices=False).bundle
    extra = tmp / "bundle" / "web" / "_test"
    extra.mkdir()
    pictures = [*sorted(copy_textile(tmp / "unseen", 2, offset=300).glob("*/*.jpg")), *_photos(extra)]
    for p in pictures:
        if p.parent != extra:
            shutil.copy(p, extra / f"{p.parent.name}_{p.name}")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                               str(bundle / "web")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        yield result.run_dir, bundle, f"http://127.0.0.1:{port}", sorted(extra.iterdir())
    finally:
        server.terminate()
        server.wait(timeout=30)


def _photos(folder: Path) -> list[Path]:
    """Real photos of several shapes: landscape, portrait (EXIF-rotated), transparent, odd sizes."""
    out = []
    for name, size in (("astronaut", None), ("coffee", (601, 401)), ("chelsea", (333, 517))):
        img = Image.fromarray(getattr(skimage.data, name)())
        path = folder / f"{name}.png"
        (img.resize(size) if size else img).save(path)
        out.append(path)
    rotated = Image.fromarray(skimage.data.rocket())
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees": phones save portraits like this
    rotated.save(folder / "rocket_exif.jpg", exif=exif, quality=92)
    rgba = np.dstack([skimage.data.coffee(), np.tile(np.linspace(0, 255, 600, dtype=np.uint8), (400, 1))])
    Image.fromarray(rgba, "RGBA").save(folder / "coffee_alpha.png")
    return out + [folder / "rocket_exif.jpg", folder / "coffee_alpha.png"]


def _page(p, url: str):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": 900, "height": 1000}, locale="en-US")
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    return browser, page


def test_page_gives_the_engines_answers_to_pictures_chosen_in_it(served):
    from playwright.sync_api import sync_playwright

    run_dir, bundle, url, pictures = served
    model = load_model(run_dir)
    engine, probs = answer(model, pictures), predict_probs(model, pictures)
    with sync_playwright() as p:
        browser, page = _page(p, f"{url}/index.html")
        page.locator("#files").set_input_files([str(f) for f in pictures])
        page.wait_for_selector(f"body[data-answered='{len(pictures)}']")
        seen = page.evaluate("lastAnswers.map(a => [a.top, a.probabilities, a.unfamiliar])")
        assert len(seen) == len(pictures) == len(engine)
        for (top, row, unfamiliar), e, ref, path in zip(seen, engine, probs, pictures):
            assert top == model.classes[int(ref.argmax())], path.name
            assert np.abs(np.array(row) - ref.numpy()).max() <= PARITY_PROB, path.name
            if e.novelty is not None and abs(e.novelty.score - model.novelty.threshold) > 1e-3:
                assert unfamiliar == e.unfamiliar, path.name
        texts = page.locator(".answer .top").all_inner_texts()
        assert all(t.split(" · ")[0] in model.classes or t.startswith("Not sure") for t in texts)
        page.get_by_role("button", name="中文").click()  # the page's own dictionary, no server
        page.get_by_text("选择图片").wait_for()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.get_by_role("button", name="English").click()
        page.screenshot(path=str(SHOTS / "web-page.png"), full_page=True)
        browser.close()


def test_selftest_says_every_parity_picture_agrees(served):
    from playwright.sync_api import sync_playwright

    _, bundle, url, _ = served
    expected = json.loads((bundle / "web" / "selftest" / "expected.json").read_text())["pictures"]
    assert len(expected) >= 8 and any(e["unfamiliar"] for e in expected.values())  # the noise picture
    with sync_playwright() as p:
        browser, page = _page(p, f"{url}/index.html?selftest=1")
        line = page.locator("#parity")
        line.wait_for()
        n = len(expected)
        assert line.inner_text().startswith(f"parity: {n} of {n} agree")
        browser.close()


def test_selftest_fails_when_the_engines_answers_differ(served, tmp_path):
    """The check can fail: the same page with one expected answer changed says N-1 of N."""
    from playwright.sync_api import sync_playwright

    _, bundle, url, _ = served
    path = bundle / "web" / "selftest" / "expected.json"
    original = path.read_text()
    data = json.loads(original)
    first = next(iter(data["pictures"].values()))
    first["probabilities"] = [p + 0.01 for p in first["probabilities"]]  # beyond the tolerance, same top class
    path.write_text(json.dumps(data))
    try:
        with sync_playwright() as p:
            browser, page = _page(p, f"{url}/index.html?selftest=1")
            page.locator("#parity").wait_for()
            n = len(data["pictures"])
            assert page.locator("#parity").inner_text().startswith(f"parity: {n - 1} of {n} agree")
            browser.close()
    finally:
        path.write_text(original)


@pytest.mark.parametrize("interpolation,resize,crop", [("bilinear", 110, 96), ("bicubic", 255, 224),
                                                       ("nearest", 113, 100)])
def test_the_pages_resize_rule_gives_pythons_pixels(served, interpolation, resize, crop):
    """resize_rule.js on the browser's own decoding of real pictures vs resize_rule.py on Pillow's."""
    from playwright.sync_api import sync_playwright

    _, _, url, pictures = served
    with sync_playwright() as p:
        browser, page = _page(p, f"{url}/index.html")
        for path in pictures:
            js = page.evaluate(
                """async ([name, r, c, i]) => {
                    const px = await readPixels(`_test/${encodeURIComponent(name)}`);
                    return Array.from(resizeRule.modelInput(px.rgb, px.w, px.h, r, c, i));
                }""", [path.name, resize, crop, interpolation])
            ours = resize_rule.model_input(load_rgb(path), resize, crop, interpolation).astype(int)
            diff = np.abs(np.array(js).reshape(crop, crop, 3) - ours)
            assert diff.max() <= 1, (path.name, int(diff.max()), float((diff > 0).mean()))
        browser.close()
