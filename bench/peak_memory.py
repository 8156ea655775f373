"""Peak memory (RSS) of an engine run on a whole data set, without waiting for the whole run.

    python bench/peak_memory.py [DATA] [--steps 3] [--freeze 3] [--augment none] [--step-memory-mb 1200]

Memory peaks once every image is decoded into the cache, the frozen part's outputs are cached, and
training steps hold their activations; later steps and epochs repeat the same allocations. So the run
is stopped after a few training steps (the engine's own Stop) and this process's peak RSS is printed,
with the sizes of what the engine keeps in memory.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import load, peak_rss_mb  # noqa: E402

from transfer_core.core.config import TrainConfig  # noqa: E402
from transfer_core.core.events import Progress, RunStopped  # noqa: E402
from transfer_core.data.datasets import demo_dataset_path  # noqa: E402
from transfer_core.training.callbacks import Callback  # noqa: E402
from transfer_core.training.outputstore import ram_bytes  # noqa: E402
from transfer_core.workflows.train import make_trainer  # noqa: E402


class StopAfterSteps(Callback):
    def __init__(self, steps: int, stop: threading.Event):
        self.steps, self.stop, self.sizes = steps, stop, {}

    def on_event(self, trainer, event):
        if isinstance(event, Progress) and event.phase == "train" and event.step >= self.steps:
            if not self.sizes:
                self.sizes = _sizes(trainer)
            self.stop.set()


def _sizes(trainer) -> dict:
    mb = 2 ** 20
    cache = trainer.feature_cache
    return {"images in memory (uint8)": (trainer.train_store.nbytes + trainer.val_store.nbytes) / mb,
            "cached frozen-part outputs (in memory)": ram_bytes(cache.train, cache.val) / mb,
            "training images": len(trainer.train_samples), "validation images": len(trainer.val_samples)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None)
    ap.add_argument("--steps", type=int, default=3, help="training steps before stopping")
    ap.add_argument("--freeze", default="3", help="a number or 'all' (default: the app's 3)")
    ap.add_argument("--augment", default="none")
    ap.add_argument("--step-memory-mb", type=int, default=TrainConfig(data="").step_memory_mb,
                    help="0: never split a batch (see transfer_core/training/stepmemory.py)")
    a = ap.parse_args()
    freeze = "all" if a.freeze == "all" else int(a.freeze)
    config = TrainConfig(data=str(a.data or demo_dataset_path()), freeze=freeze, augment=a.augment, batch_size=32,
                         step_memory_mb=a.step_memory_mb)
    stop = threading.Event()
    probe = StopAfterSteps(a.steps, stop)
    result = make_trainer(config, runs_dir=tempfile.mkdtemp(prefix="bench-mem-"), callbacks=[probe], stop=stop).run_training()
    if not isinstance(result.final, RunStopped):
        raise SystemExit(f"expected the run to be stopped after {a.steps} steps, got {result.final}")
    print(f"{load()}\nfreeze {a.freeze}, augmentation {a.augment}, batch {config.batch_size}, "
          f"stopped after {a.steps} training steps")
    for name, value in probe.sizes.items():
        print(f"  {name}: {value:.0f}" + (" MB" if isinstance(value, float) else ""))
    print(f"peak memory (RSS): {peak_rss_mb():.0f} MB (target < 3000 MB)")


if __name__ == "__main__":
    main()
