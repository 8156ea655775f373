"""Calibration: make "90% sure" mean right 9 times in 10, and let the model say "not sure".

A fine-tuned network's probabilities are often too confident (or, with label smoothing, too timid).
Temperature scaling (Guo et al., 2017) divides the logits by one number T fitted on the validation
images: the predicted class never changes, only how sure the model says it is. Everything here is a
pure function of validation probabilities and labels, so it works from a run folder's
validation.json alone; the trainer saves the fitted T in calibration.json and predict.py applies it.

Only where it helps: a temperature fitted on a few pictures can make the confidence worse (on 16 validation
pictures the error went from 16.5% to 48.6% once, issue #28). So T is fitted only from MIN_TO_FIT validation
pictures, and kept only when it lowers the loss on pictures it was not fitted on (2-fold cross-fitting,
repeated REPEATS times over different halves); otherwise the model's own confidence is used, and the
reason is saved and said in words.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from transfer_core.core.i18n import N_, _, retranslate, sentences
from transfer_core.inference.evaluation import evaluate_run
from transfer_core.runstore import runfiles
from transfer_core.runstore.runs import RunFolder, write_json

CALIBRATION_FILE = runfiles.CALIBRATION
DEFAULT_BINS = 10
MIN_TO_FIT = 30  # validation pictures from which a temperature is fitted: with fewer, each half has under 15
REPEATS = 5  # 2-fold cross-fittings over different halves, averaged: one split of 30 pictures is noisy
TOO_FEW = N_("Too few validation pictures ({n}; at least {min}) to correct the confidence without making it "
             "worse: Predict uses the model's own.")
NO_BETTER = N_("A correction (temperature {t}) was tried and did not lower the error on pictures it was not "
               "fitted on, so Predict uses the model's own confidence.")
# Inverse temperatures searched: T from 1/20 to 20 covers every model we have seen by a wide margin.
_BETA_RANGE = (0.05, 20.0)


# ----------------------------------------------------------------------------- figures
def as_logits(probs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities are logits up to a per-row constant, which softmax ignores.

    validation.json stores probabilities rounded to 6 decimals, so zeros are clamped: a probability
    below 1e-7 was "practically impossible" either way.
    """
    return probs.double().clamp_min(1e-7).log()


