"""Every command's settings are flags built from its configs: each field is a flag unless the
command sets it itself, and each flag's default (the one its help shows) is the config's."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from optimizers.cli import finetune, report, select, train
from optimizers.configs import ReaderFinetuneConfig, RSPGConfig
from optimizers.demo import command as demo
from optimizers.demo.config import DemoConfig
from optimizers.report.config import ReportConfig
from optimizers.training import config_dict
from persona_rag.cli import build_parser
from persona_rag.config_flags import ConfigFlags, option

# command: its flags, the configs it builds, the options it requires, and the fields it sets itself
COMMANDS = {
    "finetune": (finetune.FLAGS, [ReaderFinetuneConfig], ["--data", "d"], {"k"}),
    "train": (train.FLAGS, list(train.CONFIGS.values()), ["--method", "kd", "--data", "d"], {"output_dir"}),
    "select": (
        select.FLAGS,
        [RSPGConfig],
        ["--mode", "pre", "--data", "d"],
        {"output_dir", "gradient_checkpointing"},
    ),
    "report": (report.FLAGS, [ReportConfig], ["--data", "d"], {"output_dir", "ropg_checkpoints"}),
    "demo": (
        demo.FLAGS,
        [DemoConfig],
        [],
        {f.name for f in dataclasses.fields(DemoConfig)} - {"out", "seed"},  # the sizes: --tiny's
    ),
}


def command_parser(name: str) -> argparse.ArgumentParser:
    [group] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return group.choices[name]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_config_field_is_a_flag_unless_the_command_sets_it(name):
    flags, configs, _, own = COMMANDS[name]
    options = {option for action in command_parser(name)._actions for option in action.option_strings}
    for config in configs:
        fields = {field.name for field in dataclasses.fields(config)}
        assert fields - own == fields & set(flags.flags), config.__name__
        for field in fields - own:
            assert set(flags.flags[field].names) <= options, f"{name}: {config.__name__}.{field}"


@pytest.mark.parametrize("name", COMMANDS)
def test_each_flags_default_and_its_help_are_the_configs_default(name):
    flags, configs, required, _ = COMMANDS[name]
    parser = command_parser(name)
    args = parser.parse_args(required)
    for config in configs:
        fixed = {"k": 4} if config is ReaderFinetuneConfig else {}
        parsed = config_dict(config(**flags.values(config, args), **fixed))
        assert parsed == config_dict(config(**fixed)), config.__name__
    formatter = parser._get_formatter()
    actions = {action.dest: action for action in parser._actions}
    for field, flag in flags.flags.items():
        action = actions[flag.dest]
        if flag.off or "(default:" in action.help:
            continue  # the flag's own state (False), or a default its help states in words
        [default] = {f.default for config in configs for f in dataclasses.fields(config) if f.name == field}
        assert f"(default: {default})" in formatter._expand_help(action), f"{name} {flag.names[0]}"


def test_a_field_added_to_a_config_becomes_a_flag_of_its_command():
    @dataclasses.dataclass(kw_only=True)
    class Wider(ReaderFinetuneConfig):
        label_smoothing: float = dataclasses.field(default=0.0, metadata=option("label smoothing"))

    flags = ConfigFlags(Wider, exclude=("k",))
    parser = argparse.ArgumentParser()
    flags.add_to(parser)
    args = parser.parse_args(["--label-smoothing", "0.1", "--lr", "0.001"])
    config = Wider(**flags.values(Wider, args))
    assert (config.label_smoothing, config.learning_rate) == (0.1, 0.001)


def test_the_training_commands_keep_their_flag_names():
    """Command lines in the READMEs, the Makefile and the examples use these names."""
    for name in ("finetune", "train", "select"):
        options = command_parser(name).format_help()
        for flag in ("--lr", "--train-batch-size", "--grad-accum", "--overwrite", "--max-examples", "--seed"):
            assert f"{flag} " in options or f"{flag}," in options, f"{name} {flag}"
    options = command_parser("report").format_help()
    for flag in ("--ropg-lr", "--rspg-lr", "--no-set-pl", "--set-pl SET_PL", "--kd-free-ties", "--overwrite"):
        assert flag in options, flag


def test_report_options_reach_its_config():
    args = command_parser("report").parse_args(
        ["--data", "d", "--ropg-lr", "0.002", "--no-set-pl", "--overwrite", "--kd-signal", "metric"]
    )
    config = ReportConfig(**report.FLAGS.values(ReportConfig, args))
    assert (config.ropg_learning_rate, config.set_pl, config.resume, config.kd_signal) == (
        0.002,
        False,
        False,
        "metric",
    )
