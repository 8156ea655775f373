"""The method registry: a method is one module that ends with `register(MethodSpec(...))`.

From the spec come the method's settings (TrainConfig fields it names, or settings it adds, kept in
config.method_settings), their command-line flags (cli.py), their controls on the Train page
(ui/methods_form.py), the words for the figures it reports (ui/live.py), its help text and its callback
(callbacks_for). Nothing else needs to know the method exists (timm's model registry, for methods).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from transfer_core.core.config import SETTINGS, ConfigError, TrainConfig
from transfer_core.core.settings import Setting, add_setting, remove_setting
from transfer_core.training.callbacks import Callback

CONTROL_KINDS = ("slider", "levels", "choice", "run", "folder")


@dataclass(frozen=True)
class Control:
    """How a setting appears on the Train page (drawn by ui/method_controls.py, the engine draws nothing).

    slider: `values` = (low, high, step); levels: a slider over the `values` offered; choice: a drop-down
    of `values` (default: the setting's choices, with "" for off when its default is None); run: a finished
    run, its folder the value; folder: pictures uploaded as a folder, its path the value."""
    label: str
    kind: str = "slider"
    values: tuple = ()
    words: dict = field(default_factory=dict)  # value -> what the person reads (default: the setting's words)
    help: str = ""  # default: the setting's help; the method's help for its first control


@dataclass(frozen=True)
class Option:
    """One setting of a method: a TrainConfig field named here, or `new`, a setting the method adds."""
    name: str
    control: Control | None = None  # None: a command-line option only
    new: Setting | None = None  # kept in config.method_settings, so adding it touches no other file

    @property
    def setting(self) -> Setting:
        return self.new or SETTINGS[self.name]


@dataclass(frozen=True)
class Figure:
    """A figure the method's callback reports in EpochEnd.extra and/or RunFinished.extra, and its words."""
    key: str
    label: str
    format: str = "{:.3f}"


@dataclass(frozen=True)
class MethodSpec:
    name: str  # short id, also its key in methods.HELP
    title: str  # a few words: the group heading in `train --help`
    help: str  # one plain-language paragraph, shown beside the method's switch in the app
    options: tuple[Option, ...]  # the first one with a control switches the method on in the app
    build: Callable[[TrainConfig], Callback | None]  # its callback, or None when the config does not use it
    figures: tuple[Figure, ...] = ()
    order: int = 100  # its place on the Train page and in `train --help` (lower first)
    # Its callback runs before the others' (AdaBN changes the model the others measure at the end).
    first: bool = False
    # Why a run using it cannot be resumed, in words; None when it can.
    cannot_resume: Callable[[TrainConfig], str | None] = lambda config: None


_METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; its added settings become known to TrainConfig's validation."""
    for option in spec.options:
        _check_option(spec, option)
    for option in spec.options:
        if option.new is not None:
            add_setting(option.new)
    _METHODS[spec.name] = spec
    return spec


def _check_option(spec: MethodSpec, option: Option) -> None:
    if option.new is None and option.name not in SETTINGS:
        raise ValueError(f"method {spec.name}: {option.name} is no TrainConfig field; declare it with new=Setting")
    if option.new is not None and (option.new.name != option.name or option.name in SETTINGS):
        raise ValueError(f"method {spec.name}: a new setting needs its own name, not a field's ({option.name})")
    if option.control is not None and option.control.kind not in CONTROL_KINDS:
        raise ValueError(f"method {spec.name}: control kind must be one of {', '.join(CONTROL_KINDS)}")


def unregister(name: str) -> None:
    """Remove a method and its added settings (tests register throwaway ones)."""
    spec = _METHODS.pop(name, None)
    for option in spec.options if spec else ():
        if option.new is not None:
            remove_setting(option.name)


def list_methods() -> list[MethodSpec]:
    """Every registered method, in the order of the Train page."""
    return sorted(_METHODS.values(), key=lambda m: m.order)  # stable: registration order among equals


def get_method(name: str) -> MethodSpec:
    return _METHODS[name]


def method_of(setting_name: str) -> MethodSpec | None:
    """The method a setting belongs to, if any."""
    return next((m for m in _METHODS.values() if any(o.name == setting_name for o in m.options)), None)


def figure_words() -> dict[str, Figure]:
    """Every reported figure by its key, for showing them in words."""
    return {f.key: f for m in _METHODS.values() for f in m.figures}


def callbacks_for(config: TrainConfig) -> list[Callback]:
    """The callbacks the config's methods need, in the order their end-of-training steps must run."""
    added = {o.name for m in _METHODS.values() for o in m.options if o.new is not None}
    unknown = sorted(set(config.method_settings) - added)
    if unknown:
        raise ConfigError(f"no method knows the setting {', '.join(unknown)}")
    ordered = sorted(list_methods(), key=lambda m: not m.first)
    return [cb for cb in (m.build(config) for m in ordered) if cb is not None]


def resume_problem(config: TrainConfig) -> str | None:
    """Why a run with this config cannot be resumed, in words (the first method that objects), else None."""
    return next((why for why in (m.cannot_resume(config) for m in list_methods()) if why), None)