def scaled_probs(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """The probabilities the model gives once its logits are divided by `temperature`."""
    if len(probs) == 0 or temperature == 1.0:
        return probs.float()
    return (as_logits(probs) / temperature).softmax(1).float()


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true class (lower = better probabilities)."""
    if len(labels) == 0:
        return 0.0
    return float(F.nll_loss(as_logits(probs), labels.long()))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = DEFAULT_BINS) -> float:
    """ECE: on average over all images, how far "how sure" is from "how often right" (0 = perfect)."""
    total = len(labels)
    return sum(b.count / total * abs(b.accuracy - b.confidence) for b in reliability_bins(probs, labels, bins)
               if b.count) if total else 0.0


@dataclass(frozen=True)
class ReliabilityBin:
    """Images whose top probability fell in [lower, upper): how sure the model was, how often right."""

    lower: float
    upper: float
    count: int
    confidence: float  # mean top probability in the bin (0 when empty)
    accuracy: float  # share of the bin's images predicted right (0 when empty)


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = DEFAULT_BINS) -> list[ReliabilityBin]:
    """The data of a reliability diagram: equal-width confidence bins from 0 to 1."""
    conf, pred = probs.max(1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    right = (pred == labels).float()
    # A top probability of exactly 1.0 belongs to the last bin, not to an empty bin beyond it.
    index = (conf * bins).long().clamp(max=bins - 1)
    out = []
    for i in range(bins):
        mask = index == i
        n = int(mask.sum())
        out.append(ReliabilityBin(lower=i / bins, upper=(i + 1) / bins, count=n,
                                  confidence=float(conf[mask].mean()) if n else 0.0,
                                  accuracy=float(right[mask].mean()) if n else 0.0))
    return out


# ----------------------------------------------------------------------------- fitting
def fit_temperature(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises the validation NLL (1.0 when there is nothing to fit on).

    The NLL is convex in the inverse temperature, so a golden-section search finds the optimum
    reliably in a few dozen evaluations, without an optimiser's learning rate to tune.
    """
    if len(labels) < 2:
        return 1.0
    logits, y = as_logits(probs), labels.long()

    def loss(beta: float) -> float:
        return float(F.cross_entropy(logits * beta, y))

    lo, hi = math.log(_BETA_RANGE[0]), math.log(_BETA_RANGE[1])  # search in log space: T=0.1 and 10 alike
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(math.exp(a)), loss(math.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(math.exp(b))
    beta = math.exp((lo + hi) / 2)
    return 1.0 / beta


def _halves(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[: n // 2], order[n // 2:]


def cross_fitted_probs(probs: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each validation image scaled by a temperature fitted on the *other* half of the images.

    Fitting T and measuring the result on the same images flatters it; two-fold cross-fitting gives an
    honest "after" figure from the one validation set a small project has.
    """
    if len(labels) < 4:
        return scaled_probs(probs, fit_temperature(probs, labels))
    out = probs.float().clone()
    first, second = _halves(len(labels), seed)
    for fit_on, apply_to in ((first, second), (second, first)):
        out[apply_to] = scaled_probs(probs[apply_to], fit_temperature(probs[fit_on], labels[fit_on]))
    return out


@dataclass(frozen=True)
class Calibration:
    temperature: float  # divide the logits by this; >1 = the model was over-confident
    ece_before: float
    ece_after: float  # measured with cross-fitting (see cross_fitted_probs), not on the fitting images
    nll_before: float
    nll_after: float
    images: int
    bins: int = DEFAULT_BINS
    method: str = "temperature scaling fitted on the validation images; 'after' figures by 2-fold cross-fitting"
    kept: bool = True  # False: the fitted temperature did not help (or could not be fitted); T is 1.0
    fitted: float | None = None  # the temperature fitted, kept or not (None in runs saved before this)
    why: str = ""  # why it was not kept, in English (retranslate to show)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def describe(self) -> str:
        """One sentence for people: which way the model was off, and by how much before and after."""
        if self.images == 0:
            return _("No validation images, so the model's confidence could not be checked.")
        measured = _("On average its stated confidence is {before} away from how often it is right (measured on "
                     "{n} validation images).").format(before=f"{self.ece_before:.1%}", n=self.images)
        if not self.kept:
            return sentences(measured, retranslate(self.why))
        first = (_("The model was too sure of itself (temperature {t}).") if self.temperature > 1.05 else
                 _("The model was too timid (temperature {t}).") if self.temperature < 0.95 else
                 _("The model was about right (temperature {t})."))
        return sentences(first.format(t=f"{self.temperature:.2f}"), _(
            "On average its stated confidence was {before} away from how often it was right; after calibration "
            "{after} (measured on {n} validation images).").format(
                before=f"{self.ece_before:.1%}", after=f"{self.ece_after:.1%}", n=self.images))


def calibrate(probs: torch.Tensor, labels: torch.Tensor, bins: int = DEFAULT_BINS) -> Calibration:
    """Fit the temperature on all validation images, measure before / after honestly, and keep it only where
    it lowered the held-out loss (module docstring)."""
    probs, labels = probs.float(), labels.long()
    before = nll(probs, labels)
    fitted = round(fit_temperature(probs, labels), 6)
    afters = [cross_fitted_probs(probs, labels, seed) for seed in range(REPEATS)]
    nll_after = sum(nll(a, labels) for a in afters) / REPEATS
    ece_after = sum(expected_calibration_error(a, labels, bins) for a in afters) / REPEATS
    why = ""
    if len(labels) < MIN_TO_FIT:
        why = TOO_FEW.format(n=len(labels), min=MIN_TO_FIT)
    elif not nll_after < before:
        why = NO_BETTER.format(t=f"{fitted:.2f}")
    return Calibration(temperature=1.0 if why else fitted, ece_before=expected_calibration_error(probs, labels, bins),
                       ece_after=ece_after, nll_before=before, nll_after=nll_after, images=len(labels), bins=bins,
                       kept=not why, fitted=fitted, why=why)


# ----------------------------------------------------------------------------- "not sure"
@dataclass(frozen=True)
class ThresholdEffect:
    """What a "not sure below this confidence" rule would have done on the validation images."""

    threshold: float
    coverage: float  # share of images the model answers (the rest get "not sure")
    answered_accuracy: float  # accuracy on the answered images (1.0 when none is answered)
    answered: int
    total: int

    def describe(self) -> str:
        if self.total == 0:
            return _("No validation images to show the effect on.")
        if self.answered == 0:
            return _("At {threshold}, the model would say \"not sure\" for every validation image.").format(
                threshold=f"{self.threshold:.0%}")
        return _("At {threshold}, the model answers {answered} of {total} validation images "
                 "({coverage}) and is right on {accuracy} of those; "
                 "it says \"not sure\" for the other {rest}.").format(
                     threshold=f"{self.threshold:.0%}", answered=self.answered, total=self.total,
                     coverage=f"{self.coverage:.0%}", accuracy=f"{self.answered_accuracy:.1%}",
                     rest=self.total - self.answered)


def threshold_effect(probs: torch.Tensor, labels: torch.Tensor, threshold: float) -> ThresholdEffect:
    """Coverage and accuracy of the answered images when answers below `threshold` become "not sure"."""
    if len(labels) == 0:
        return ThresholdEffect(threshold, 0.0, 1.0, 0, 0)
    conf, pred = probs.max(1)
    sure = conf >= threshold
    n = int(sure.sum())
    acc = float((pred[sure] == labels[sure]).float().mean()) if n else 1.0
    return ThresholdEffect(threshold, n / len(labels), acc, n, len(labels))


def threshold_curve(probs: torch.Tensor, labels: torch.Tensor, steps: int = 21) -> list[ThresholdEffect]:
    """threshold_effect at evenly spaced thresholds from 0 to 1, for a coverage/accuracy chart."""
    return [threshold_effect(probs, labels, i / (steps - 1)) for i in range(steps)]


# ----------------------------------------------------------------------------- run folders
@dataclass(frozen=True)
class RunCalibration:
    """Everything the app shows about a run's confidence, from its folder alone."""

    calibration: Calibration
    probs_before: torch.Tensor  # the model's own validation probabilities
    probs_after: torch.Tensor  # the same, cross-fitted temperature scaling (honest "after")
    labels: torch.Tensor

    def bins_before(self) -> list[ReliabilityBin]:
        return reliability_bins(self.probs_before, self.labels, self.calibration.bins)

    def bins_after(self) -> list[ReliabilityBin]:
        return reliability_bins(self.probs_after, self.labels, self.calibration.bins)

    def threshold_effect(self, threshold: float) -> ThresholdEffect:
        """With calibrated probabilities: the ones Predict compares with the threshold."""
        return threshold_effect(self.probs_after, self.labels, threshold)

    def threshold_curve(self, steps: int = 21) -> list[ThresholdEffect]:
        return threshold_curve(self.probs_after, self.labels, steps)


def save_calibration(run_dir: str | Path, probs: torch.Tensor, labels: torch.Tensor) -> Calibration:
    """Fit on a run's validation predictions and write calibration.json beside its model."""
    result = calibrate(probs, labels)
    write_json(Path(run_dir) / CALIBRATION_FILE, result.to_dict())
    return result


def load_temperature(run_dir: str | Path) -> float:
    """The run's fitted temperature; 1.0 (the model as trained) for runs saved before calibration existed."""
    saved = RunFolder(run_dir).read_json(CALIBRATION_FILE) or {}
    t = saved.get("temperature", 1.0)
    return float(t) if isinstance(t, (int, float)) and t > 0 else 1.0


def run_calibration(run_dir: str | Path, progress: Callable[[str, int, int], None] | None = None) -> RunCalibration:
    """Calibration of a finished run, from validation.json (fitted now if calibration.json is missing).

    progress(phase, done, total), for the app's task view: the validation set can be large."""
    say = progress or (lambda phase, done, total: None)
    say(N_("reading the validation results"), 0, 3)
    ev = evaluate_run(run_dir)
    saved = RunFolder(run_dir).read_json(CALIBRATION_FILE)
    complete = isinstance(saved, dict) and {"temperature", "ece_before", "ece_after", "nll_before",
                                            "nll_after", "images"} <= saved.keys()
    say(N_("fitting the temperature"), 1, 3)
    result = Calibration.from_dict(saved) if complete else calibrate(ev.probs, ev.labels)
    say(N_("measuring it on held-out halves"), 2, 3)
    # What Predict uses: cross-fitted when a temperature is kept (honest), the model's own when none is.
    after = cross_fitted_probs(ev.probs, ev.labels) if result.kept else ev.probs
    say(N_("measuring it on held-out halves"), 3, 3)
    return RunCalibration(result, ev.probs, after, ev.labels)
