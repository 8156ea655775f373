"""Transfer-learning methods beyond plain fine-tuning, as callbacks on the one training loop.

`callbacks_for(config)` turns a TrainConfig into the callbacks its methods need; the Trainer calls it,
so the app, the command line and the tests all get the same behaviour from the same settings.
`HELP` holds one plain-language paragraph per method, shared by the app's "Advanced" section and
the README.

    l2sp.py          pull the transferred weights toward their pretrained values (L2-SP)
    distillation.py  learn from a finished run's softened outputs (knowledge distillation)
    adaptation.py    unlabelled target images: DANN, Deep CORAL, AdaBN; target accuracy
    lr_finder.py     learning-rate range test with a stable suggestion
    baseline.py      the same run from random weights, linked for comparison
"""
from __future__ import annotations

from transfer_core.core.config import TrainConfig
from transfer_core.training.callbacks import Callback

HELP: dict[str, str] = {
    "l2sp": (
        "Stay close to what the network already knows. Instead of pulling every weight toward zero (plain "
        "weight decay), L2-SP pulls the pretrained weights back toward their ImageNet values, so only the new "
        "classifier is free to move far. It helps most with few pictures per class, where fine-tuning tends "
        "to forget useful general features. Strength: 0 = off; 0.1 to 0.5 (measured with AdamW: 0.5 keeps the "
        "weights about a third closer to where they started)."),
    "distillation": (
        "Shrink a big, accurate model into a small, fast one (e.g. for a phone). Pick a finished run as the "
        "teacher; the new run (the student, usually a smaller backbone) learns both from your labels and from "
        "the teacher's softened answers, which say how similar the classes look to it. Temperature softens "
        "those answers (higher = softer, 2 to 5 is usual); alpha is how much they count versus the labels."),
    "adaptation": (
        "Your model will be used somewhere your pictures do not come from: another camera, other lighting, "
        "another factory. Add a folder of unlabelled pictures from there. DANN trains the network so that it "
        "cannot tell the two places apart; Deep CORAL matches the statistics of their features; AdaBN (cheap, "
        "no extra training) re-measures the network's normalisation statistics on the new pictures. If that "
        "folder has class sub-folders, their labels are used only to report accuracy there, never to train."),
    "scratch_baseline": (
        "Also train the same network from random weights, with the same pictures and number of epochs, and "
        "show both runs' curves together: the classroom demonstration of why starting from a pretrained "
        "network matters. The from-scratch run trains every layer (keeping random layers frozen would be "
        "an unfair comparison) and takes longer."),
    "unfreeze_at": (
        "Gradual unfreezing: start by training only the layers you left unfrozen, then, at the epochs you "
        "list, let one more frozen stage learn each time. The new classifier first settles down, so its "
        "early, random mistakes do not damage the pretrained layers. Useful with small data sets."),
    "lr_group_factor": (
        "Discriminative learning rates: earlier layers (edges, textures) are already good and need only "
        "small changes; later layers need more. Each stage further from the classifier learns at this "
        "factor times the rate of the next one (1 = all the same; 0.3 to 0.5 is usual)."),
    "head": (
        "The new classifier on top of the pretrained network. Linear: one layer, fast, enough in most "
        "cases. MLP: a hidden layer (hidden units, ReLU, dropout) before the output, the classic Keras "
        "recipe; it can help when your classes differ a lot from everyday photos."),
    "lr_find": (
        "Find a learning rate: trains for a few dozen small steps while raising the rate, and plots the "
        "loss. The suggestion is where the loss is still falling fast, well before it blows up. It runs a "
        "few sweeps and combines them, so it gives about the same answer each time."),
}


def callbacks_for(config: TrainConfig) -> list[Callback]:
    """The callbacks the config's methods need, in the order their end-of-training steps must run."""
    from transfer_core.methods.adaptation import TargetDomain
    from transfer_core.methods.distillation import Distillation
    from transfer_core.methods.l2sp import L2SP

    out: list[Callback] = []
    if config.target_data:
        # First, so AdaBN has adjusted the model before other callbacks measure it at the end.
        out.append(TargetDomain(config))
    if config.l2sp > 0 and config.pretrained:  # from random weights there is nothing to stay close to
        out.append(L2SP(config.l2sp))
    if config.teacher:
        out.append(Distillation(config))
    return out


__all__ = ["HELP", "callbacks_for"]
