"""The run folder's layout, in one place: every file a run keeps, and the typed records written and read back.

    runs/<id>/config.json         the TrainConfig (paths as data references: datarefs)
              events.jsonl        every event, appended as it happens
              classes.json        class names, in label order
              preprocessing.json  what images go through before the model
              model.json          how to rebuild the network (ModelDescription)
              best.pt             the best epoch's weights
              checkpoint.pt       the last finished epoch, to resume from
              dataset.json        what the data scan found (counts, skipped files, fingerprint)
              validation.json     the best model's predictions on the validation pictures (Predictions)
              test.json           ... on the test share nothing was tuned on (Predictions)
              calibration.json    the fitted temperature and its figures
              novelty.pt / .json  the unfamiliar-picture check (novelty.py)
              process.json        which process trains it (running or interrupted)
              owner.json          a hash of who started it in the app; name.json its display name
              share.json          whether its owner shares it (and its pictures) with everyone on the server
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

CONFIG = "config.json"
EVENTS = "events.jsonl"
CLASSES = "classes.json"
PREPROCESSING = "preprocessing.json"
MODEL = "model.json"
BEST = "best.pt"
CHECKPOINT = "checkpoint.pt"
DATASET = "dataset.json"
VALIDATION = "validation.json"
TEST = "test.json"
CALIBRATION = "calibration.json"
NOVELTY_WEIGHTS = "novelty.pt"
NOVELTY = "novelty.json"
PROCESS = "process.json"
OWNER = "owner.json"
NAME = "name.json"
SHARE = "share.json"


@dataclass(frozen=True)
class ModelDescription:
    """model.json: what rebuilds the network without the training config."""
    backbone: str
    num_classes: int
    head: str = "linear"
    mlp_hidden: int = 512
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelDescription":
        return cls(**{k: d[k] for k in ("backbone", "num_classes", "head", "mlp_hidden", "dropout") if k in d})


@dataclass(frozen=True)
class Predictions:
    """validation.json / test.json: a model's class probabilities for pictures named below a data reference."""
    root: str | None  # a datarefs reference, never a server path
    names: list[str]  # paths below root, in the order of labels and probs
    labels: list[int]
    probs: list[list[float]]

    def to_dict(self) -> dict:
        return {"root": self.root, "names": self.names, "labels": self.labels,
                "probs": [[round(float(v), 6) for v in row] for row in self.probs]}

    @classmethod
    def from_dict(cls, d: dict) -> "Predictions":
        return cls(d.get("root"), list(d.get("names", [])), list(d.get("labels", [])), list(d.get("probs", [])))
