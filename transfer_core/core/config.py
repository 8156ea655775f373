"""TrainConfig: every choice a training run makes, validated once, saved beside the model."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

AUGMENTS = ("none", "light", "strong")
OPTIMIZERS = ("adamw", "sgd")
HEADS = ("linear", "mlp")
ADAPTS = ("dann", "coral", "adabn")
# progressive: a head-only model first (seconds), then stages thaw from the top while validation improves;
# fixed: the chosen freeze depth for the chosen epochs (quick start / gradual unfreezing as set).
SCHEDULES = ("progressive", "fixed")


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


@dataclass(frozen=True)
class TrainConfig:
    data: str
    backbone: str = "mobilenet_v2"
    # How many of the backbone's stages keep their ImageNet weights unchanged: an int, or "all" for
    # feature extraction (only the new head trains). Default chosen by measurement (README, "Defaults").
    freeze: int | str = 3
    # Quick start: for the first N epochs one more stage than `freeze` stays frozen. Its output is then
    # cached too, so those epochs run several times faster, and they already learn most of the task;
    # afterwards the chosen depth trains (README, "Defaults"). 0 = off. Not used with freeze 0 or "all",
    # nor combined with unfreeze_at.
    quick_start_epochs: int = 1
    epochs: int = 4
    lr: float = 1e-3
    batch_size: int = 32
    image_size: int | None = None  # None: the backbone's own size (224 for most)
    seed: int = 0
    val_split: float = 0.2
    # Half of the validation share becomes a test share that nothing is tuned on, when every class has
    # datasets.TEST_MIN_PER_CLASS pictures: its accuracy is the headline figure (evaluation.py).
    test_share: bool = True
    augment: str = "none"
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    early_stopping: int = 0  # stop after this many epochs without a better validation loss; 0 = off
    head: str = "linear"
    mlp_hidden: int = 512
    dropout: float = 0.2
    pretrained: bool = True  # False: random initialisation (the from-scratch baseline)
    weights_file: str | None = None
    # --- methods beyond plain fine-tuning (issue: transfer-learning methods)
    l2sp: float = 0.0  # >0: pull transferred weights toward their pretrained values instead of decay
    teacher: str | None = None  # run folder of a trained model to distil from
    distill_temperature: float = 4.0
    distill_alpha: float = 0.5  # weight of the teacher's soft targets (1 - alpha on the true labels)
    target_data: str | None = None  # unlabelled images from where the model will be used
    adapt: str | None = None  # dann | coral | adabn
    adapt_weight: float = 1.0
    unfreeze_at: tuple[int, ...] = ()  # gradual unfreezing: epochs at which one more stage thaws
    lr_group_factor: float = 1.0  # discriminative rates: each earlier stage gets lr * factor^depth
    # --- engine
    device: str | None = None  # None: CUDA when available, else CPU
    cache_mb: int = 3000  # memory for decoded images and cached features; beyond it, images stream from disk
    # With augmentation and frozen stages: how many augmented views of each image to run through the
    # frozen stages once and reuse (0 = a fresh view every batch, slower). See features.py.
    feature_views: int = 2
    # Memory for the activations one training step keeps for its backward pass. A batch that needs more is
    # run in parts whose gradients add up before the one update (stepmemory.py). 0 = never split.
    step_memory_mb: int = 1200
    max_images: int | None = None  # use at most this many training images (quick trials, tests)
    schedule: str = "fixed"
    time_budget_minutes: float = 0.0  # progressive: stop improving after about this long; 0 = epochs decide
    tags: dict = field(default_factory=dict)  # free-form labels, e.g. {"compare_to": run id}

    def __post_init__(self):
        check = _Checker()
        check.choice("augment", self.augment, AUGMENTS)
        check.choice("optimizer", self.optimizer, OPTIMIZERS)
        check.choice("head", self.head, HEADS)
        check.choice("schedule", self.schedule, SCHEDULES)
        check.that(self.time_budget_minutes >= 0, "the time budget must be >= 0 minutes (0 = no limit)")
        if self.adapt is not None:
            check.choice("adapt", self.adapt, ADAPTS)
            check.that(self.target_data is not None, "adapt needs target_data: a folder of unlabelled images")
        if not (self.freeze == "all" or (isinstance(self.freeze, int) and self.freeze >= 0)):
            check.fail(f"freeze must be a whole number >= 0 or 'all', not {self.freeze!r}")
        check.that(1 <= self.epochs <= 1000, "epochs must be between 1 and 1000")
        check.that(0 < self.lr <= 10, "learning rate must be above 0 (typical: 0.0001 to 0.01)")
        check.that(1 <= self.batch_size <= 4096, "batch size must be between 1 and 4096")
        check.that(self.image_size is None or 32 <= self.image_size <= 1024, "image size must be 32 to 1024 px")
        check.that(0 < self.val_split < 1, "validation share must be between 0 and 1 (e.g. 0.2)")
        check.that(self.weight_decay >= 0 and self.l2sp >= 0, "weight decay and L2-SP must be >= 0")
        check.that(0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)")
        check.that(0 <= self.dropout < 1, "dropout must be in [0, 1)")
        check.that(0 <= self.distill_alpha <= 1 and self.distill_temperature > 0,
                   "distillation alpha must be in [0, 1] and temperature > 0")
        check.that(0 < self.lr_group_factor <= 1, "the per-stage learning-rate factor must be in (0, 1]")
        check.that(all(e >= 1 for e in self.unfreeze_at), "unfreeze epochs start at 1")
        late = [e for e in self.unfreeze_at if e > self.epochs]
        check.that(not late, f"unfreezing at epoch {', '.join(map(str, late))} can never happen in a run of "
                             f"{self.epochs} epochs: choose epochs from 1 to {self.epochs}, or train longer")
        check.that(self.feature_views >= 0, "feature_views must be >= 0")
        check.that(self.quick_start_epochs >= 0, "quick start epochs must be >= 0 (0 = off)")
        check.that(self.step_memory_mb >= 0, "step_memory_mb must be >= 0 (0 = never split a batch)")
        check.raise_if_any()
        object.__setattr__(self, "unfreeze_at", tuple(sorted(int(e) for e in self.unfreeze_at)))

    # ---- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["unfreeze_at"] = list(self.unfreeze_at)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}  # tolerate configs from newer/older versions
        d.setdefault("quick_start_epochs", 0)  # runs saved before quick start existed resume as they began
        d.setdefault("test_share", False)  # so did runs saved before the test share
        d.setdefault("schedule", "fixed")  # and before the progressive schedule
        if "unfreeze_at" in d:
            d["unfreeze_at"] = tuple(d["unfreeze_at"])
        return cls(**d)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def differences(self, other: "TrainConfig") -> dict[str, tuple]:
        """Settings that differ between two runs: {name: (mine, theirs)}."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


class _Checker:
    def __init__(self):
        self.problems: list[str] = []

    def that(self, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(message)

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def choice(self, name: str, value, allowed) -> None:
        self.that(value in allowed, f"{name} must be one of {', '.join(allowed)}, not {value!r}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError("; ".join(self.problems))
