"""The prompt within its token budget: shares, carried-over room, the input's 60%, subword tokenizers."""

from __future__ import annotations

import pytest

from persona_rag.tasks import ApproxTokenizer, HFTokenizer, TaskSpec, get_task
from tests.tasks.inputs import LAMP_NAMES, RATING_INPUT, TOK, words


def test_prompt_without_items_is_the_input():
    for name in LAMP_NAMES:
        assert get_task(name).prompt("some input: here", []) == "some input: here"
        assert (
            get_task(name).prompt("some input: here", [], tokenizer=TOK, max_tokens=50) == "some input: here"
        )


def rating_items(*texts: str) -> list[dict]:
    return [{"id": str(i), "text": text, "score": "4"} for i, text in enumerate(texts)]


def entry_texts(prompt: str) -> list[str]:
    """The quoted texts of LaMP-3 entries, in order."""
    return [part.split('"')[1] for part in prompt.split("is the score for ")[1:]]


def test_truncation_shares_budget_equally():
    spec = get_task("LaMP-3")
    input = "review: " + words("q", 19)  # 20 whitespace tokens
    # budget = 100 - min(20, 60) = 80; the ", and " separator costs 2 -> share = (80 - 2) // 2 = 39;
    # each entry's template ('4 is the score for ""') costs 6 -> 33 words of text each.
    prompt = spec.prompt(input, rating_items(words("a", 200), words("b", 200)), tokenizer=TOK, max_tokens=100)
    assert entry_texts(prompt) == [words("a", 33), words("b", 33)]
    assert prompt.endswith(". " + input)
    assert len(TOK.encode(prompt)) <= 100


def test_truncation_carries_unused_share_to_next_entry():
    spec = get_task("LaMP-3")
    input = "review: " + words("q", 19)
    # First entry uses 6 + 3 of its 39 tokens: the unused 30 go to the second (39 + 30 - 6 = 63 words).
    prompt = spec.prompt(
        input, rating_items("short text here", words("b", 200)), tokenizer=TOK, max_tokens=100
    )
    assert entry_texts(prompt) == ["short text here", words("b", 63)]
    assert len(TOK.encode(prompt)) <= 100


def test_truncation_keeps_short_profiles_whole():
    spec = get_task("LaMP-3")
    items = rating_items("one two", "three four")
    assert spec.prompt(RATING_INPUT, items, tokenizer=TOK, max_tokens=512) == spec.prompt(RATING_INPUT, items)


