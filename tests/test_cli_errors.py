"""Mistyped models, URLs without a scheme and servers that are down fail at once, in one line,
before any model loads."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from persona_rag.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "SmolLM2-135M-Instrct"], "no model 'SmolLM2-135M-Instrct'"),
        (["--encoder", "all-MiniLM-L6-v3"], "no model 'all-MiniLM-L6-v3'"),
        (["--lm", "gpt-4o-mini"], "provider/model"),
        (["--lm", "openai/m", "--api-base", "localhost:8000/v1"], "not a server URL"),
        (["--url", "localhost:8000"], "not a server URL"),
        (["--url", "http://127.0.0.1:PORT"], "nothing answers at 127.0.0.1:PORT"),
        (["--lm", "openai/m", "--api-base", "http://127.0.0.1:PORT/v1"], "nothing answers at 127.0.0.1:PORT"),
    ],
)
def test_bad_model_or_server_option_is_a_one_line_error(argv, message, tmp_path, capsys):
    port = str(_free_port())
    argv = [a.replace("PORT", port) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--data", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message.replace("PORT", port) in errors[0]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["evaluate", "--data", ".", "--lm", "openai/m", "--calibrate"], "--calibrate"),
        (["demo", "--tiny", "--lm", "openai/m", "--label-decision", "mean"], "--label-decision mean"),
    ],
)
def test_label_score_options_with_a_server_model_are_a_one_line_error(argv, option, capsys):
    """A server's answers carry no label scores: these options would silently do nothing."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and option in errors[0] and "in-process model" in errors[0]


def test_a_model_typo_fails_before_torch_is_imported(tmp_path):
    code = (
        "import sys\nfrom persona_rag.cli import main\n"
        "try:\n    main(['evaluate', '--data', '.', '--model', 'SmolLM2-135M-Instrct'])\n"
        "except SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False"]
    assert "no model" in done.stderr


def test_a_setting_a_config_refuses_is_a_one_line_error(sample_task, tmp_path, capsys):
    """Flags the parser accepts can still make a config that cannot train (one candidate carries
    no preference): the config's own check reaches the user as one line, not a traceback."""
    argv = [
        "train",
        "--method",
        "kd",
        "--data",
        str(sample_task),
        "--out",
        str(tmp_path / "kd"),
        "--candidates",
        "1",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == ["persona-rag: error: ROPGKDConfig: candidates=1; expected a number of at least 2"]
