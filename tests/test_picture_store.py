"""Memory bounded by a budget, not by the data set: pictures decoded once per data set into a store on disk
(data/picturestore.py), read back by batch; frozen outputs past the budget kept on disk
(training/outputstore.py). Real textile pictures, real files, real training runs."""
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import copy_textile
from transfer_core.core.config import TrainConfig
from transfer_core.core.events import EpochEnd, RunFinished
from transfer_core.core.memory import MEMORY_ENV, memory_budget_mb
from transfer_core.data import datafiles, imagecache, imagechecks, scancache
from transfer_core.data.datasets import scan_dataset
from transfer_core.data.imagecache import ImageStore, StoreKeeper
from transfer_core.data.picturestore import CACHE_ENV, MAX_GB_ENV
from transfer_core.models.backbones import get_backbone
from transfer_core.training.outputstore import DiskOutputs, place, ram_bytes
from transfer_core.workflows.train import train

PREP = get_backbone("mobilenet_v2").preprocessing_at(64)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test starts from an empty store of its own."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    scancache.clear_scan_cache()
    yield
    scancache.clear_scan_cache()


@pytest.fixture
def decodes(monkeypatch):
    """Counts pictures decoded, by file content (a path or the bytes read from it)."""
    counts = Counter()
    real = datafiles.load_rgb

    def counting(source):
        counts["all"] += 1
        return real(source)

    for module in (imagecache, imagechecks):
        monkeypatch.setattr(module, "load_rgb", counting)
    return counts


def test_a_picture_is_decoded_once_per_data_set_and_a_changed_file_again(tmp_path, decodes):
    data = copy_textile(tmp_path / "a", 2)
    paths = sorted(data.rglob("*.jpg"))
    first = ImageStore(paths, PREP, budget_bytes=0)
    assert first.decodes == 6 and decodes["all"] == 6
    again = ImageStore(paths, PREP, budget_bytes=0)  # a later run on the same pictures
    assert again.decodes == 0 and decodes["all"] == 6
    idx = torch.tensor([5, 0, 3])
    assert torch.equal(first.batch(idx), again.batch(idx))
    copied = copy_textile(tmp_path / "b", 2)  # the same files in another folder: the same content
    assert ImageStore(sorted(copied.rglob("*.jpg")), PREP, budget_bytes=0).decodes == 0
    shutil.copy(paths[4], paths[0])  # one file rewritten with another picture of the set: already decoded
    copied_over = ImageStore(paths, PREP, budget_bytes=0)
    assert copied_over.decodes == 0
    assert torch.equal(copied_over.batch(torch.tensor([0])), copied_over.batch(torch.tensor([4])))
    Image.open(paths[4]).transpose(Image.FLIP_LEFT_RIGHT).save(paths[0])  # rewritten with a new picture
    changed = ImageStore(paths, PREP, budget_bytes=0)
    assert changed.decodes == 1
    assert torch.equal(changed.batch(torch.tensor([0])), torch.from_numpy(
        imagecache.decode(paths[0], PREP).transpose(2, 0, 1).copy()).unsqueeze(0))
    assert not torch.equal(changed.batch(torch.tensor([0])), first.batch(torch.tensor([0])))


def test_a_batch_read_from_disk_is_the_batch_held_in_memory(tmp_path):
    paths = sorted(copy_textile(tmp_path / "a", 4).rglob("*.jpg"))
    on_disk = ImageStore(paths, PREP, budget_bytes=0)
    in_memory = ImageStore(paths, PREP, budget_bytes=10 ** 9)
    assert not on_disk.in_memory and on_disk.nbytes == 0 and in_memory.in_memory
    idx = torch.randperm(len(paths))
    assert torch.equal(on_disk.batch(idx), in_memory.batch(idx))
    expected = imagecache.decode(paths[int(idx[0])], PREP).transpose(2, 0, 1)
    assert np.array_equal(on_disk.batch(idx[:1])[0].numpy(), expected)


