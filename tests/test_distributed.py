"""Scale-out: the same training under torchrun, 2 CPU processes with gloo, on real textile images."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import copy_textile
from transfer_core.distributed import shard
from transfer_core.events import EpochEnd, Progress, RunFinished, RunStarted
from transfer_core.runs import RunFolder


def test_shards_split_one_shuffle_into_equal_disjoint_parts():
    order = torch.randperm(25, generator=torch.Generator().manual_seed(1))
    parts = [shard(order, r, 4) for r in range(4)]
    assert all(len(p) == 6 for p in parts)  # 25 // 4: every rank takes the same number of steps
    seen = torch.cat(parts).tolist()
    assert len(set(seen)) == 24 and set(seen) <= set(order.tolist())


@pytest.mark.slow
def test_torchrun_two_cpu_processes_make_one_run_folder_whose_model_predicts(tmp_path):
    data = copy_textile(tmp_path / "data", 10)  # 30 real images: 24 train, 6 validation
    runs = tmp_path / "runs"
    # --standalone: a private rendezvous on a free localhost port; gloo on the CPU.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           "-m", "transfer_core", "train", str(data), "--epochs", "2", "--image-size", "64",
           "--batch-size", "4", "--freeze", "3", "--out", str(runs), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["status"] == "RunFinished"  # rank 0 alone reports

    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1  # rank 1 wrote nothing here
    events = RunFolder(folders[0]).events()
    assert isinstance(events[0], RunStarted)
    assert sum(isinstance(e, RunFinished) for e in events) == 1 and isinstance(events[-1], RunFinished)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2] and all(e.extra.get("processes") == 2 for e in epochs)
    # Each rank trained on its half of the 24 training images: 12 / batch 4 = 3 steps, not 6.
    assert {e.steps for e in events if isinstance(e, Progress) and e.phase == "train"} == {3}

    image = next((data / "local").glob("*.jpg"))
    predicted = subprocess.run([sys.executable, "-m", "transfer_core", "predict", str(folders[0]), str(image),
                                "--json"], capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    top = json.loads(predicted.stdout.splitlines()[-1])["top"]
    assert {t["class"] for t in top} == {"global", "local", "nominal"}
    assert abs(sum(t["probability"] for t in top) - 1) < 1e-3
