import random
from dataclasses import asdict

import pytest

from persona_rag.errors import DataError
from persona_rag.significance import paired_predictions, paired_significance, significance_against
from persona_rag.tasks import get_task

RATING = get_task("LaMP-3")
TAGGING = get_task("LaMP-2")


def _ratings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [str(rng.randint(1, 5)) for _ in range(n)]


def test_identical_systems_show_no_difference():
    golds = _ratings(60)
    system = _ratings(60, seed=1)
    result = paired_significance(RATING, ["x"] * 60, golds, system, list(system), resamples=500)
    for diff in result.values():
        assert diff.difference == 0 and diff.low == 0 and diff.high == 0
        assert diff.p_value == 1.0 and not diff.better


def test_a_clearly_better_system_is_significant_with_an_interval_excluding_zero():
    golds = _ratings(80)
    rng = random.Random(3)
    system = [g if rng.random() < 0.8 else "3" for g in golds]
    baseline = ["1" if int(g) >= 3 else "5" for g in golds]
    result = paired_significance(RATING, ["x"] * 80, golds, system, baseline, resamples=1000)
    mae = result["MAE"]
    assert mae.system == pytest.approx(RATING.evaluate(system, golds, ["x"] * 80)["MAE"])
    assert mae.difference == pytest.approx(mae.system - mae.baseline)
    assert mae.high < 0 and mae.low <= mae.difference <= mae.high
    assert mae.p_value < 0.01 and mae.better
    rmse = result["RMSE"]
    inputs = ["x"] * 80
    rmse_of = [RATING.evaluate(outputs, golds, inputs)["RMSE"] for outputs in (system, baseline)]
    assert rmse.difference == pytest.approx(rmse_of[0] - rmse_of[1])
    assert rmse.better
    # The same comparison the other way round is significant but not "better".
    reverse = paired_significance(RATING, ["x"] * 80, golds, baseline, system, resamples=1000)["MAE"]
    assert reverse.p_value < 0.01 and not reverse.better


def test_a_small_noisy_difference_is_not_significant():
    golds = _ratings(40)
    system = list(golds)
    system[0] = "1" if golds[0] != "1" else "2"
    baseline = list(golds)
    result = paired_significance(RATING, ["x"] * 40, golds, system, baseline, resamples=1000)["MAE"]
    assert result.p_value > 0.05 and not result.better


def test_macro_f1_is_recomputed_on_the_task_label_set():
    labels = ["sci-fi", "comedy", "classic"]
    question = (
        "Which tag does this movie relate to among the following tags? "
        f"tags: [{', '.join(labels)}] description: x"
    )
    rng = random.Random(5)
    golds = [rng.choice(labels) for _ in range(60)]
    system = [g if rng.random() < 0.9 else "comedy" for g in golds]
    baseline = ["sci-fi"] * 60
    inputs = [question] * 60
    result = paired_significance(TAGGING, inputs, golds, system, baseline, resamples=500)
    f1 = result["F1"]
    expected = TAGGING.evaluate(system, golds, inputs)["F1"] - TAGGING.evaluate(baseline, golds, inputs)["F1"]
    assert f1.difference == pytest.approx(expected)
    assert f1.low <= f1.difference <= f1.high and f1.low > 0
    assert f1.better and result["accuracy"].better


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="equal"):
        paired_significance(RATING, ["x"], ["3"], ["3", "4"], ["3"])


def test_significance_against_compares_every_other_system_with_the_baseline():
    golds, inputs = _ratings(40), ["x"] * 40
    answers = {"dense": _ratings(40, seed=1), "kd": list(golds), "rl": _ratings(40, seed=2)}
    table = significance_against(RATING, inputs, golds, answers, "dense", resamples=200, seed=3)
    assert set(table) == {"kd", "rl"}
    for name in table:
        direct = paired_significance(
            RATING, inputs, golds, answers[name], answers["dense"], resamples=200, seed=3
        )
        assert table[name] == {metric: asdict(diff) for metric, diff in direct.items()}
    assert table["kd"]["MAE"]["better"] and table["kd"]["MAE"]["system"] == 0.0


def test_two_runs_predictions_are_paired_by_question_id():
    """Rows in any order, and questions only one run answered, are left out of the pairing."""
    task = get_task("LaMP-3")
    inputs = {str(i): "" for i in range(6)}
    baseline = [{"id": str(i), "output": "3", "gold": g} for i, g in enumerate("453345")]
    system = [{"id": str(i), "output": g, "gold": g} for i, g in reversed(list(enumerate("45334")))]
    n, tested = paired_predictions(task, inputs, system, baseline)
    assert n == 5
    alone = paired_significance(task, [""] * 5, list("45334"), list("45334"), ["3"] * 5)
    assert tested["MAE"] == alone["MAE"]
    with pytest.raises(DataError, match="no question in common"):
        paired_predictions(task, inputs, system, [{"id": "9", "output": "3", "gold": "3"}])