def test_past_its_disk_cap_the_store_stops_growing_and_every_picture_is_still_served(tmp_path, monkeypatch):
    paths = sorted(copy_textile(tmp_path / "a", 3).rglob("*.jpg"))
    record = 3 * PREP.resize ** 2
    monkeypatch.setenv(MAX_GB_ENV, str(4 * record / 2 ** 30))  # room for 4 of the 9 pictures
    capped = ImageStore(paths, PREP, budget_bytes=0)
    assert sum(s is not None for s in capped.slots) == 4
    assert capped.store.disk_bytes() <= 4 * record
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "other-cache"))
    monkeypatch.delenv(MAX_GB_ENV)
    whole = ImageStore(paths, PREP, budget_bytes=0)
    idx = torch.arange(len(paths))
    assert torch.equal(capped.batch(idx), whole.batch(idx))


def test_training_decodes_each_picture_at_most_once_and_a_later_run_decodes_none(tmp_path, decodes):
    """The scan before training checks each picture by decoding it and hands it to the store; the run then
    reads it from there. A second run on the same folder (in a new process: the scan's answers are on disk
    too) decodes nothing."""
    data = copy_textile(tmp_path / "data", 8)
    config = TrainConfig(data=str(data), schedule="fixed", image_size=64, batch_size=8, epochs=1, freeze=3,
                         quick_start_epochs=0)
    assert isinstance(train(config, runs_dir=tmp_path / "runs").final, RunFinished)
    assert decodes["all"] == 24  # 3 classes x 8: no test share below 50 per class, so nothing decoded twice
    scancache._ANSWERS.clear()  # a new process: nothing remembered in memory
    assert isinstance(train(config, runs_dir=tmp_path / "runs").final, RunFinished)
    assert decodes["all"] == 24


def test_a_scan_with_a_keeper_fills_the_store(tmp_path, decodes):
    data = copy_textile(tmp_path / "data", 3)
    keeper = StoreKeeper(PREP)
    report = scan_dataset(data, keep=keeper)
    keeper.flush()
    assert decodes["all"] == 9
    store = ImageStore([s.path for s in report.train + report.val], PREP, budget_bytes=0)
    assert store.decodes == 0 and decodes["all"] == 9


def test_outputs_past_the_budget_go_to_disk_and_read_back_the_same(tmp_path):
    values = torch.randn(10, 4, 3, 3)
    assert isinstance(place(10, (4, 3, 3), torch.float32, budget_bytes=10 ** 6), torch.Tensor)
    disk = place(10, (4, 3, 3), torch.float32, budget_bytes=100)
    assert isinstance(disk, DiskOutputs) and ram_bytes(disk) == 0 and ram_bytes([values]) == values.numel() * 4
    disk.write(0, values[:6])
    disk.write(6, values[6:])
    assert torch.equal(disk[:], values)
    assert torch.equal(disk[torch.tensor([7, 2, 2])], values[[7, 2, 2]])
    assert torch.equal(disk[3:5], values[3:5])


@pytest.mark.slow
def test_a_run_within_a_tiny_budget_learns_exactly_what_one_holding_everything_in_memory_learns(tmp_path):
    """Over the budget the pictures and the cached outputs are read from disk: the same numbers, in the same
    order, so the same losses."""
    data = copy_textile(tmp_path / "data", 10)

    def losses(cache_mb):
        result = train(TrainConfig(data=str(data), schedule="fixed", image_size=64, batch_size=8, epochs=3,
                                   freeze=3, unfreeze_at=(2,), cache_mb=cache_mb), runs_dir=tmp_path / str(cache_mb))
        assert isinstance(result.final, RunFinished), result.final
        events = [e for e in _events(result.run_dir) if isinstance(e, EpochEnd)]
        return [(e.train_loss, e.val_loss) for e in events]

    tiny, roomy = losses(1), losses(3000)
    assert len(tiny) == 3
    assert np.allclose(tiny, roomy, rtol=1e-5, atol=1e-6), (tiny, roomy)


def _events(run_dir):
    from transfer_core.runstore.runs import RunFolder

    return RunFolder(run_dir).events()


def test_the_budget_is_the_setting_else_the_environment_else_a_share_of_the_machine(monkeypatch):
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    automatic = memory_budget_mb(0)
    assert 256 <= automatic
    monkeypatch.setenv(MEMORY_ENV, "700")
    assert memory_budget_mb(0) == 700 and memory_budget_mb(1234) == 1234
