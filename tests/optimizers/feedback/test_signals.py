"""optimizers.feedback.signals: which signals a reader can give, ``auto``, and the advice on ties."""

from __future__ import annotations

import pytest

from persona_rag import Generator, PersonalizedRAG
from persona_rag.errors import ConfigError
from tests.optimizers.feedback.scripted import CountingReply, make_feedback
from tests.optimizers.key_item_task import TASK


def test_likelihood_signal_needs_a_local_model(scripted_lm, tmp_path):
    with pytest.raises(ValueError, match="in-process model"):
        make_feedback(scripted_lm, tmp_path, CountingReply(), signal="likelihood")


def test_the_expected_signal_is_refused_where_there_is_no_label_distribution(
    scripted_lm, tiny_checkpoint, tmp_path
):
    """Free text has no labels to take an expectation over; a server without log-probabilities
    gives no label scores: both are refused before any call, naming what to use instead."""
    from optimizers.feedback import resolve_signal
    from persona_rag.lm import local_lm

    local = Generator(lm=local_lm(str(tiny_checkpoint(tmp_path / "reader", seed=3))))
    with pytest.raises(ConfigError, match=r"expected signal.*free text.*--signal likelihood"):
        resolve_signal("expected", PersonalizedRAG(task="LaMP-6", generator=local))
    server = PersonalizedRAG(task="LaMP-3", generator=Generator(lm=scripted_lm("4")))
    with pytest.raises(ConfigError, match=r"expected signal.*--signal metric"):
        resolve_signal("expected", server)
    assert resolve_signal("expected", PersonalizedRAG(task="LaMP-3", generator=local)) == "expected"


def test_auto_is_metric_likelihood_where_the_reader_gives_log_p_gold(scripted_lm, tiny_checkpoint, tmp_path):
    """The default benchmarks/README.md ("Signals without ties") chose on training feedback, for
    free text as for labels; a server without log-probabilities falls back to the metric."""
    from optimizers.feedback import resolve_signal
    from persona_rag.lm import local_lm

    local = Generator(lm=local_lm(str(tiny_checkpoint(tmp_path / "reader", seed=3))))
    assert resolve_signal("auto", PersonalizedRAG(task="LaMP-6", generator=local)) == "metric+likelihood"
    assert resolve_signal("auto", PersonalizedRAG(task="LaMP-3", generator=local)) == "metric+likelihood"
    server = PersonalizedRAG(task="LaMP-6", generator=Generator(lm=scripted_lm("a subject")))
    assert resolve_signal("auto", server) == "metric"


def test_tie_advice_offers_only_the_signals_the_reader_can_give(scripted_lm, tmp_path, tiny_checkpoint):
    from optimizers.feedback import tie_advice
    from persona_rag.lm import local_lm

    server = PersonalizedRAG(task="LaMP-3", generator=Generator(lm=scripted_lm("3")))  # 1-char labels
    advice = tie_advice(server, "metric", "more --max-examples")
    assert "--signal" not in advice and "no log-probabilities" in advice
    assert advice.startswith("Use a reader that uses its profile") and "or more --max-examples" in advice
    local = PersonalizedRAG(task=TASK, generator=Generator(lm=local_lm(str(tiny_checkpoint(tmp_path, 1)))))
    assert "--signal metric+likelihood or likelihood" in tie_advice(local, "metric")
    assert "--signal" not in tie_advice(local, "metric+likelihood")  # already breaking ties with it
