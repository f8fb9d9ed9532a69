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


def test_every_option_has_help_and_shows_its_default_once():
    """Every command, those the optimizers package adds through entry points included: each option
    explains itself and shows its default exactly once (help texts that state their default in
    words used to get a second "(default: None)"); a required option shows none."""
    parser = build_parser()
    commands = _commands(parser)
    assert {"demo", "evaluate", "index", "finetune", "train", "select", "report"} <= set(commands)
    for name, command in {"persona-rag": parser, **commands}.items():
        formatter = command._get_formatter()
        for action in command._actions:
            if not action.option_strings or action.dest == "help":
                continue
            option = f"{name} {action.option_strings[-1]}"
            text = formatter._expand_help(action)
            assert action.help and text.strip(), f"{option} has no help text"
            assert text.count("(default") == (0 if action.required else 1), f"{option}: {text!r}"
            # as a user types it, not a Python list's repr (``[('test', None), ('dev', None)]``)
            assert "(default: [" not in text and "(default: (" not in text, f"{option}: {text!r}"
        assert "(default: None) (default" not in " ".join(command.format_help().split()), name


def test_top_level_help_says_what_each_command_is_for():
    parser = build_parser()
    [group] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    described = {choice.dest: choice.help for choice in group._choices_actions}
    assert set(described) == set(_commands(parser))
    assert all(text and len(text) > 20 for text in described.values()), described
    text = parser.format_help()
    assert "entry-point" not in text and "persona-rag demo" in text
