"""Shared fixtures: small real image folders copied from the bundled textile-defect data."""
import shutil
from pathlib import Path

import pytest

TEXTILE_CLASSES = ("global", "local", "nominal")


def textile_root() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("conformal_clip_data")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "textile_images" / "simulated"


def copy_textile(dest: Path, per_class: int, offset: int = 0) -> Path:
    """A class-per-folder copy of `per_class` real textile images per class."""
    for cls in TEXTILE_CLASSES:
        files = sorted((textile_root() / cls).glob("*.jpg"))[offset:offset + per_class]
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dest / cls / f.name)
    return dest


@pytest.fixture(scope="session")
def textile_small(tmp_path_factory) -> Path:
    """3 classes x 12 real images: enough to train for a step or two."""
    return copy_textile(tmp_path_factory.mktemp("textile_small"), 12)


@pytest.fixture(scope="session")
def textile_full() -> Path:
    return textile_root()


def _demo_listing() -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(textile_root())), p.stat().st_size if p.is_file() else -1)
                  for p in textile_root().rglob("*"))


@pytest.fixture(scope="session", autouse=True)
def demo_data_is_never_changed():
    """The bundled demo pictures are shared by everyone on a server: no test (and no code path it drives) may
    add, remove or rewrite one. Checked once around the whole session (a listing of 2,000 files is cheap)."""
    before = _demo_listing()
    yield
    after = _demo_listing()
    assert after == before, f"the demo data changed: {sorted(set(after) ^ set(before))[:5]}"


@pytest.fixture(autouse=True)
def data_scans_are_awaited(monkeypatch):
    """AppTest draws a page once: the Data page's scan (a task in the queue) must be over by then, as it is
    for a small folder in the app. In the app a slower scan shows its progress instead (test_newcomer)."""
    import ui.data_view

    monkeypatch.setattr(ui.data_view, "SCAN_WAIT_S", 120.0)
