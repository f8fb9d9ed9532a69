"""The model options are one config, ``ModelOptions``: each field is a flag of every answering
command, its default the config's (the demo's own defaults aside), and the generator built from
the parsed flags is the one the fields describe."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from persona_rag.cli import build_parser
from persona_rag.cli_options import MODEL_FLAGS, ModelOptions, build_generator, model_options
from persona_rag.errors import ConfigError

# command: the options it requires, and the model options whose default it sets itself
COMMANDS = {
    "evaluate": (["--data", "d"], {}),
    "finetune": (["--data", "d"], {}),
    "train": (["--method", "kd", "--data", "d"], {}),
    "select": (["--mode", "pre", "--data", "d"], {}),
    "report": (["--data", "d"], {}),
    "demo": ([], {"dtype": "auto", "k": 2}),  # bfloat16 where the CPU has it; two items per prompt
}


def command_parser(name: str) -> argparse.ArgumentParser:
    [group] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return group.choices[name]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_model_option_is_a_flag_with_the_configs_default(name):
    required, own = COMMANDS[name]
    args = command_parser(name).parse_args(required)
    assert model_options(args) == ModelOptions(**own)
    assert set(MODEL_FLAGS.flags) == {field.name for field in dataclasses.fields(ModelOptions)}


def test_flags_reach_the_generator():
    parser = argparse.ArgumentParser()
    MODEL_FLAGS.add_to(parser)
    args = parser.parse_args(["--free-generation", "--label-decision", "mean", "--max-new-tokens", "7"])
    generator = build_generator(args)
    assert (generator.label_scoring, generator.label_decision, generator.max_new_tokens) == (False, "mean", 7)
    for bad in (["--retries", "11"], ["--k", "0"], ["--dtype", "float16"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_options_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match="ModelOptions: k=0"):
        ModelOptions(k=0)
