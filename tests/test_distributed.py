"""Scale-out: the same training under torchrun, 2 CPU processes with gloo, on real textile images."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import copy_textile

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import EpochEnd, Progress, RunFinished, RunStarted
from transfer_core.runstore.runs import RunFolder
from transfer_core.training.callbacks import Callback
from transfer_core.training.distributed import shard
from transfer_core.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def test_shards_split_one_shuffle_into_equal_disjoint_parts():
    order = torch.randperm(25, generator=torch.Generator().manual_seed(1))
    parts = [shard(order, r, 4) for r in range(4)]
    assert all(len(p) == 6 for p in parts)  # 25 // 4: every rank takes the same number of steps
    seen = torch.cat(parts).tolist()
    assert len(set(seen)) == 24 and set(seen) <= set(order.tolist())


@pytest.mark.slow
def test_torchrun_two_cpu_processes_make_one_run_folder_whose_model_predicts(tmp_path):
    # 30 real images: 24 train, 6 validation (the one click would stop at its first model: small data)
    data = copy_textile(tmp_path / "data", 10)
    runs = tmp_path / "runs"
    # --standalone: a private rendezvous on a free localhost port; gloo on the CPU.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           "-m", "transfer_core", "train", str(data), "--epochs", "2", "--image-size", "64",
           "--batch-size", "4", "--freeze", "3", "--schedule", "fixed", "--out", str(runs), "--json"]
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


# Each rank records the training images of its steps and its learning weights after the epoch.
RANK_CHILD = """
import json, sys
from pathlib import Path
import torch
from transfer_core.training import distributed
from transfer_core.training.callbacks import Callback
from transfer_core.core.config import TrainConfig
from transfer_core.workflows.train import make_trainer

class Record(Callback):
    def __init__(self):
        self.steps = []
    def extra_loss(self, trainer, batch, logits):
        self.steps.append(batch.idx.tolist())
    def after_epoch(self, trainer, epoch, extra):
        self.learned = {n: p.detach().clone() for n, p in trainer.net.named_parameters() if p.requires_grad}

data, out, options = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
rank, _ = distributed.init()
record = Record()
final = make_trainer(TrainConfig(data=data, **options), runs_dir=out / "runs", callbacks=[record]).run_training().final
torch.save({"steps": record.steps, "learned": record.learned, "final": final.kind}, out / f"rank{rank}.pt")
distributed.finish()
"""
# Plain SGD (no momentum, decay or dropout): each step is lr x the gradient, nothing random.
DDP_OPTIONS = dict(schedule="fixed", freeze=4, epochs=1, image_size=64, batch_size=4, optimizer="sgd", momentum=0.0, lr=0.05,
                   weight_decay=0.0, dropout=0.0, seed=0)


class Replay(Trainer):
    """One process training on exactly the batches one rank saw: what that rank alone would learn."""

    def __init__(self, config, steps, **kwargs):
        super().__init__(config, **kwargs)
        self.replayed = [torch.tensor(s) for s in steps]

    def epoch_order(self):
        return self.replayed


def _learning(net) -> dict:
    return {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}


class Learned(Callback):
    """The learning weights before and after the (one) epoch."""

    def before_epoch(self, trainer, epoch):
        self.start = _learning(trainer.net)

    def after_epoch(self, trainer, epoch, extra):
        self.weights = _learning(trainer.net)


def _norm(a: dict, b: dict) -> float:
    return sum(float((a[n] - b[n]).pow(2).sum()) for n in a) ** 0.5


@pytest.mark.slow
def test_ddp_averages_gradients_so_both_ranks_learn_the_same_weights(tmp_path):
    data = copy_textile(tmp_path / "data", 10)  # 24 training images: 12 per rank, 3 steps of 4
    child = tmp_path / "rank_child.py"
    child.write_text(RANK_CHILD)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", str(child),
           str(data), str(tmp_path), json.dumps(DDP_OPTIONS)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["final"] for r in ranks] == ["RunFinished"] * 2
    steps = [r["steps"] for r in ranks]
    assert len(steps[0]) == len(steps[1]) == 3
    assert not {i for s in steps[0] for i in s} & {i for s in steps[1] for i in s}  # disjoint shards
    ddp = ranks[0]["learned"]
    assert all(torch.equal(ddp[n], ranks[1]["learned"][n]) for n in ddp)  # one model on both ranks
    for rank_steps in steps:
        alone = Learned()
        result = Replay(TrainConfig(data=str(data), **DDP_OPTIONS), rank_steps, runs_dir=tmp_path / "alone",
                        callbacks=[alone]).run_training()
        assert result.final.kind == "RunFinished"
        moved = _norm(alone.weights, alone.start)
        assert moved > 0
        # Averaged with the other rank's gradients, the weights end far from this shard's alone (measured:
        # about as far as the shard alone moved them).
        assert _norm(ddp, alone.weights) > 0.2 * moved, (_norm(ddp, alone.weights), moved)
