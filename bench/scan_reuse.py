"""What reusing a folder's scan saves: the Data page's scan (every picture opened) beside training's scan of
the same, unchanged folder (served from transfer_core/data/scancache.py), in one run.

    python bench/scan_reuse.py [DATA] [--repeat 3]

DATA defaults to the bundled textile demo (2,000 pictures). Each figure is the median of `repeat` scans;
the first scan starts from an empty cache every time (the files themselves may be in the OS's cache, as
they are on a server that just received them, so this is the saving at its smallest).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import load  # noqa: E402

from transfer_core.data import scancache  # noqa: E402
from transfer_core.data.datasets import demo_dataset_path, scan_dataset  # noqa: E402


def timed(scan) -> float:
    start = time.perf_counter()
    scan()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    data = str(a.data or demo_dataset_path())
    run_dir = Path(tempfile.mkdtemp(prefix="bench-scan-"))

    def page_scan():  # as ui/data_view.py
        return scan_dataset(data, val_split=0.2, seed=0)

    def training_scan():  # as training/trainer.py, into its run folder
        return scan_dataset(data, val_split=0.2, seed=0, extract_to=run_dir / "data", test_share=True)

    first, reused = [], []
    for _ in range(a.repeat):
        scancache.clear_scan_cache()
        first.append(timed(page_scan))
        reused.append(timed(training_scan))
    report = page_scan()
    n = len(report.train) + len(report.val) + len(report.test) + len(report.skipped)
    f, r = statistics.median(first), statistics.median(reused)
    print(f"{load()}\n{n} files, median of {a.repeat}")
    print(f"{'first scan (Data page)':<28}{'reused scan (training)':<28}ratio")
    print(f"{f:<28.3f}{r:<28.3f}{f / r:.0f}x faster (saves {f - r:.2f} s per scan)")


if __name__ == "__main__":
    main()
