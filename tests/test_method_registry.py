"""A method is one module and one registration: a throwaway method registered here (nowhere else) must reach
the command line, TrainConfig, the Train page, the live view and the training loop, from its spec alone."""
from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import copy_textile
from tests.test_app_pages import app_dirs, choose_folder, no_exception, page, texts  # noqa: F401
from transfer_core import cli
from transfer_core.core.config import ADAPTS, SETTINGS, ConfigError, TrainConfig
from transfer_core.core.settings import Setting
from transfer_core.methods import (
    HELP,
    Control,
    Figure,
    MethodSpec,
    Option,
    callbacks_for,
    list_methods,
    register,
    resume_problem,
    unregister,
)
from transfer_core.methods.adaptation import KINDS, TargetDomain
from transfer_core.methods.l2sp import L2SP
from transfer_core.models.backbones import build_network
from transfer_core.service.jobs import default_queue
from transfer_core.training.callbacks import Callback
from transfer_core.training.optim import build_optimizer

README = Path(__file__).resolve().parents[1] / "README.md"


class Nudge(Callback):
    """The throwaway method's callback: reports one figure per epoch and one at the end."""

    def __init__(self, strength: float):
        self.strength = strength

    def after_epoch(self, trainer, epoch, extra):
        extra["nudge_score"] = self.strength

    def after_fit(self, trainer):
        trainer.final_extra["nudge_score"] = self.strength


NUDGE = MethodSpec(
    name="nudge", title="Nudge: a throwaway test method",
    help="A method that only exists in this test file. " * 3,
    options=(Option("nudge_strength", Control("Nudge strength", "slider", values=(0.0, 1.0, 0.1)),
                    new=Setting("how hard to nudge (0 = off)", name="nudge_strength", default=0.0, low=0, high=1)),),
    build=lambda config: Nudge(config.setting("nudge_strength")) if config.setting("nudge_strength") else None,
    figures=(Figure("nudge_score", "Nudge score", "{:.2f}"),),
)


@pytest.fixture
def nudge():
    register(NUDGE)
    yield NUDGE
    unregister(NUDGE.name)


