"""Transfer-learning methods beyond plain fine-tuning, as callbacks on the one training loop.

A method is one module ending with `register(MethodSpec(...))` (registry.py) and its name on the import
line below: its settings, command-line flags, Train-page controls, figures' words and help all come from
that spec. `callbacks_for(config)` turns a TrainConfig into the callbacks its methods need; the workflows
call it, so the app, the command line and the tests all get the same behaviour from the same settings.
`HELP` holds one plain-language paragraph per method and per other training option, shared by the app's
"Advanced" section and the README.

    registry.py      MethodSpec, Option, Control, Figure; register, list_methods, callbacks_for
    l2sp.py          pull the transferred weights toward their pretrained values (L2-SP)
    ewc.py           the same pull, weighted by how much each weight matters (EWC, diagonal Fisher)
    freeze_bn.py     fine-tune with the pretrained BatchNorm layers kept frozen (hooks after_train_mode,
                     before_optimizer_step)
    distillation.py  learn from a finished run's softened outputs (knowledge distillation)
    adaptation.py    unlabelled target images: DANN, Deep CORAL, AdaBN; target accuracy
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from transfer_core.core.i18n import N_

# The registration line: importing a method's module registers it (its last statement is register(...)).
from transfer_core.methods import adaptation, distillation, ewc, freeze_bn, l2sp  # noqa: F401
from transfer_core.methods.registry import (
    Control,
    Figure,
    MethodSpec,
    Option,
    callbacks_for,
    figure_words,
    get_method,
    list_methods,
    register,
    resume_problem,
    unregister,
)

# Help for training options that are not methods of their own (the trainer and the workflows do them).
OTHER_HELP: dict[str, str] = {
    "scratch_baseline": (
        N_("Also train the same network from random weights, with the same pictures and number of epochs, and "
        "show both runs' curves together: the classroom demonstration of why starting from a pretrained "
        "network matters. The from-scratch run trains every layer (keeping random layers frozen would be "
        "an unfair comparison) and takes longer.")),
    "unfreeze_at": (
        N_("Gradual unfreezing: start by training only the layers you left unfrozen, then, at the epochs you "
        "list, let one more frozen stage learn each time. The new classifier first settles down, so its "
        "early, random mistakes do not damage the pretrained layers. Useful with small data sets.")),
    "lr_group_factor": (
        N_("Discriminative learning rates: earlier layers (edges, textures) are already good and need only "
        "small changes; later layers need more. Each stage further from the classifier learns at this "
        "factor times the rate of the next one (1 = all the same; 0.3 to 0.5 is usual).")),
    "head": (
        N_("The new classifier on top of the pretrained network. Linear: one layer, fast, enough in most "
        "cases. MLP: a hidden layer (hidden units, ReLU, dropout) before the output, the classic Keras "
        "recipe; it can help when your classes differ a lot from everyday photos.")),
    "lr_find": (
        N_("Find a learning rate: trains for a few dozen small steps while raising the rate, and plots the "
        "loss. The suggestion is where the loss is still falling fast, well before it blows up. It runs a "
        "few sweeps and combines them, so it gives about the same answer each time.")),
}


class _Help(Mapping):
    """Each registered method's help (read from its spec at each use, so one registered later has its
    own too), then the other options'."""

    def _all(self) -> dict[str, str]:
        return {**{m.name: m.help for m in list_methods()}, **OTHER_HELP}

    def __getitem__(self, key: str) -> str:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


HELP: Mapping[str, str] = _Help()

__all__ = ["HELP", "OTHER_HELP", "Control", "Figure", "MethodSpec", "Option", "callbacks_for", "figure_words",
           "get_method", "list_methods", "register", "resume_problem", "unregister"]
