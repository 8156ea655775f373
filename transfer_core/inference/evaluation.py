"""A finished run's validation results: figures, confusion matrix, the images it got wrong."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from transfer_core.core.metrics import Evaluation, evaluate_predictions
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder


@dataclass(frozen=True)
class Mistake:
    path: str
    name: str  # path inside the data set, for display
    true: str
    predicted: str
    confidence: float


@dataclass(frozen=True)
class RunEvaluation:
    evaluation: Evaluation
    mistakes: list[Mistake]
    probs: torch.Tensor
    labels: torch.Tensor


SHARES = {"test": runfiles.TEST, "validation": runfiles.VALIDATION}


def evaluate_run(run_dir: str | Path, share: str = "validation") -> RunEvaluation:
    """Read the best model's predictions on the validation (or test) share saved with the run (no model
    needed). The validation pictures chose the best epoch and fitted the confidence; the test share, kept
    when every class has enough pictures, was used for nothing and gives the honest figure."""
    run = RunFolder(run_dir)
    val = run.read_json(SHARES[share])
    if not val:
        raise FileNotFoundError(f"Run {run.id} has no {share} results" +
                                (" (it did not finish)." if share == "validation" else "."))
    classes = run.read_json(runfiles.CLASSES)
    probs = torch.tensor(val["probs"], dtype=torch.float32).view(-1, len(classes))
    labels = torch.tensor(val["labels"], dtype=torch.long)
    evaluation = evaluate_predictions(labels, probs, classes)
    conf, pred = probs.max(1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    paths = run.validation_images(SHARES[share])
    mistakes = [Mistake(paths[i], val["names"][i], classes[labels[i]], classes[pred[i]], float(conf[i]))
                for i in range(len(labels)) if pred[i] != labels[i]]
    mistakes.sort(key=lambda m: -m.confidence)  # the most confident mistakes first: most worth a look
    return RunEvaluation(evaluation, mistakes, probs, labels)


# Wider than this, the 95% interval says the validation set is too small for the figure to mean much.
_WIDE_INTERVAL = 0.15


def has_test_share(run_dir: str | Path) -> bool:
    return (Path(run_dir) / runfiles.TEST).is_file()


def describe_accuracy(evaluation: Evaluation, share: str = "validation") -> str:
    """The accuracy with its 95% Wilson interval in words, and a warning when the share is small."""
    low, high = evaluation.interval
    text = (f"Accuracy {evaluation.accuracy:.1%} on {evaluation.total} {share} images: "
            f"95% sure the true figure is between {low:.1%} and {high:.1%}.")
    if high - low > _WIDE_INTERVAL:
        text += (f" That range is wide because the {share} set is small; two runs whose accuracies fall "
                 "inside it cannot be told apart. More images narrow it.")
    return text
