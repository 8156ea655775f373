"""Knowledge distillation (Hinton, Vinyals & Dean, 2015): a student learns from a finished run's outputs.

loss = (1 - alpha) * CE(labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The teacher is a run folder (any backbone); its preprocessing (size, mean, std) may differ from the
student's, so it always sees images prepared its own way:
- without augmentation, the teacher's logits for every training image are computed once, from the
  files, with the teacher's own pipeline; the student keeps its feature cache (the fast path);
- with augmentation, the teacher sees the student's augmented view, converted to the teacher's size
  and normalisation, so both look at the same crop (the frozen part then runs on every batch).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from transfer_core.core.config import ConfigError, TrainConfig
from transfer_core.data.imagecache import ImageStore
from transfer_core.inference.predict import LoadedModel, load_model
from transfer_core.methods.registry import Control, Figure, MethodSpec, Option, register
from transfer_core.models.augment import eval_view
from transfer_core.models.preprocessing import Preprocessing
from transfer_core.training.callbacks import Callback
from transfer_core.core.i18n import N_, _


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher || student) on temperature-softened outputs; T^2 keeps gradients comparable to CE."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits.float() / t, 1), F.log_softmax(teacher_logits.float() / t, 1),
                    reduction="batchmean", log_target=True) * t * t


@torch.no_grad()
def teacher_logits(teacher: LoadedModel, paths: Sequence[Path], batch_size: int = 32, check_stop=None) -> torch.Tensor:
    """The teacher's logits for image files, prepared exactly as the teacher was trained (one pass)."""
    store = ImageStore(list(paths), teacher.prep, budget_bytes=0)  # streamed: decoded once, not kept
    out = []
    for i in range(0, len(store), batch_size):
        if check_stop:
            check_stop()
        idx = torch.arange(i, min(i + batch_size, len(store)))
        out.append(teacher.net(eval_view(store.batch(idx).to(teacher.device), teacher.prep)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, len(teacher.classes))


def convert_view(images: torch.Tensor, source: Preprocessing, target: Preprocessing) -> torch.Tensor:
    """A batch normalised for one network -> the same pixels sized and normalised for another."""
    def stats(prep, like):
        return (torch.tensor(prep.mean, device=like.device).view(1, 3, 1, 1),
                torch.tensor(prep.std, device=like.device).view(1, 3, 1, 1))

    mean, std = stats(source, images)
    x = images * std + mean
    if x.shape[-1] != target.crop:
        x = F.interpolate(x, size=(target.crop, target.crop), mode="bilinear", antialias=True, align_corners=False)
    mean, std = stats(target, x)
    return (x - mean) / std


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of images on which two sets of scores pick the same class."""
    return float((a.argmax(1) == b.argmax(1)).float().mean()) if len(a) else 0.0


class Distillation(Callback):
    def __init__(self, config: TrainConfig):
        self.run_dir = config.teacher
        self.temperature = config.distill_temperature
        self.alpha = config.distill_alpha
        self.label_weight = 1.0 - config.distill_alpha
        self.needs_images = config.augment != "none"
        self.teacher: LoadedModel | None = None
        self.train_logits: torch.Tensor | None = None
        self.val_logits: torch.Tensor | None = None

    def before_fit(self, trainer) -> None:
        try:
            self.teacher = load_model(self.run_dir, device=trainer.device)
        except FileNotFoundError as exc:
            raise ConfigError(_("The teacher must be a finished run: {exc}").format(exc=exc)) from None
        if list(self.teacher.classes) != list(trainer.classes):
            raise ConfigError(
                _("The teacher run knows the classes {teacher}, but these images have {ours}. Choose a "
                  "teacher trained on the same classes.").format(
                      teacher=', '.join(self.teacher.classes), ours=', '.join(trainer.classes)))
        self.teacher.net.eval()
        self.val_logits = teacher_logits(self.teacher, [s.path for s in trainer.val_samples],
                                         check_stop=trainer.check_stop)
        if not self.needs_images:
            self.train_logits = teacher_logits(self.teacher, [s.path for s in trainer.train_samples],
                                               check_stop=trainer.check_stop)
            self.teacher = None  # not needed any more: free its memory

    def _batch_teacher_logits(self, trainer, batch) -> torch.Tensor:
        if self.train_logits is not None:
            return self.train_logits[batch.idx].to(batch.y.device)
        with torch.no_grad():
            return self.teacher.net(convert_view(batch.images, trainer.prep, self.teacher.prep)).float()

    def extra_loss(self, trainer, batch, logits) -> torch.Tensor | None:
        if self.alpha == 0:
            return None
        return self.alpha * distillation_loss(logits, self._batch_teacher_logits(trainer, batch), self.temperature)

    def after_epoch(self, trainer, epoch: int, extra: dict) -> None:
        extra["teacher_agreement"] = round(self.student_agreement(trainer), 4)

    def after_fit(self, trainer) -> None:
        trainer.final_extra["teacher_agreement"] = round(self.student_agreement(trainer), 4)
        trainer.final_extra["teacher_val_accuracy"] = round(
            float((self.val_logits.argmax(1) == trainer.val_y).float().mean()), 4)

    def student_agreement(self, trainer) -> float:
        """How often the student picks the teacher's class on the validation images."""
        _, _, probs = trainer.evaluate()
        return agreement(probs, self.val_logits)


SPEC = register(MethodSpec(
    name="distillation", order=20, title=N_("Knowledge distillation: learn from a finished run"),
    help=(
        N_("Shrink a big, accurate model into a small, fast one (e.g. for a phone). Pick a finished run as the "
        "teacher; the new run (the student, usually a smaller backbone) learns both from your labels and from "
        "the teacher's softened answers, which say how similar the classes look to it. Temperature softens "
        "those answers (higher = softer, 2 to 5 is usual); alpha is how much they count versus the labels.")),
    options=(Option("teacher", Control(N_("Learn from a teacher model (knowledge distillation)"), "run",
                                       words={"": N_("no teacher")})),
             Option("distill_temperature", Control(N_("Temperature"), "slider", values=(1.0, 10.0, 0.5))),
             Option("distill_alpha", Control(N_("Weight of the teacher"), "slider", values=(0.0, 1.0, 0.1)))),
    build=lambda config: Distillation(config) if config.teacher else None,
    figures=(Figure("teacher_agreement", N_("Agrees with the teacher"), "{:.1%}"),
             Figure("teacher_val_accuracy", N_("The teacher's validation accuracy"), "{:.1%}")),
))
