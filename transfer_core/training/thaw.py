"""When frozen stages start to learn: one schedule, kept in a callback (Lightning's `BaseFinetuning` idea).

The loop offers the mechanism (`Trainer.thaw_one_stage`: one more stage learns, with its own optimizer
group); the schedule decides when. Two schedules people choose today are one set of epochs:
- quick start keeps one more stage frozen (its output cached) for the first epochs, then lets it learn;
- gradual unfreezing lets one more frozen stage learn at each epoch listed.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from transfer_core.core.config import TrainConfig
from transfer_core.core.events import StageThawed
from transfer_core.core.i18n import _
from transfer_core.training.callbacks import Callback


class ThawSchedule(Callback):
    """Thaws the last frozen stage at the start of each epoch in `epochs` (or as many stages as `epochs`
    maps the epoch to), while a stage is still frozen."""

    careful_selection = False  # True: a later epoch must beat the validation share's noise to be kept (selection.py)

    def __init__(self, epochs: Iterable[int] | Mapping[int, int] = (), *, quick_start_epochs: int = 0):
        self.plan = dict(epochs) if isinstance(epochs, Mapping) else {e: 1 for e in epochs}  # epoch -> stages
        self.epochs = frozenset(e for e, n in self.plan.items() if n)
        self.quick_start_epochs = quick_start_epochs  # > 0: one extra stage starts frozen (quick start)

    @classmethod
    def from_config(cls, config: TrainConfig, depth: int, num_stages: int) -> ThawSchedule:
        """Quick start applies only where it saves work: not with gradual unfreezing (its own thaws), nor
        when nothing or everything is frozen (caching the stem's output would hold ~10x the memory of the
        pictures themselves, to skip a cheap layer)."""
        n = config.quick_start_epochs
        if 0 < n < config.epochs and 0 < depth < num_stages and not config.unfreeze_at:
            return cls(frozenset({n + 1}), quick_start_epochs=n)
        return cls(frozenset(config.unfreeze_at))

    def start_depth(self, chosen: int) -> int:
        """How many stages are frozen at the start, given the depth the person chose."""
        return chosen + (1 if self.quick_start_epochs else 0)

    def epoch_range(self, epochs: int, num_val: int) -> tuple[int, int]:
        """The fewest and the most epochs the run may train (the time left prices both): here all of them."""
        return epochs, epochs

    def depths(self, start: int, epochs: int) -> list[int]:
        """The frozen depth during each epoch 1..epochs (what the time estimate prices)."""
        return [max(0, start - sum(n for t, n in self.plan.items() if t <= e)) for e in range(1, epochs + 1)]

    def depths_to_keep(self, epoch: int, depth: int) -> list[int]:
        """Shallower depths whose frozen outputs the feature cache may compute first and keep (the first
        that fits in memory), so the thaws after `epoch` need no pass over the pictures: the shallowest
        depth they reach (every later thaw then runs on from it), else the next thaw's depth."""
        ahead = sorted(e for e in self.epochs if e > epoch)
        if not ahead:
            return []
        depths = [depth - sum(self.plan[e] for e in ahead), depth - self.plan[ahead[0]]]
        return [d for d in dict.fromkeys(depths) if 0 < d < depth]

    def before_epoch(self, trainer, epoch: int) -> None:
        stages = min(self.plan.get(epoch, 0), trainer.depth)
        for left in reversed(range(stages)):  # the feature cache is prepared once, for the last of them
            thaw(trainer, epoch, prepare_cache=left == 0)

    def replay(self, trainer, through: int) -> None:
        """A resumed run thaws the same stages the interrupted one had thawed by epoch `through`, so its
        optimizer has the same groups (the feature cache is prepared once afterwards)."""
        for epoch in range(1, through + 1):
            for _stage in range(min(self.plan.get(epoch, 0), trainer.depth)):
                trainer.thaw_one_stage(epoch, prepare_cache=False)

    def words(self, stage_names: list[str], depth: int) -> str:
        if not self.quick_start_epochs:
            return ""
        n = self.quick_start_epochs
        first = _("the first epoch") if n == 1 else _("the first {n} epochs").format(n=n)
        return " " + _("Quick start: this holds for {first}; then {stage} learns too, as you chose.").format(
            first=first, stage=stage_names[depth - 1])


def thaw(trainer, epoch: int, *, prepare_cache: bool = True) -> None:
    """One more stage learns from this epoch on; the curves mark it (StageThawed: a phase of the run)."""
    trainer.thaw_one_stage(epoch, prepare_cache=prepare_cache)
    trainer.emit(trainer.event(StageThawed, epoch=epoch, stage=trainer.net.stage_names[trainer.depth],
                               depth=trainer.depth))
