"""LaMP metrics and the Eval signal, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from persona_rag import metrics


# ----------------------------------------------------------------------------------- accuracy
def test_accuracy_counts_stripped_exact_matches():
    assert metrics.accuracy(["[1]", " [2] ", "[1]"], ["[1]", "[2]", "[2]"]) == pytest.approx(2 / 3)


def test_macro_f1_strips_like_lamp():
    # LaMP strips predictions and golds before mapping them to labels; accuracy does the same.
    assert metrics.macro_f1([" a "], ["a"], ["a"]) == 1.0
    assert metrics.accuracy([" a "], ["a"]) == 1.0


def test_accuracy_is_case_sensitive_exact_match():
    # Parsing (TaskSpec.parse) normalises labels; the metric itself compares exactly.
    assert metrics.accuracy(["Comedy"], ["comedy"]) == 0.0
    assert metrics.accuracy(["comedy"], ["comedy"]) == 1.0


# ----------------------------------------------------------------------------------- macro-F1
def test_macro_f1_by_hand_with_absent_label_and_out_of_set_prediction():
    labels = ["a", "b", "c"]  # "c" is in neither golds nor predictions: its F1 is 0
    golds = ["a", "a", "b", "b"]
    predictions = ["a", "b", "b", "x"]  # "x" is outside the label set: wrong for gold "b"
    # a: tp=1 fp=0 fn=1 -> 2/3;  b: tp=1 fp=1 fn=1 -> 1/2;  c: 0
    expected = (2 / 3 + 1 / 2 + 0) / 3
    assert metrics.macro_f1(predictions, golds, labels) == pytest.approx(expected)
    assert expected == pytest.approx(7 / 18)


def test_macro_f1_perfect_over_present_labels_only():
    assert metrics.macro_f1(["a", "b"], ["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    # The same perfect predictions averaged over a larger label set are diluted by the absent labels.
    assert metrics.macro_f1(["a", "b"], ["a", "b"], ["a", "b", "c", "d"]) == pytest.approx(0.5)


def test_macro_f1_needs_labels():
    with pytest.raises(ValueError, match="label set"):
        metrics.macro_f1(["a"], ["a"], [])


# ------------------------------------------------------------------------------ ratings
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", 4.0),
        (" 4.0 ", 4.0),
        ("4.5", 4.5),
        ("9", 9.0),  # LaMP keeps numbers outside the scale
        ("-3", -3.0),
        ("1. 1", None),  # the whole answer must be a number
        ("I think 4.", None),
        ("4 stars", None),
        ("seven", None),
        ("", None),
        ("nan", None),  # non-finite: unparseable rather than a NaN corpus MAE
        ("inf", None),
    ],
)
def test_lamp_rating_is_float_of_the_whole_answer(text, expected):
    assert metrics.lamp_rating(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", 4.0),
        ("I think 4.", 4.0),
        ("4.5 stars", 4.5),
        ("1. 1", 1.0),
        ("1", 1.0),
        ("5", 5.0),
        ("seven", None),
        ("", None),
        ("0", None),
        ("6", None),
        ("-3", None),
        ("10/10", None),
    ],
)
def test_lenient_parse_rating_takes_the_first_number_on_the_scale(text, expected):
    assert metrics.parse_rating(text) == expected


def test_parse_rating_none_input():
    assert metrics.parse_rating(None) is None  # type: ignore[arg-type]
    assert metrics.lamp_rating(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("gold", "fallback"),
    [
        (1.0, 5.0),
        (2.0, 5.0),  # |1-2| = 1 < |5-2| = 3: 5 is farther
        (4.0, 1.0),  # |1-4| = 3 > |5-4| = 1: 1 is farther
        (5.0, 1.0),
        # Tie at gold 3 (both extremes 2 away): the code picks 5, as LaMP's create_mapping does
        # (`1.0 if abs(1 - y) > abs(5 - y) else 5.0`).
        (3.0, 5.0),
    ],
)
def test_unparseable_rating_becomes_the_farther_extreme(gold, fallback):
    for parsing in metrics.PARSINGS:
        assert metrics.rating_or_fallback("no idea", gold, parsing=parsing) == fallback
    assert metrics.rating_or_fallback("1. 1", gold) == fallback  # LaMP: not a number
    assert metrics.rating_or_fallback("1. 1", gold, parsing="lenient") == 1.0
    # Out of the scale: LaMP keeps the number; the lenient reading calls it unparseable.
    assert metrics.rating_or_fallback("7", gold) == 7.0
    assert metrics.rating_or_fallback("7", gold, parsing="lenient") == fallback


def test_parseable_rating_is_kept():
    assert metrics.rating_or_fallback("2", 5.0) == 2.0


def test_unknown_parsing_is_refused():
    with pytest.raises(ValueError, match="parsing must be one of"):
        metrics.mae(["1"], ["1"], parsing="loose")  # type: ignore[arg-type]


def test_mae_and_rmse_by_hand_with_unparseable_predictions():
    golds = ["5", "2", "4", "3", "1"]
    predictions = ["4", "oops", "no idea", "seven", "1"]
    # errors: |4-5|=1; "oops"->5: |5-2|=3; "no idea"->1: |1-4|=3; tie at 3 -> 5: |5-3|=2; 0
    assert metrics.mae(predictions, golds) == pytest.approx((1 + 3 + 3 + 2 + 0) / 5)
    assert metrics.rmse(predictions, golds) == pytest.approx(math.sqrt((1 + 9 + 9 + 4 + 0) / 5))


def test_mae_rmse_perfect_and_fractional():
    assert metrics.mae(["3", "4"], ["3", "4"]) == 0.0
    assert metrics.rmse(["3", "4"], ["3", "4"]) == 0.0
    assert metrics.mae(["4.5"], ["4"]) == pytest.approx(0.5)
    assert metrics.rmse(["1", "5"], ["3", "3"]) == pytest.approx(2.0)


def test_mae_lamp_and_lenient_by_hand():
    golds = ["4", "2", "1", "5"]
    predictions = ["1. 4", "I think 2", "9", "4"]
    # LaMP: "1. 4" -> unparseable, gold 4 -> 1: |1-4| = 3; "I think 2" -> gold 2 -> 5: 3;
    #       "9" kept: |9-1| = 8; "4": 1.  MAE = 15/4, RMSE = sqrt((9+9+64+1)/4)
    assert metrics.mae(predictions, golds) == pytest.approx(15 / 4)
    assert metrics.rmse(predictions, golds) == pytest.approx(math.sqrt(83 / 4))
    # lenient: "1. 4" -> 1: 3; "I think 2" -> 2: 0; "9" off the scale -> gold 1 -> 5: 4; "4": 1
    assert metrics.mae(predictions, golds, parsing="lenient") == pytest.approx(8 / 4)
    assert metrics.rmse(predictions, golds, parsing="lenient") == pytest.approx(math.sqrt(26 / 4))


def test_mae_custom_scale():
    # On a 1..10 scale, "7" is a valid rating; unparseable with gold 8 -> 1 (farther than 10).
    assert metrics.mae(["7", "x"], ["8", "8"], low=1, high=10) == pytest.approx((1 + 7) / 2)


# ----------------------------------------------------------------------------- Eval (Eq. 8)
@pytest.mark.parametrize(
    ("gold", "prediction", "expected"),
    [
        ("5", "4", 0.75),  # worst = 4: (4 - 1) / 4
        ("3", "1", 0.0),  # worst = 2: (2 - 2) / 2
        ("3", "3", 1.0),
        ("1", "2", 0.75),
        ("2", "3", 2 / 3),  # worst = 3: (3 - 1) / 3
        ("2", "garbage", 0.0),  # unparseable -> 5, the worst answer
        ("4", "I'd say 4", 0.0),  # LaMP reads the whole answer: unparseable -> 1, the worst
        ("1", "9", 0.0),  # off the scale and farther than the worst: clipped to 0, not -1
        ("5", "5.0", 1.0),
    ],
)
def test_eval_rating_eq8(gold, prediction, expected):
    assert metrics.eval_rating(gold, prediction) == pytest.approx(expected)


def test_eval_rating_lenient_finds_the_number():
    assert metrics.eval_rating("4", "I'd say 4", parsing="lenient") == 1.0
    assert metrics.eval_rating("5", "1. 4", parsing="lenient") == 0.0  # first number: 1, the worst


def test_eval_exact():
    assert metrics.eval_exact("comedy", " comedy ") == 1.0
    assert metrics.eval_exact("comedy", "dark comedy") == 0.0


# ------------------------------------------------------------------------------------ ROUGE
def test_rouge_one_substitution():
    # tokens: the cat sat on the mat / the cat lay on the mat -> 5 of 6 unigrams shared,
    # LCS "the cat on the mat" = 5: P = R = F = 5/6 for both.
    scores = metrics.rouge(["the cat lay on the mat"], ["the cat sat on the mat"])
    assert scores["rouge-1"] == pytest.approx(5 / 6)
    assert scores["rouge-L"] == pytest.approx(5 / 6)


def test_rouge_word_order_only_affects_rouge_l():
    # Same bag of words: ROUGE-1 = 1; reversed order: LCS = 1 of 4 -> F = 1/4.
    scores = metrics.rouge(["delta gamma beta alpha"], ["alpha beta gamma delta"])
    assert scores["rouge-1"] == pytest.approx(1.0)
    assert scores["rouge-L"] == pytest.approx(0.25)


def test_rouge_lowercases_and_drops_punctuation_without_stemming():
    # LaMP's ROUGE does not stem. pred "Cats running!" -> [cats, running]; gold "the cat runs"
    # -> [the, cat, runs]: no token in common, F = 0. With the Porter stemmer both become
    # [cat, run] / [the, cat, run]: overlap 2, P = 2/2, R = 2/3, F = 0.8 (the LCS is "cat run" too).
    assert metrics.rouge(["Cats running!"], ["the cat runs"]) == {"rouge-1": 0.0, "rouge-L": 0.0}
    stemmed = metrics.rouge(["Cats running!"], ["the cat runs"], stemmer=True)
    assert stemmed["rouge-1"] == pytest.approx(0.8)
    assert stemmed["rouge-L"] == pytest.approx(0.8)
    # Case and punctuation are ignored either way: "The CAT, runs." is the gold's own tokens.
    assert metrics.rouge(["The CAT, runs."], ["the cat runs"])["rouge-1"] == pytest.approx(1.0)


def test_rouge_different_lengths_and_mean_over_pairs():
    gold = "Police arrest suspect in downtown robbery"
    prediction = "Suspect arrested by police"
    # pred [suspect, arrested, by, police]; gold [police, arrest, suspect, in, downtown, robbery]
    # R1: overlap 2 (police, suspect; "arrested" is not "arrest" unstemmed), P = 2/4, R = 2/6
    # -> F = 0.4.  RL: the two shared words are in opposite order, so LCS = 1: P = 1/4, R = 1/6
    # -> F = 0.2.  Stemmed, "arrest" matches too: overlap 3, P = 3/4, R = 3/6 -> F = 0.6.
    single = metrics.rouge([prediction], [gold])
    assert single["rouge-1"] == pytest.approx(0.4)
    assert single["rouge-L"] == pytest.approx(0.2)
    assert metrics.rouge([prediction], [gold], stemmer=True)["rouge-1"] == pytest.approx(0.6)
    both = metrics.rouge(["the cat lay on the mat", prediction], ["the cat sat on the mat", gold])
    assert both["rouge-1"] == pytest.approx((5 / 6 + 0.4) / 2)
    assert both["rouge-L"] == pytest.approx((5 / 6 + 0.2) / 2)


def test_rouge_disjoint_and_empty_prediction_score_zero():
    assert metrics.rouge(["green apples"], ["red cars"]) == {"rouge-1": 0.0, "rouge-L": 0.0}
    assert metrics.rouge([""], ["red cars"]) == {"rouge-1": 0.0, "rouge-L": 0.0}


def test_eval_rouge1_matches_corpus_rouge_for_one_pair():
    assert metrics.eval_rouge1("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    assert metrics.eval_rouge1("the cat runs", "Cats running!") == 0.0
    assert metrics.eval_rouge1("the cat runs", "Cats running!", stemmer=True) == pytest.approx(0.8)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call",
    [
        lambda p, g: metrics.accuracy(p, g),
        lambda p, g: metrics.macro_f1(p, g, ["a"]),
        lambda p, g: metrics.mae(p, g),
        lambda p, g: metrics.rmse(p, g),
        lambda p, g: metrics.rouge(p, g),
    ],
    ids=["accuracy", "macro_f1", "mae", "rmse", "rouge"],
)
def test_length_mismatch_and_empty_raise(call):
    with pytest.raises(ValueError, match="2 predictions for 1 golds"):
        call(["1", "2"], ["1"])
    with pytest.raises(ValueError, match="zero examples"):
        call([], [])
