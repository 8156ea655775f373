"""Setting: one training choice described once (help, allowed values, command-line flag), so that config
validation, the command line and the app all read the same description.

TrainConfig's fields carry theirs as field metadata (`setting(...)` below). A method added later declares
its new settings in its MethodSpec (transfer_core.methods.registry), which registers them here: core cannot
import the methods, yet TrainConfig must validate their values and keep them in `method_settings`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from transfer_core.core.i18n import _

_MISSING = object()


@dataclass(frozen=True)
class Setting:
    help: str  # plain words: the CLI's help and, unless a UI control says otherwise, the app's
    name: str = ""  # for a TrainConfig field: filled in from the field
    default: Any = None  # for a TrainConfig field: filled in from the field
    flag: str | None = ""  # "" = from the name (batch_size -> --batch-size); None = no CLI flag
    metavar: str | None = None
    choices: tuple = ()  # the allowed values, written once (None is allowed too when it is the default)
    words: dict = field(default_factory=dict)  # choice -> what a person reads in the app
    low: float | None = None  # allowed range, both ends included
    high: float | None = None
    parse: Callable[[str], Any] | None = None  # command-line text -> value; default: the default's type
    path: bool = False  # a file or folder: run folders keep it as a portable reference (data.datarefs)

    def cli_flag(self) -> str | None:
        return "--" + self.name.replace("_", "-") if self.flag == "" else self.flag

    def parser(self) -> Callable[[str], Any]:
        return self.parse or (str if self.default is None else type(self.default))

    def problem(self, value) -> str | None:
        """What is wrong with `value` for this setting, in words; None when it is allowed."""
        if value is None and self.default is None:
            return None
        if self.choices and value not in self.choices:
            return _("{name} must be one of {choices}, not {value}").format(
                name=self.name, choices=", ".join(map(str, self.choices)), value=repr(value))
        low = -float("inf") if self.low is None else self.low
        high = float("inf") if self.high is None else self.high
        if (self.low is not None or self.high is not None) and not (
                isinstance(value, (int, float)) and low <= value <= high):
            return _("{name} must be a number from {low} to {high}, not {value}").format(
                name=self.name, low=self.low, high=self.high, value=repr(value))
        return None


def setting(default=_MISSING, help: str = "", **kw) -> Any:
    """A dataclass field described by a Setting (its name and default are taken from the field)."""
    meta = {"setting": Setting(help, **kw)}
    return field(metadata=meta) if default is _MISSING else field(default=default, metadata=meta)


def field_settings(cls) -> dict[str, Setting]:
    """The Settings of a dataclass's described fields, by name, in field order."""
    return {f.name: replace(f.metadata["setting"], name=f.name, default=_default(f))
            for f in fields(cls) if "setting" in f.metadata}


def _default(f):
    return None if f.default is MISSING else f.default


# ---------------------------------------------------------------------------------------------- added settings
_ADDED: dict[str, Setting] = {}


def add_setting(s: Setting) -> None:
    """A setting that is not a TrainConfig field (a method's, registered with it): kept in method_settings."""
    if not s.name:
        raise ValueError("an added setting needs a name")
    _ADDED[s.name] = s


def remove_setting(name: str) -> None:
    _ADDED.pop(name, None)


def added_settings() -> dict[str, Setting]:
    return dict(_ADDED)
