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
