"""``persona-rag --help``: fast (no heavy imports), every option explained with its default."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from persona_rag.cli import build_parser

HEAVY = ("torch", "dspy", "transformers", "chromadb", "litellm")


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [group] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(group.choices)


def test_help_imports_no_heavy_module():
    """Every command's --help answers without importing torch, dspy, transformers or chromadb (the
    import alone takes seconds)."""
    code = (
        "import json, sys, contextlib, io\n"
        "from persona_rag.cli import build_parser, main\n"
        "names = ['--help'] + [[c, '--help'] for c in ('demo', 'evaluate', 'index', 'train', 'report')]\n"
        "for argv in names:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv if isinstance(argv, list) else [argv])\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    commands = _commands(parser)
    assert {"demo", "evaluate", "index", "finetune", "train", "select", "report"} <= set(commands)
    for name, command in commands.items():
        assert command.formatter_class is argparse.ArgumentDefaultsHelpFormatter, name
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help text"
        text = command.format_help()
        assert "(default: " in text, name


def test_top_level_help_says_what_each_command_is_for():
    parser = build_parser()
    [group] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    described = {choice.dest: choice.help for choice in group._choices_actions}
    assert set(described) == set(_commands(parser))
    assert all(text and len(text) > 20 for text in described.values()), described
    text = parser.format_help()
    assert "entry-point" not in text and "persona-rag demo" in text
