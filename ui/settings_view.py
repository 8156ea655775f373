"""A run's settings as a person reads them: one row per setting, its plain-words description and its value.

No label is written here: a setting's words are its one description (core/settings.Setting.help, the
command line's help too, already in the translation catalog), or the label of the control a method gives
it on the Train page (methods.registry.Control), so a new setting or method needs nothing in this file.
"""
from __future__ import annotations

from transfer_core.core.config import SETTINGS, TrainConfig
from transfer_core.core.i18n import _, retranslate
from transfer_core.core.settings import Setting, added_settings
from transfer_core.data.datarefs import labelled_config
from transfer_core.methods.registry import method_of


def setting_label(name: str) -> str:
    """The words for a setting, in the session's language; its name only for one nothing describes."""
    s = SETTINGS.get(name) or added_settings().get(name)
    spec = method_of(name)
    control = next((o.control for o in spec.options if o.name == name and o.control), None) if spec else None
    if control is not None and control.label:
        return _(control.label)
    if s is None or not s.help:
        return name  # a setting a removed method left in an old run
    return _(s.help)


def setting_value(name: str, value) -> str:
    s: Setting | None = SETTINGS.get(name) or added_settings().get(name)
    if s is not None and isinstance(value, (str, int, float)) and value in s.words:
        return _(s.words[value])
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if value is None or value == () or value == []:
        return _("not set")
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if s is not None and s.path:
        return retranslate(str(value))  # a data reference's label ("Upload: x"), kept in English
    return str(value)


def settings_rows(config: TrainConfig) -> list[dict]:
    """Every setting of the run (paths shown as labels, never server paths), in the config's order."""
    values = labelled_config(config).flat()
    values.pop("tags", None)  # links between runs (a retrained run's origin), not choices a person made
    return [{_("setting"): setting_label(name), _("value"): setting_value(name, value)}
            for name, value in values.items()]
