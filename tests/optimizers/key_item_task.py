"""A generated task where exactly one profile item holds the answer.

Every profile has one item the user marked as their own pick ("handpicked by me"); it carries the
gold label. The scripted LLM answers with a label only when that item is in its prompt, so
Eval = 1 exactly when the retriever put the key item in front of the LLM. The marker has nothing
to do with the query, so an untuned retriever ranks the key item first only by chance: the signal
must teach it.
"""

from __future__ import annotations

import random
import re

import dspy

from persona_rag import Generator, NoRetriever, PersonalizedRAG, RandomRetriever, Selector
from persona_rag.tasks import TaskSpec, register_task

LABELS = ("alpha", "beta", "gamma", "delta")
TOPICS = (
    "pirates sailing the ocean",
    "a chef opening a bakery",
    "astronauts on a space station",
    "a detective in a rainy city",
    "a family road trip",
    "robots learning to paint",
    "a haunted lighthouse",
    "a chess prodigy",
    "surfers chasing waves",
    "a jazz band on tour",
    "farmers during a drought",
    "spies in a snowy capital",
    "a dragon guarding gold",
    "students building a rocket",
    "a circus on the move",
    "divers exploring a wreck",
)
MARKER = "handpicked by me"


def labelled_task(name: str, description: str, document_template: str = "{text}") -> TaskSpec:
    """Register a classification task over ``text``/``label`` profile items and ``item:`` queries,
    the shape every generated optimizer task here shares."""
    return register_task(
        TaskSpec(
            name=name,
            kind="classification",
            profile_fields=("text", "label"),
            document_template=document_template,
            entry_template='"{text}" is labelled {label}',
            truncate_field="text",
            query_marker="item:",
            labels=LABELS,
            description=description,
        ),
        overwrite=True,
    )


TASK = labelled_task("key-item", "test task: one profile item holds the answer")


def make_examples(n: int, *, profile_size: int = 8, seed: int = 0) -> list[dspy.Example]:
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        topics = rng.sample(TOPICS, profile_size + 1)
        gold = rng.choice(LABELS)
        key = rng.randrange(profile_size)
        profile = []
        for j, topic in enumerate(topics[:profile_size]):
            text = f"a story about {topic}" + (f", {MARKER}" if j == key else "")
            label = gold if j == key else rng.choice(LABELS)
            profile.append({"id": f"{i}-{j}", "text": text, "label": label})
        example = dspy.Example(
            id=str(i),
            input=f"Which label fits? item: a story about {topics[-1]}",
            profile=profile,
            output=gold,
            key=f"{i}-{key}",
        )
        examples.append(example.with_inputs("input", "profile"))
    return examples


def reply(messages: list[dict[str, str]]) -> str:
    """The scripted LLM: the label of the handpicked item when the prompt shows it, else 'none'."""
    match = re.search(rf'"[^"]*{MARKER}[^"]*" is labelled (\w+)', messages[-1]["content"])
    return match.group(1) if match else "none"


def selector_program(lm: dspy.LM, mode: str, *, k: int = 3) -> PersonalizedRAG:
    """A program choosing among two random retrievers and no retrieval: the best member of an
    example is one whose ``k`` items happen to include the key item, which only its prompt shows."""
    pool = {"random-a": RandomRetriever(seed=1), "random-b": RandomRetriever(seed=2), "none": NoRetriever()}
    return PersonalizedRAG(
        task=TASK, generator=Generator(lm=lm), k=k, selector=Selector(pool=pool, mode=mode)
    )
