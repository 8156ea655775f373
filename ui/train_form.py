"""The Train page's choices: each widget returns a value and explains what it does to training."""
from __future__ import annotations

import streamlit as st

from transfer_core.core.config import AUGMENTS, OPTIMIZERS, SETTINGS, TrainConfig
from transfer_core.core.i18n import N_, _, get_language, retranslate
from transfer_core.models.backbones import freeze_options, get_backbone, list_backbones
from transfer_core.models.freezing import describe_model_first
from transfer_core.models.weights import WORKS_OFFLINE
from transfer_core.training import crossval, progressive

from .methods_form import lr_options
from .session import remembered

DEFAULTS = TrainConfig(data="")
IMAGE_SIZES = (96, 128, 160, 192, 224, 256, 288)
BATCH_SIZES = [4, 8, 16, 32, 64, 128]
DECAYS = [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 5e-2]


def _speed(gflops: float) -> str:
    return _("fast") if gflops < 0.5 else _("medium") if gflops < 2 else _("slow") if gflops < 6 else _("very slow")


def backbone_rows() -> list[dict]:
    return _backbone_rows(get_language())


@st.cache_data(show_spinner=False)
def _backbone_rows(lang: str) -> list[dict]:
    # What decides the choice comes first (works here?), the long description last: on a narrow screen
    # the table is cut on the right, and a person must still see at a glance which networks work here.
    # `lang`: one cached table per language (the words are made in the session's language).
    return [{"network": s.name, "weights": retranslate(s.availability()),
             "speed": _speed(s.gflops), "imagenet_acc": f"{s.imagenet_top1:.1f}%",
             "million_weights": s.params_millions, "what_it_is": without_name(retranslate(s.title))}
            for s in list_backbones()]


def without_name(title: str) -> str:
    """"MobileNetV2: small and fast, ..." -> "small and fast, ...": the network column names it already, and the
    shorter text fits the table (a Chinese title has the wide colon)."""
    for colon in (": ", "："):
        _name, found, rest = title.partition(colon)
        if found and rest:
            return rest.strip()
    return title


_ROW_PX = 35  # Streamlit's row height: the table is made tall enough to show every network without a scroll


@st.cache_resource(show_spinner=False)
def _freeze_plans(name: str) -> list:
    return freeze_options(name)


def freeze_plans(name: str) -> list:
    with st.spinner(_("Measuring the network's layers...")):
        return _freeze_plans(name)


def choose_backbone() -> str:
    rows = backbone_rows()
    st.dataframe(rows, hide_index=True, width="stretch", height=_ROW_PX * (len(rows) + 1) + 3, column_config={
        "network": st.column_config.TextColumn(_("network"), width=140),
        "weights": st.column_config.TextColumn(_("works here?"), width=170,
                                               help=_("'works offline': its ImageNet weights are on this machine.")),
        "speed": st.column_config.TextColumn(_("speed"), width=75, help=_("Training speed on a laptop CPU.")),
        "imagenet_acc": st.column_config.TextColumn("ImageNet", width="small", help=_("Top-1 accuracy on "
                                                     "ImageNet's 1,000 classes: how well it learned to see, not "
                                                     "your score.")),
        "million_weights": st.column_config.NumberColumn(_("size (M)"), width="small", format="%.1f",
                                                         help=_("Millions of weights: bigger is slower.")),
        "what_it_is": st.column_config.TextColumn(_("what it is"), width="large", help=_(
            "What the network is and what it suits. The chosen one's full description is under the chooser."))})
    names = [r["network"] for r in rows]
    offline = {s.name: s.availability() for s in list_backbones()}  # the engine's words, in English
    shown = {r["network"]: r["weights"] for r in rows}
    remembered("backbone", DEFAULTS.backbone, names)
    name = st.selectbox(
        _("Pretrained network"), names,
        format_func=lambda n: f"{n} ({shown[n]})", key="backbone",
        help=_("The network that already learned to see from 1.2 million ImageNet photos. Bigger ones can be more "
             "accurate but train slower. 'works offline' means its weights are on this machine."))
    st.caption(retranslate(get_backbone(name).title))
    if offline[name] != WORKS_OFFLINE:
        st.warning(_("{name}'s pretrained weights are not on this machine ({why}). Without internet this "
                     "run will stop with a message; pick one marked 'works offline' to be sure.").format(
                         name=name, why=shown[name]))
    return name


def _depth_label(depth: int, total: int) -> str:
    if depth == 0:
        return _("0: train everything")
    if depth == total:
        return _("{depth}: all (only the new classifier)").format(depth=depth)
    return str(depth)