def train_help(capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    return capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- the new method
def test_a_registered_method_gets_a_cli_flag_with_help_that_reaches_the_config(nudge, capsys):
    words = " ".join(train_help(capsys).split())
    assert "Nudge: a throwaway test method:" in words and "--nudge-strength NUDGE_STRENGTH how hard to nudge" in words
    args = cli.build_parser().parse_args(["train", "pictures", "--nudge-strength", "0.3"])
    config = cli.config_from_args(args)
    assert config.method_settings == {"nudge_strength": 0.3} and config.setting("nudge_strength") == 0.3
    with pytest.raises(ConfigError, match="nudge_strength must be a number from 0 to 1"):
        cli.config_from_args(cli.build_parser().parse_args(["train", "pictures", "--nudge-strength", "2"]))


def test_a_registered_methods_setting_round_trips_through_the_run_folders_config(nudge, tmp_path):
    config = TrainConfig.from_settings({"data": "pictures", "nudge_strength": 0.3, "l2sp": 0.1})
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json").setting("nudge_strength") == 0.3
    assert TrainConfig(data="pictures").setting("nudge_strength") == 0.0  # its default when not set
    assert TrainConfig(data="pictures").differences(config) == {"l2sp": (0.0, 0.1), "nudge_strength": (0.0, 0.3)}
    with pytest.raises(ConfigError, match="nudge_strength"):
        TrainConfig(data="pictures", method_settings={"nudge_strength": 5})
    with pytest.raises(ConfigError, match="unknown setting nudge_strenght"):
        TrainConfig.from_settings({"data": "pictures", "nudge_strenght": 0.3})


def test_callbacks_for_builds_a_registered_methods_callback_only_when_it_is_used(nudge):
    assert not any(isinstance(cb, Nudge) for cb in callbacks_for(TrainConfig(data="x")))
    first, *rest = callbacks_for(TrainConfig.from_settings(
        {"data": "x", "nudge_strength": 0.5, "l2sp": 0.1, "target_data": "t", "adapt": "adabn"}))
    assert isinstance(first, TargetDomain)  # AdaBN changes the model before the others measure it
    (nudged,) = [cb for cb in rest if isinstance(cb, Nudge)]
    assert nudged.strength == 0.5 and any(isinstance(cb, L2SP) for cb in rest)
    assert "nudge" in HELP and HELP["nudge"] == NUDGE.help


def test_a_setting_of_a_method_no_longer_registered_loads_but_does_not_train(nudge):
    saved = TrainConfig.from_settings({"data": "x", "nudge_strength": 0.5}).to_dict()
    unregister("nudge")
    config = TrainConfig.from_dict(saved)  # an old run folder still opens
    assert config.method_settings == {"nudge_strength": 0.5}
    with pytest.raises(ConfigError, match="no method knows the setting nudge_strength"):
        callbacks_for(config)


@pytest.mark.usefixtures("app_dirs")  # runs and workspaces in a temporary folder
def test_the_train_page_draws_a_registered_method_and_the_live_view_shows_its_figures(nudge, tmp_path):
    at = page("pages/1_Data.py").run()
    choose_folder(at, copy_textile(tmp_path / "nudged", 4))
    train = no_exception(page("pages/2_Train.py", at.query_params["ws"]).run())
    train.radio(key="schedule").set_value("fixed").run()  # 12 pictures: the one click would train no epoch
    slider = train.slider(key="nudge_strength")
    assert slider.label == "Nudge strength" and slider.help == NUDGE.help  # the switch carries the method's help
    train.number_input(key="epochs").set_value(1)
    train.select_slider(key="image_size_mobilenet_v2").set_value(96)
    slider.set_value(0.3)
    next(b for b in train.button if b.label == "Start training").click().run()
    no_exception(train)
    job = default_queue().jobs()[-1]
    assert job.config.method_settings == {"nudge_strength": 0.3}
    assert default_queue().wait(job.id, timeout=300) and job.final.kind == "RunFinished", job.final
    assert job.final.extra["nudge_score"] == 0.3
    train.run()
    no_exception(train)
    assert "Nudge score (epoch 1)" in {m.label for m in train.metric}
    assert "Nudge score: 0.30" in texts(train)


# ---------------------------------------------------------------------------------------------- every method
@pytest.mark.parametrize("method", list_methods(), ids=lambda m: m.name)
def test_every_method_has_help_flags_and_words_for_its_figures(method, capsys):
    words = train_help(capsys)
    assert method.title in words and len(method.help) > 100
    for option in method.options:
        flag = option.setting.cli_flag()
        assert flag in words and option.setting.help, option.name
    assert all(f.label for f in method.figures)
    assert method.options[0].control is not None, "its first setting switches it on in the app"


def test_every_config_field_is_described_so_the_cli_and_validation_read_it():
    assert set(SETTINGS) == {f.name for f in fields(TrainConfig)} - {"tags", "method_settings"}
    assert all(s.help for s in SETTINGS.values())


def test_a_run_folders_config_from_before_the_registry_loads_and_resumes_the_same():
    old = {"data": "runs:abc/data", "backbone": "mobilenet_v2", "freeze": 3, "epochs": 4, "l2sp": 0.3,
           "teacher": "runs:t1", "distill_temperature": 2.0, "distill_alpha": 0.9, "target_data": "tgt",
           "adapt": "coral", "adapt_weight": 0.5, "unfreeze_at": [2], "tags": {}}
    config = TrainConfig.from_dict(old)
    assert (config.l2sp, config.teacher, config.adapt, config.method_settings) == (0.3, "runs:t1", "coral", {})
    assert {k: config.to_dict()[k] for k in old} == old
    assert resume_problem(config) is None
    assert "DANN" in resume_problem(TrainConfig.from_dict({**old, "adapt": "dann"}))


def test_the_adaptation_kinds_are_the_configs_choices():
    assert set(KINDS) == set(ADAPTS)


def test_l2sp_turns_off_decay_of_the_transferred_weights_only():
    net = build_network("mobilenet_v2", 3, pretrained=False)
    config = TrainConfig(data="x", freeze=2, l2sp=0.1, weight_decay=1e-2)
    trainer = SimpleNamespace(net=net, optimizer=build_optimizer(net, config, depth=2))
    (l2sp,) = callbacks_for(config)
    l2sp.before_fit(trainer)
    l2sp.before_epoch(trainer, 1)
    decay: dict = {}  # the largest decay of each stage's groups (biases never decay)
    for g in trainer.optimizer.param_groups:
        decay[g["stage"]] = max(decay.get(g["stage"], 0.0), g["weight_decay"])
    assert decay == {2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, net.num_stages: 1e-2}


# ---------------------------------------------------------------------------------------------- the README
def test_the_readmes_example_method_registers_and_reaches_the_cli(capsys):
    section = README.read_text().split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "README example", "exec"), namespace)  # noqa: S102 (our own README's example)
    spec = namespace["SPEC"]
    try:
        flags = [o.setting.cli_flag() for o in spec.options]
        assert all(flag in train_help(capsys) for flag in flags)
        assert spec.build(cli.config_from_args(cli.build_parser().parse_args(["train", "x", flags[0], "0.5"])))
    finally:
        unregister(spec.name)
