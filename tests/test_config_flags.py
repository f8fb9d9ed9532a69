"""Flags built from config dataclasses (``persona_rag.config_flags``): a field is a flag with its
type, default and help, and the parsed flags give the config back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from persona_rag.cli import DefaultsOnceFormatter
from persona_rag.cli_types import positive_int
from persona_rag.config_flags import ConfigFlags, option


@dataclass(kw_only=True)
class Settings:
    epochs: int = field(default=3, metadata=option("passes over the data", type=positive_int))
    learning_rate: float = field(
        default=1e-5, metadata=option("peak learning rate", "--lr", "--learning-rate")
    )
    limit: int | None = field(default=None, metadata=option("first N questions (default: all)"))
    cache: str | Path = field(default="runs/cache.sqlite", metadata=option("the answers' cache"))
    mode: Literal["pre", "post"] = field(default="pre", metadata=option("what is scored"))
    shuffle: bool = field(default=True, metadata=option("shuffle every pass"))
    resume: bool = field(default=True, metadata=option("start fresh", "--overwrite", off=True))
    output_dir: str = "runs/x"  # set by the command


@dataclass(kw_only=True)
class Tuned(Settings):
    """A subclass that changes a default and adds a field, with no other edit anywhere."""

    epochs: int = 7
    warmup: float = field(default=0.1, metadata=option("share of warm-up steps"))


def parser_for(flags: ConfigFlags) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(formatter_class=DefaultsOnceFormatter)
    flags.add_to(parser)
    return parser


def parse(flags: ConfigFlags, *argv: str) -> argparse.Namespace:
    return parser_for(flags).parse_args(argv)


def test_the_parsed_flags_give_the_config_back():
    flags = ConfigFlags(Settings, exclude=("output_dir",))
    argv = ["--epochs", "5", "--lr", "0.1", "--limit", "8", "--cache", "c.db", "--mode", "post"]
    args = parse(flags, *argv, "--no-shuffle", "--overwrite")
    config = Settings(**flags.values(Settings, args), output_dir="out")
    assert config == Settings(
        epochs=5,
        learning_rate=0.1,
        limit=8,
        cache=Path("c.db"),
        mode="post",
        shuffle=False,
        resume=False,
        output_dir="out",
    )


def test_no_flags_give_the_configs_defaults():
    flags = ConfigFlags(Settings, exclude=("output_dir",))
    defaults = flags.values(Settings, parse(flags))
    assert Settings(**defaults) == Settings(cache=Path("runs/cache.sqlite"))  # a path read as a Path


def test_a_new_field_of_a_subclass_is_a_flag_and_keeps_the_bases_help():
    flags = ConfigFlags(Tuned, exclude=("output_dir",))
    assert Tuned(**flags.values(Tuned, parse(flags, "--warmup", "0.2"))).warmup == 0.2
    text = " ".join(parser_for(flags).format_help().split())
    assert "share of warm-up steps (default: 0.1)" in text
    assert "passes over the data (default: 7)" in text  # the subclass's default, the base's help


def test_help_shows_each_default_once_and_a_default_in_words_as_written():
    text = " ".join(parser_for(ConfigFlags(Settings, exclude=("output_dir",))).format_help().split())
    for shown in (
        "peak learning rate (default: 1e-05)",
        "the answers' cache (default: runs/cache.sqlite)",
        "what is scored (default: pre)",
        "shuffle every pass (default: True)",
        "first N questions (default: all)",
    ):
        assert shown in text
    assert text.count("(default:") == 7
    assert "--mode {pre,post}" in text and "--shuffle, --no-shuffle" in text


def test_the_field_names_a_flag_unless_its_metadata_names_others():
    actions = {
        a.dest: a.option_strings
        for a in parser_for(ConfigFlags(Settings, include=("epochs", "learning_rate", "resume")))._actions
    }
    assert actions["epochs"] == ["--epochs"]
    assert actions["lr"] == ["--lr", "--learning-rate"]
    assert actions["overwrite"] == ["--overwrite"]
    assert "limit" not in actions


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be 1 or more, got 0"),
        (["--mode", "both"], "argument --mode: invalid choice: 'both'"),
        (["--limit", "x"], "argument --limit: invalid int value: 'x'"),
    ],
)
def test_a_value_that_is_not_one_fails_as_it_is_parsed(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse(ConfigFlags(Settings, exclude=("output_dir",)), *argv)
    assert message in capsys.readouterr().err


def test_a_field_no_flag_can_read_is_named():
    @dataclass
    class Pairs:
        sizes: tuple[int, int] = field(default=(1, 2), metadata=option("two sizes"))

    with pytest.raises(TypeError, match=r"Pairs\.sizes: no flag reads"):
        ConfigFlags(Pairs)


def test_a_field_without_help_is_named_rather_than_left_out():
    with pytest.raises(TypeError, match=r"Settings\.output_dir is no flag"):
        ConfigFlags(Settings)


def test_configs_sharing_a_flag_must_share_its_default():
    @dataclass(kw_only=True)
    class Longer(Settings):
        epochs: int = 30

    ConfigFlags(Settings, Settings, exclude=("output_dir",))  # the same default: one flag
    with pytest.raises(
        TypeError, match=r"Longer\.epochs defaults to 30, another config of the same flag to 3"
    ):
        ConfigFlags(Settings, Longer, exclude=("output_dir",))


def test_a_misspelt_field_to_leave_out_is_an_error():
    with pytest.raises(TypeError, match="no such config fields: output"):
        ConfigFlags(Settings, exclude=("output",))


def test_an_off_flag_belongs_to_a_field_that_defaults_to_true():
    @dataclass
    class Quiet:
        verbose: bool = field(default=False, metadata=option("be quiet", "--quiet", off=True))

    with pytest.raises(TypeError, match=r"Quiet\.verbose: an off flag"):
        ConfigFlags(Quiet)