def choose_freeze(name: str) -> int | str:
    plans = freeze_plans(name)
    total = len(plans) - 1
    default = min(DEFAULTS.freeze, total) if isinstance(DEFAULTS.freeze, int) else total
    remembered(f"freeze_{name}", default, list(range(total + 1)))
    depth = st.select_slider(
        _("How many layers to keep frozen"), options=list(range(total + 1)),
        format_func=lambda d: _depth_label(d, total), key=f"freeze_{name}",
        help=_("Frozen layers keep what they learned on ImageNet (edges, textures, shapes) and are not changed. "
             "More frozen: faster and safer with few pictures. Fewer frozen: the network adapts more to "
             "pictures unlike everyday photos, but needs more pictures and time."))
    _plan_words(plans[depth], plans[total])
    return "all" if depth == total else depth


def _plan_words(plan, first) -> None:
    """What learns, for the way of training chosen below (drawn after this: its value is read ahead). With
    "Model first" the first model trains only the new classifier; the free stages may learn afterwards."""
    remembered("schedule", DEFAULTS.schedule, list(SCHEDULE_WORDS))
    frozen = _(", ").join(retranslate(s) for s in plan.frozen) or _("nothing")
    if st.session_state["schedule"] != "progressive" or plan.depth == plan.num_stages:
        st.caption(plan.describe())
        st.caption(_("Kept as they are: {frozen} · Learning: {training}").format(
            frozen=frozen, training=_(", ").join(retranslate(s) for s in plan.training)))
        return
    st.caption(describe_model_first(plan, first))
    st.caption(_("Kept as they are: {frozen} · Learning: the new classifier first, then perhaps {training}").format(
        frozen=frozen, training=_(", ").join(retranslate(s) for s in plan.training[:-1])))


SCHEDULE_WORDS = {"progressive": N_("Model first, then better (recommended)"), "fixed": N_("Exactly as set")}


def choose_schedule(num_val: int | None = None) -> dict:
    """TrainConfig.schedule and time_budget_minutes, in words. num_val: the validation pictures the data gives,
    when known (the Data page has checked them)."""
    remembered("schedule", DEFAULTS.schedule, list(SCHEDULE_WORDS))
    schedule = st.radio(
        _("How to train"), list(SCHEDULE_WORDS), key="schedule", format_func=lambda s: _(SCHEDULE_WORDS[s]),
        horizontal=True,
        help=_("Model first: in seconds the new classifier alone is fitted on what the frozen network sees, and "
             "that model is ready to try on Predict. Then the layers above the ones you keep start learning "
             "(the lowest of them an epoch later), and training stops by itself when the validation pictures "
             "stop getting better; a later model replaces the first only if it is clearly better. With fewer "
             "than {min} validation pictures, too few to tell, the layers learn only if that did better on "
             "{folds} trial runs that each hold out a third of all your pictures. Exactly as set: the layers you "
             "chose learn for the epochs you chose.").format(min=progressive.MIN_VAL_TO_FINE_TUNE,
                                                            folds=crossval.FOLDS))
    budget = 0.0
    if schedule == "progressive" and num_val is not None and progressive.too_few_to_fine_tune(num_val):
        st.info(_("Your pictures leave {n} for validation, fewer than {min}: too few to tell whether more training "
                  "helps. So after the first model, {folds} trial runs each hold out a third of all your pictures, "
                  "and the layers above learn only if that did better there (it takes a few times longer). "
                  "Choose \"Exactly as set\" to fine-tune anyway.").format(
                      n=num_val, min=progressive.MIN_VAL_TO_FINE_TUNE, folds=crossval.FOLDS))
    if schedule == "progressive":
        remembered("time_budget_minutes", DEFAULTS.time_budget_minutes)
        budget = st.number_input(
            _("Time limit (minutes, 0 = automatic)"), 0.0, 600.0, step=1.0, key="time_budget_minutes",
            help=_("Stop improving the model after about this long (the best model so far is kept). 0: "
                   "automatic, stop at about {times} times the time the first model took, so more pictures or a "
                   "slower computer get more time. Either way training stops earlier when the validation "
                   "pictures stop getting better, or after the epochs below.").format(times=f"{progressive.AUTO_BUDGET:g}"))
    return {"schedule": schedule, "time_budget_minutes": float(budget)}