class RecordingTokenizer(ApproxTokenizer):
    """Whitespace tokens, remembering the length of every text it was asked to encode."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def encode(self, text: str) -> list:
        self.lengths.append(len(text))
        return super().encode(text)


def test_a_huge_item_is_cut_to_the_budget_before_it_is_tokenized():
    from persona_rag.tasks.truncation import MAX_CHARS_PER_TOKEN

    huge = "word " * 1_000_000  # 5 MB
    tokenizer = RecordingTokenizer()
    prompt = get_task("LaMP-3").prompt(
        RATING_INPUT, rating_items(huge, "short one"), tokenizer=tokenizer, max_tokens=100
    )
    assert max(tokenizer.lengths) <= 100 * MAX_CHARS_PER_TOKEN + len(RATING_INPUT) + 100  # never the item
    assert len(TOK.encode(prompt)) <= 100 and "short one" in prompt
    ordinary = rating_items(words("a", 200), words("b", 200))  # what the cut leaves as it was
    assert get_task("LaMP-3").prompt(
        RATING_INPUT, ordinary, tokenizer=RecordingTokenizer(), max_tokens=100
    ) == (get_task("LaMP-3").prompt(RATING_INPUT, ordinary, tokenizer=TOK, max_tokens=100))


def test_clip_keeps_the_part_a_consumer_reads():
    from persona_rag.tasks.truncation import MAX_CHARS_PER_TOKEN, clip

    text = "x" * (10 * MAX_CHARS_PER_TOKEN) + "tail"
    assert clip(text, 10) == "x" * (10 * MAX_CHARS_PER_TOKEN)
    assert (
        clip(text, 10, keep="end").endswith("tail")
        and len(clip(text, 10, keep="end")) == 10 * MAX_CHARS_PER_TOKEN
    )
    assert clip("short", 1) == "short" and clip("short", 0) == ""


def test_long_input_takes_at_most_sixty_percent():
    spec = get_task("LaMP-3")
    input = "review: " + words("q", 79)  # 80 tokens > 0.6 * 100: the input keeps 60, the profile 40
    prompt = spec.prompt(input, rating_items(words("a", 200), words("b", 200)), tokenizer=TOK, max_tokens=100)
    texts = entry_texts(prompt)
    assert len(texts) == 2 and all(texts)
    # The profile's 40 tokens: (40 - 2 for ", and ") // 2 = 19 per entry, 6 of them template words.
    assert texts == [words("a", 13), words("b", 13)]
    kept = prompt.split(". ", 1)[1]
    assert input.startswith(kept) and kept != input  # the input's tail is cut, its start kept
    # The input keeps its 60 tokens and what the entries leave of their 40 (here 3: the ", and "
    # separator they were charged 2 tokens for is 1 whitespace token), as LaMP's final cut does.
    assert len(TOK.encode(kept)) == 63
    assert len(TOK.encode(prompt)) == 100


def test_template_words_do_not_crowd_out_all_entries():
    # LaMP-5/LaMP-7 add words of their own ("Following the given patterns"), outside the budget:
    # profile text is cut further to make room instead of dropping every entry.
    input = "Generate a title for the following abstract of a paper: " + words("q", 10)
    items = [
        {"id": "1", "title": "T1", "abstract": words("a", 300)},
        {"id": "2", "title": "T2", "abstract": words("b", 300)},
    ]
    five = get_task("LaMP-5").prompt(input, items, tokenizer=TOK, max_tokens=100)
    assert '"T1" is the title for "a0 a1' in five and '"T2" is the title for "b0 b1' in five
    assert len(TOK.encode(five)) <= 100
    seven = get_task("LaMP-7").prompt(
        input,
        [{"id": "1", "text": words("a", 300)}, {"id": "2", "text": words("b", 300)}],
        tokenizer=TOK,
        max_tokens=100,
    )
    assert seven.startswith('"a0 a1') and '"b0 b1' in seven and "are written by a person" in seven
    assert len(TOK.encode(seven)) <= 100


def test_input_longer_than_max_tokens_keeps_the_profile(caplog):
    # LaMP's split: the input keeps at most 60% of the budget (its tail is cut) and the profile
    # shares the rest, instead of a prompt that is the cut input alone with no items.
    spec = get_task("LaMP-3")
    input = "review: " + words("q", 149)
    items = rating_items(words("a", 200), words("b", 200), words("c", 200), words("d", 200))
    with caplog.at_level("WARNING", logger="persona_rag.tasks"):
        prompt = spec.prompt(input, items, tokenizer=TOK, max_tokens=100)
    assert [text.split()[0] for text in entry_texts(prompt)] == ["a0", "b0", "c0", "d0"]
    kept = prompt.split(". ", 1)[1]
    assert input.startswith(kept) and len(TOK.encode(kept)) >= 60  # its 60%, plus what entries leave
    assert len(TOK.encode(prompt)) <= 100
    assert "cut to" in caplog.text


def test_long_input_gets_the_room_short_entries_leave():
    spec = get_task("LaMP-3")
    input = "review: " + words("q", 149)
    prompt = spec.prompt(input, rating_items("a b c"), tokenizer=TOK, max_tokens=100)
    assert entry_texts(prompt) == ["a b c"]
    kept = prompt.split(". ", 1)[1]
    # The entry is 8 whitespace tokens: the input keeps the other 92, more than its reserved 60.
    assert kept == " ".join(input.split()[:92])
    assert len(TOK.encode(prompt)) == 100


def test_input_longer_than_max_tokens_without_items_is_cut(caplog):
    spec = get_task("LaMP-3")
    input = "review: " + words("q", 149)
    with caplog.at_level("WARNING", logger="persona_rag.tasks"):
        assert spec.prompt(input, [], tokenizer=TOK, max_tokens=100) == " ".join(input.split()[:100])
    assert "cut to 100" in caplog.text


def test_nothing_fits_gives_the_bare_input():
    spec = get_task("LaMP-5")
    input = words("q", 10)
    prompt = spec.prompt(
        input, [{"id": "1", "title": "T", "abstract": "x y z"}], tokenizer=TOK, max_tokens=12
    )
    assert prompt == input


@pytest.mark.parametrize("name", LAMP_NAMES)
@pytest.mark.parametrize("max_tokens", [16, 40, 100, 300])
def test_prompt_never_exceeds_max_tokens(name, max_tokens):
    spec = get_task(name)
    long = words("w", 120)
    item = {
        "id": "1",
        "date": "2020",
        "title": long,
        "abstract": long,
        "text": long,
        "description": long,
        "tag": "comedy",
        "category": "business",
        "score": "3",
    }
    items = [dict(item, id=str(i)) for i in range(4)]
    for input in ("title: " + words("q", 5), "title: " + words("q", 50), "title: " + words("q", 500)):
        prompt = spec.prompt(input, items, tokenizer=TOK, max_tokens=max_tokens)
        assert len(TOK.encode(prompt)) <= max_tokens


class CountingTokenizer:
    """Wraps a tokenizer and counts ``encode`` calls."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def encode(self, text):
        self.calls += 1
        return self.tokenizer.encode(text)

    def decode(self, tokens):
        return self.tokenizer.decode(tokens)


