"""A generated task that only a *set* of items answers: two profile items are needed together.

Every profile holds one item the user "handpicked" (it carries the gold label) and one "rated on
my scale" (it says how the user labels things). The scripted LLM answers with the handpicked
item's label only when both items are in its prompt, and with "none" otherwise, so any single
item is worth exactly as much as no item: an optimizer that scores candidates one by one (ROPG)
sees every candidate tie, while one that scores the whole set of k = 2 can find the pair.

Neither marker has anything to do with the query, and the encoder is a tiny random BERT
(:func:`tiny_encoder`), so the untuned retriever puts the pair on top only by chance and a
training run takes seconds on two cores.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import dspy

from tests.optimizers.key_item_task import LABELS, TOPICS, labelled_task

PICKED = "handpicked by me"
SCALE = "rated on my scale"

TASK = labelled_task("two-item", "test task: two profile items together hold the answer")


def make_examples(n: int, *, profile_size: int = 6, seed: int = 0) -> list[dspy.Example]:
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        topics = rng.sample(TOPICS, profile_size + 1)
        gold = rng.choice(LABELS)
        picked, scale = rng.sample(range(profile_size), 2)
        profile = []
        for j, topic in enumerate(topics[:profile_size]):
            marker = {picked: f", {PICKED}", scale: f", {SCALE}"}.get(j, "")
            label = gold if j == picked else rng.choice(LABELS)
            profile.append({"id": f"{i}-{j}", "text": f"a story about {topic}{marker}", "label": label})
        example = dspy.Example(
            id=str(i),
            input=f"Which label fits? item: a story about {topics[-1]}",
            profile=profile,
            output=gold,
            pair={f"{i}-{picked}", f"{i}-{scale}"},
        )
        examples.append(example.with_inputs("input", "profile"))
    return examples


def reply(messages: list[dict[str, str]]) -> str:
    """The scripted LLM: the handpicked item's label when the prompt shows it *and* the scale item."""
    prompt = messages[-1]["content"]
    match = re.search(rf'"[^"]*{PICKED}[^"]*" is labelled (\w+)', prompt)
    return match.group(1) if match and SCALE in prompt else "none"


def tiny_encoder(directory: Path, *, seed: int = 0) -> Path:
    """A random-weight one-layer BERT with MiniLM's tokenizer, saved to ``directory``: an encoder
    that trains in milliseconds a step, for tests of what an optimizer learns, not of MiniLM."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from persona_rag.encoders import resolve_encoder

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("all-MiniLM-L6-v2"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
