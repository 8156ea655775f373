"""TrainConfig: every choice a training run makes, validated once, saved beside the model."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from transfer_core.core.settings import added_settings, field_settings, setting
from transfer_core.core.i18n import N_, _

AUGMENTS = ("none", "light", "strong")
OPTIMIZERS = ("adamw", "sgd")
HEADS = ("linear", "mlp")
ADAPTS = ("dann", "coral", "adabn")
# progressive: a head-only model first (seconds), then stages thaw from the top while validation improves;
# fixed: the chosen freeze depth for the chosen epochs (quick start / gradual unfreezing as set).
SCHEDULES = ("progressive", "fixed")


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


def _freeze_text(text: str) -> int | str:
    return "all" if text == "all" else int(text)


def _epochs_text(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


@dataclass(frozen=True)
class TrainConfig:
    # Each field's `setting(...)` (core/settings.py) is its one description: the command line's flag and help,
    # the allowed choices that validation, the CLI and the app all offer. Comments say why a default is so.
    data: str = setting(help=N_("image folder (one sub-folder per class, or train/ and val/), or a .zip"),
                        flag="data", path=True)
    backbone: str = setting("mobilenet_v2", N_("pretrained network (see: python -m transfer_core backbones)"))
    # How many of the backbone's stages keep their ImageNet weights unchanged: an int, or "all" for
    # feature extraction (only the new head trains). Default chosen by measurement (README, "Defaults").
    freeze: int | str = setting(3, N_("stages kept frozen: a number or 'all'"), parse=_freeze_text)
    # Quick start: for the first N epochs one more stage than `freeze` stays frozen. Its output is then
    # cached too, so those epochs run several times faster, and they already learn most of the task;
    # afterwards the chosen depth trains (README, "Defaults"). 0 = off. Not used with freeze 0 or "all",
    # nor combined with unfreeze_at.
    quick_start_epochs: int = setting(1, N_("epochs at the start with one more stage frozen (faster; 0 = off)"))
    epochs: int = setting(8, N_("times the model sees every training picture (progressive: at most)"))
    lr: float = setting(1e-3, N_("learning rate (typical: 0.0001 to 0.01; see lr-find)"))
    batch_size: int = setting(32, N_("pictures per step (lower it when memory runs out)"))
    image_size: int | None = setting(None, N_("square size pictures are resized to (default: the backbone's own)"),
                                     parse=int)  # None: the backbone's own size (224 for most)
    seed: int = setting(0, N_("random seed: the split, the batch order and the new layers' start"))
    val_split: float = setting(0.2, N_("share of the pictures kept for validation"))
    # Half of the validation share becomes a test share that nothing is tuned on, when every class has
    # datasets.TEST_MIN_PER_CLASS pictures: its accuracy is the headline figure (evaluation.py).
    test_share: bool = setting(True, N_("keep half of the validation share for a final test"), flag=None)
    augment: str = setting("none", N_("changed copies of the pictures while training"), choices=AUGMENTS,
                           words={"none": N_("none"), "light": N_("light (flip + crop)"),
                                  "strong": N_("strong (also colour, rotation)")})
    optimizer: str = setting("adamw", N_("the rule that turns mistakes into weight changes"), choices=OPTIMIZERS,
                             words={"adamw": N_("AdamW (adapts step sizes)"), "sgd": N_("SGD with momentum (classic)")})
    weight_decay: float = setting(1e-4, N_("pull of the weights toward zero (against memorising)"))
    momentum: float = setting(0.9, N_("SGD's momentum (0 = none)"))
    warmup_epochs: float = setting(0.5, N_("epochs over which the learning rate rises to its value"))
    label_smoothing: float = setting(0.1, N_("share of each label's certainty spread over the other classes"))
    early_stopping: int = setting(0, N_("stop after this many epochs without a better validation loss (0 = off)"),
                                  metavar="PATIENCE")
    head: str = setting("linear", N_("the new classifier: one layer, or a small network"), choices=HEADS,
                        words={"linear": N_("one layer (linear)"), "mlp": N_("small network (MLP)")})
    mlp_hidden: int = setting(512, N_("hidden units of the mlp head"))
    dropout: float = setting(0.2, N_("dropout before the head's last layer"))
    pretrained: bool = setting(True, N_("start from pretrained weights"), flag=None)  # False: the from-scratch baseline
    weights_file: str | None = setting(None, N_("your own weights file (.pth/.safetensors)"), flag="--weights",
                                       path=True)
    # --- methods beyond plain fine-tuning (transfer_core/methods: each MethodSpec names its fields here).
    # Fields, not method_settings, because run folders saved before the registry store them at the top level.
    l2sp: float = setting(0.0, N_("L2-SP strength: pull transferred weights toward their pretrained values "
                               "instead of toward zero (0 = off)"), metavar="LAMBDA")
    teacher: str | None = setting(None, N_("a finished run to learn from (knowledge distillation)"), metavar="RUN_DIR",
                                  path=True)
    distill_temperature: float = setting(
        4.0, N_("How much the teacher's answers are softened before the student copies them."))
    distill_alpha: float = setting(  # the true labels get 1 - alpha
        0.5, N_("Weight of the teacher: 0, only your labels count; 1, only the teacher's answers count."))
    target_data: str | None = setting(
        None, N_("Unlabelled pictures from where the model will be used. No labels needed: class sub-folders, if "
              "present, are used only to report accuracy there."), metavar="DIR", path=True)
    adapt: str | None = setting(None, N_("how to adapt to the target pictures"), choices=ADAPTS,
                                words={"dann": N_("DANN (adversarial)"), "coral": N_("Deep CORAL (match feature statistics)"),
                                       "adabn": N_("AdaBN (re-measure normalisation only)")})
    adapt_weight: float = setting(1.0, N_("weight of the DANN/CORAL loss"))
    unfreeze_at: tuple[int, ...] = setting((), N_("gradual unfreezing: epochs at which one more stage thaws"),
                                           metavar="E1,E2,...", parse=_epochs_text)
    lr_group_factor: float = setting(1.0, N_("discriminative rates: each earlier stage gets lr * factor^depth"))
    # --- engine
    device: str | None = setting(None, N_("cpu, cuda, cuda:1 ... (default: CUDA when present)"))
    # 0: automatic, a share of the machine's memory or TRANSFER_STUDIO_MEMORY_MB (core/memory.py).
    cache_mb: int = setting(0, N_("memory (MB) for decoded pictures and cached features; beyond it they are read "
                                  "from disk (0 = automatic)"))
    # With augmentation and frozen stages: how many augmented views of each image to run through the
    # frozen stages once and reuse (0 = a fresh view every batch, slower). See features.py.
    feature_views: int = setting(2, N_("augmented views of each image computed once through the frozen stages"))
    # Memory for the activations one training step keeps for its backward pass. A batch that needs more is
    # run in parts whose gradients add up before the one update (stepmemory.py). 0 = never split.
    step_memory_mb: int = setting(1200, N_("memory for one step's activations; a batch needing more is learned "
                                        "from in parts"))
    max_images: int | None = setting(None, N_("use at most this many training images"), parse=int)
    schedule: str = setting("progressive", N_("progressive: a head-only model first, then stages thaw from the top while "
                                     "validation improves; fixed: the chosen freeze depth for the chosen epochs"),
                            choices=SCHEDULES)
    time_budget_minutes: float = setting(  # 0: automatic (training/progressive.py, AUTO_BUDGET)
        0.0, N_("progressive: stop improving after about this many minutes (0 = automatic: at about six times "
                "the time the first model took)"))
    tags: dict = field(default_factory=dict)  # free-form labels, e.g. {"compare_to": run id}
    # Settings of methods registered later, by name (core/settings.added_settings): a new method adds no field.
    method_settings: dict = field(default_factory=dict)

    def __post_init__(self):
        check = _Checker()
        for s in SETTINGS.values():
            if s.choices:
                check.problem(s.problem(getattr(self, s.name)))
        check.that(self.time_budget_minutes >= 0, _("the time budget must be >= 0 minutes (0 = automatic)"))
        check.that(self.adapt is None or self.target_data is not None,
                   _("adapt needs target_data: a folder of unlabelled images"))
        self._check_method_settings(check)
        if not (self.freeze == "all" or (isinstance(self.freeze, int) and self.freeze >= 0)):
            check.fail(_("freeze must be a whole number >= 0 or 'all', not {freeze!r}").format(freeze=self.freeze))
        check.that(1 <= self.epochs <= 1000, _("epochs must be between 1 and 1000"))
        check.that(0 < self.lr <= 10, _("learning rate must be above 0 (typical: 0.0001 to 0.01)"))
        check.that(1 <= self.batch_size <= 4096, _("batch size must be between 1 and 4096"))
        check.that(self.image_size is None or 32 <= self.image_size <= 1024, _("image size must be 32 to 1024 px"))
        check.that(0 < self.val_split < 1, _("validation share must be between 0 and 1 (e.g. 0.2)"))
        check.that(self.weight_decay >= 0 and self.l2sp >= 0, _("weight decay and L2-SP must be >= 0"))
        check.that(0 <= self.label_smoothing < 1, _("label smoothing must be in [0, 1)"))
        check.that(0 <= self.dropout < 1, _("dropout must be in [0, 1)"))
        check.that(0 <= self.distill_alpha <= 1 and self.distill_temperature > 0,
                   _("distillation alpha must be in [0, 1] and temperature > 0"))
        check.that(0 < self.lr_group_factor <= 1, _("the per-stage learning-rate factor must be in (0, 1]"))
        check.that(all(e >= 1 for e in self.unfreeze_at), _("unfreeze epochs start at 1"))
        late = [e for e in self.unfreeze_at if e > self.epochs]
        check.that(not late, _("unfreezing at epoch {late} can never happen in a run of {epochs} epochs: choose epochs "
                               "from 1 to {epochs}, or train longer").format(
                                   late=', '.join(map(str, late)), epochs=self.epochs))
        check.that(self.feature_views >= 0, _("feature_views must be >= 0"))
        check.that(self.quick_start_epochs >= 0, _("quick start epochs must be >= 0 (0 = off)"))
        check.that(self.step_memory_mb >= 0, _("step_memory_mb must be >= 0 (0 = never split a batch)"))
        check.raise_if_any()
        object.__setattr__(self, "unfreeze_at", tuple(sorted(int(e) for e in self.unfreeze_at)))

    def _check_method_settings(self, check: _Checker) -> None:
        # Names no registered method knows are kept as they are (a run saved with a method since removed
        # still loads); methods.callbacks_for refuses them before training.
        added = added_settings()
        for name, value in self.method_settings.items():
            check.that(name not in SETTINGS, f"{name} is a setting of its own, not one of method_settings")
            if name in added:
                check.problem(added[name].problem(value))

    # ---- settings by name, wherever they are kept ----------------------------------------------
    def setting(self, name: str):
        """A setting's value: a field's, or a method's added setting (method_settings, else its default)."""
        if name in self.__dataclass_fields__:
            return getattr(self, name)
        if name in self.method_settings:
            return self.method_settings[name]
        added = added_settings().get(name)
        if added is None:
            raise KeyError(f"no setting named {name!r}")
        return added.default

    def flat(self) -> dict:
        """Every setting by name, the fields and the methods' added settings side by side."""
        d = self.to_dict()
        added = d.pop("method_settings")
        return {**d, **{n: s.default for n, s in added_settings().items()}, **added}

    @classmethod
    def from_settings(cls, values: dict) -> TrainConfig:
        """From flat settings, as the command line and the app collect them: a method's added setting goes
        into method_settings; a name that is neither is refused in words."""
        names, added = {f.name for f in fields(cls)}, added_settings()
        unknown = [k for k in values if k not in names and k not in added]
        if unknown:
            raise ConfigError(f"unknown setting {', '.join(unknown)}")
        plain = {k: v for k, v in values.items() if k in names}
        extra = {**plain.pop("method_settings", {}), **{k: v for k, v in values.items() if k in added}}
        return cls(**plain, method_settings=extra)

    # ---- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["unfreeze_at"] = list(self.unfreeze_at)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
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
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def differences(self, other: TrainConfig) -> dict[str, tuple]:
        """Settings that differ between two runs: {name: (mine, theirs)}."""
        a, b = self.flat(), other.flat()
        return {k: (a.get(k), b.get(k)) for k in {**a, **b} if a.get(k) != b.get(k)}


class _Checker:
    def __init__(self):
        self.problems: list[str] = []

    def that(self, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(message)

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def problem(self, message: str | None) -> None:
        if message:
            self.problems.append(message)

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError("; ".join(self.problems))


SETTINGS = field_settings(TrainConfig)  # every described field's Setting, by name, in field order