@pytest.fixture(scope="module")
def subword_tokenizer():
    """A real subword tokenizer (the packaged MiniLM's; the tokenizer only, no weights)."""
    from transformers import AutoTokenizer

    from persona_rag.encoders import resolve_encoder

    return HFTokenizer(AutoTokenizer.from_pretrained(resolve_encoder("all-MiniLM-L6-v2")))


def distinct_items(name: str, n: int = 4) -> list[dict]:
    """``n`` items with long truncatable text starting with a marker ``item{i}start``."""
    long = " ".join(f"word{j}." for j in range(400))
    short = {"tag": "comedy", "category": "business", "score": "3"}
    truncated = get_task(name).truncate_field
    items = []
    for i in range(n):
        item = {"id": str(i), "date": "2020-01-01", **short}
        for field in ("title", "abstract", "text", "description"):
            item[field] = f"item{i}start {long}" if field == truncated else f"Title {i}"
        items.append(item)
    return items


@pytest.mark.parametrize("name", LAMP_NAMES)
def test_subword_tokenizer_budget_keeps_every_entry(name, subword_tokenizer):
    # Tokens of a real tokenizer do not add up across joins; the prompt must still fit and keep
    # all k entries (cut), not drop entries to make room for a few template tokens.
    tokenizer = CountingTokenizer(subword_tokenizer)
    input = "title: " + " ".join(f"query{i}" for i in range(30))
    prompt = get_task(name).prompt(input, distinct_items(name), tokenizer=tokenizer, max_tokens=512)
    assert len(subword_tokenizer.encode(prompt)) <= 512
    assert all(f"item{i}start" in prompt for i in range(4))
    assert tokenizer.calls < 60  # a few refinement rounds, not a token-by-token search


@pytest.mark.parametrize("name", LAMP_NAMES)
def test_long_input_keeps_every_entry_with_a_subword_tokenizer(name, subword_tokenizer):
    input = "title: " + " ".join(f"query{i}" for i in range(1000))
    prompt = get_task(name).prompt(input, distinct_items(name), tokenizer=subword_tokenizer, max_tokens=512)
    assert len(subword_tokenizer.encode(prompt)) <= 512
    assert all(f"item{i}start" in prompt for i in range(4))
    assert "query0 " in prompt and "query999" not in prompt


def test_untruncatable_entries_are_dropped_lowest_ranked_first():
    spec = TaskSpec(
        name="Whole",
        kind="generation",
        profile_fields=("text",),
        document_template="{text}",
        entry_template="[{text}]",
    )
    items = [{"id": str(i), "text": f"entry{i} " + words("w", 30)} for i in range(4)]
    tokenizer = CountingTokenizer(TOK)
    prompt = spec.prompt(words("q", 10), items, tokenizer=tokenizer, max_tokens=80)
    assert "entry0" in prompt and "entry1" in prompt and "entry2" not in prompt  # 2 x 31 tokens fit
    assert len(TOK.encode(prompt)) <= 80
    assert tokenizer.calls < 10