def choose_quick_start(freeze: int | str) -> int:
    """Epochs of quick start (TrainConfig.quick_start_epochs): 1 when ticked, 0 when not or nothing to add."""
    remembered("quick_start", DEFAULTS.quick_start_epochs > 0)
    quick = st.checkbox(
        _("Quick start"), key="quick_start", disabled=freeze in ("all", 0),
        help=_("For the first epoch one more group of layers also stays frozen: that epoch runs several times "
             "faster and already learns most of the task. From the second epoch the layers you chose above "
             "learn too. Untick to train exactly as chosen from the first step. Not used when everything "
             "trains or nothing does, nor with gradual unfreezing (in Advanced methods)."))
    return DEFAULTS.quick_start_epochs if quick and freeze not in ("all", 0) else 0


def choose_basics() -> dict:
    c1, c2, c3, c4 = st.columns(4)
    remembered("epochs", DEFAULTS.epochs)
    epochs = c1.number_input(_("Epochs"), 1, 100, key="epochs",
                             help=_("How many times the model sees every training picture. More can help, until "
                                  "the validation curve stops improving. With \"Model first\" it is the most "
                                  "it may take: it stops by itself when the validation pictures stop improving."))
    remembered("lr", DEFAULTS.lr, lr_options())  # the learning-rate finder may set it too
    lr = c2.select_slider(_("Learning rate"), lr_options(),
                          format_func=lambda v: f"{v:g}", key="lr",
                          help=_("How big each correction step is. Too high and training blows up; too low and "
                               "it learns slowly. 0.001 suits most cases."))
    remembered("batch_size", DEFAULTS.batch_size, BATCH_SIZES)
    batch = c3.select_slider(_("Batch size"), BATCH_SIZES, key="batch_size",
                             help=_("Pictures per step. Larger is smoother and faster per picture but needs more "
                                  "memory. Lower it if you see an out-of-memory message."))
    remembered("augment", DEFAULTS.augment, AUGMENTS)
    augment = c4.selectbox(_("Augmentation"), AUGMENTS, key="augment",
                           format_func=lambda v: _(SETTINGS["augment"].words.get(v, v)),
                           help=_("Shows the model slightly changed copies of your pictures so it learns what "
                                "does not matter. Helps with few pictures; can hide small details (tiny "
                                "defects) when cropping cuts them off."))
    return {"epochs": int(epochs), "lr": float(lr), "batch_size": int(batch), "augment": augment}


def choose_advanced(name: str) -> dict:
    spec = get_backbone(name)
    with st.expander(_("Advanced settings")):
        c1, c2, c3 = st.columns(3)
        remembered("optimizer", DEFAULTS.optimizer, OPTIMIZERS)
        optimizer = c1.selectbox(_("Optimizer"), OPTIMIZERS, key="optimizer",
                                 format_func=lambda v: _(SETTINGS["optimizer"].words.get(v, v)),
                                 help=_("The rule that turns mistakes into weight changes. AdamW works with "
                                      "little tuning; SGD can generalise slightly better with a tuned rate."))
        remembered("weight_decay", DEFAULTS.weight_decay, DECAYS)
        decay = c2.select_slider(_("Weight decay"), DECAYS, format_func=lambda v: f"{v:g}", key="weight_decay",
                                 help=_("Gently pulls weights toward zero so the model does not memorise your "
                                      "pictures. Raise it if training accuracy is far above validation."))
        remembered("label_smoothing", DEFAULTS.label_smoothing)
        smoothing = c3.slider(_("Label smoothing"), 0.0, 0.3, step=0.05, key="label_smoothing",
                              help=_("Tells the model not to be 100% sure of any label. Helps when some labels "
                                   "may be wrong and keeps confidence honest."))
        c4, c5 = st.columns(2)
        own = spec.preprocessing.crop  # the network's own size (240 for efficientnet_lite1) is always offered
        remembered(f"image_size_{name}", own, sorted({*IMAGE_SIZES, own}))
        size = c4.select_slider(_("Image size (pixels)"), sorted({*IMAGE_SIZES, own}),
                                format_func=lambda v: _("{size} (the network's own)").format(
                                    size=v) if v == own else str(v),
                                key=f"image_size_{name}", disabled=spec.fixed_size,
                                help=_("Pictures are resized to this square. Smaller trains much faster; larger "
                                     "keeps small details. The network's own size is the default."))
        remembered("early_stopping", DEFAULTS.early_stopping)
        patience = c5.number_input(_("Early stopping (epochs without progress, 0 = off)"), 0, 50, key="early_stopping",
                                   help=_("Ends the run when the validation loss has not improved for this many "
                                        "epochs, saving time; the best model is kept either way."))
    return {"optimizer": optimizer, "weight_decay": float(decay), "label_smoothing": float(smoothing),
            "image_size": None if size == spec.preprocessing.crop else int(size),
            "early_stopping": int(patience)}
