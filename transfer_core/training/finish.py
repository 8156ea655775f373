"""The end of a run: the best epoch's model saved for good, with what Predict needs beside it (validation
results, calibrated confidence, the unfamiliar-picture check) and the honest figure on the test share."""
from __future__ import annotations

from pathlib import Path

import torch

from transfer_core.data.datarefs import to_ref
from transfer_core.inference import novelty
from transfer_core.inference.calibration import save_calibration
from transfer_core.inference.predict import load_model, predict_probs
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import save_atomically, write_json
from transfer_core.training import crossval, distributed
from transfer_core.training.checkpoint import weights_of
from transfer_core.training.features import cached_pooled


def finish(trainer) -> float | None:
    """Put the best epoch's weights back, let methods adjust them (after_fit), save them with validation
    results, calibration and the novelty reference; returns the test share's accuracy (None: no test share).
    A cross-validation fold's run only reports its epochs (crossval.py): nothing of this is read."""
    if crossval.is_fold_run(trainer.config):  # its answers at the last epoch, to compare with its first model's
        _, _, probs = trainer.evaluate()
        write_json(trainer.run.path / crossval.LAST_EPOCH, probs.argmax(1).tolist())
        return None
    trainer.report_progress("checking", 0, 1, part="finish")  # the time left's last part starts here (eta.py)
    best = trainer.run.path / runfiles.BEST
    if best.is_file():
        trainer.net.load_state_dict(torch.load(best, map_location=trainer.device, weights_only=True))
    for cb in trainer.callbacks:
        cb.after_fit(trainer)
    save_atomically(weights_of(trainer.net), best)
    _, acc, probs = trainer.evaluate()
    trainer.best.accuracy = acc
    save_predictions(trainer, runfiles.VALIDATION, trainer.val_samples, probs)
    # Fitted once here, so the run folder alone predicts with calibrated confidence (predict.py).
    save_calibration(trainer.run.path, probs, trainer.val_y)
    fit_novelty(trainer)
    return test(trainer)


def fit_novelty(trainer) -> None:
    """The final model's pooled features of the training pictures (up to novelty.MAX_REFERENCE) and the
    validation pictures: what Predict needs to say "this does not look like your training pictures"."""
    if not distributed.is_main():
        return
    trainer.report_progress("checking", 0, 1, part="finish")
    # The middle look (novelty.py) only once a stage below the head has learned: a backbone kept frozen still
    # sees pictures as pretrained, and its cache holds the pooled features alone (no second pass then).
    trained = trainer.depth < trainer.net.num_stages
    mid = novelty.middle_stage(trainer.net.num_stages) if trained else 0
    idx = novelty.reference_sample(len(trainer.train_samples), trainer.config.seed)
    reference = _looks(trainer, "train", trainer.train_store, idx, mid)
    val_idx = novelty.reference_sample(len(trainer.val_samples), trainer.config.seed)  # plenty for a quantile
    validation = _looks(trainer, "val", trainer.val_store, val_idx, mid)
    novelty.fit_and_save(trainer.run.path, reference, validation, _groups(trainer.train_samples, idx),
                         split=trainer.net.feature_dim if mid else None, mid=mid)


def _groups(samples: list, idx: torch.Tensor) -> torch.Tensor:
    """The near-copy group of each picture `idx` (a picture in none is a group of its own)."""
    return torch.tensor([samples[i].group if samples[i].group >= 0 else -2 - i for i in idx.tolist()])


def _looks(trainer, which: str, store, idx: torch.Tensor, mid: int) -> torch.Tensor:
    """What the check reads (novelty.looks): from the feature cache where it holds these pictures at the
    middle stage (the frozen layers ran once already; at the default freeze depth it does), else the pictures
    run through the network again."""
    cached = cached_pooled(trainer.feature_cache, which, idx, mid)
    return cached if cached is not None else novelty.store_features(trainer.net, store, trainer.prep,
                                                                    trainer.device, idx, mid=mid)


def test(trainer) -> float | None:
    """The test share, through the saved model as Predict loads it. The validation pictures chose the best
    epoch and fitted the confidence; nothing was tuned on these, so theirs is the honest figure."""
    samples = trainer.test_samples
    if not samples or not distributed.is_main():
        return None
    trainer.report_progress("testing", 0, 1, part="finish")
    model = load_model(trainer.run.path, device=trainer.device)
    with torch.inference_mode():
        probs = predict_probs(model, [s.path for s in samples], calibrated=False)
    labels = torch.tensor([s.label for s in samples])
    save_predictions(trainer, runfiles.TEST, samples, probs)
    return float((probs.argmax(1) == labels).float().mean())


def save_predictions(trainer, name: str, samples: list, probs: torch.Tensor) -> None:
    root = trainer.report.root  # the pictures are named below a data reference: no server path (datarefs)
    write_json(trainer.run.path / name, runfiles.Predictions(
        to_ref(root, trainer.runs_dir), [_relative(s.path, root) for s in samples], [s.label for s in samples],
        probs.tolist()).to_dict())


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name
