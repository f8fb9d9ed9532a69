"""persona_rag.generator.extraction: the answer extracted from a free-text reply."""

from __future__ import annotations

import pytest

from persona_rag.generator import Generator, extract_answer


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        # Replies of SmolLM2-135M-Instruct on numpy_commit_subjects dev (LaMP-6 format).
        (
            'The title for this commit is: "Fix typo in module-level comment."',
            "Fix typo in module-level comment.",
        ),
        (
            "DOC: add release note for f2py --f2cmap\nDOC: adjust ILP64 openblas release note\nDOC:",
            "DOC: add release note for f2py --f2cmap",
        ),
        (
            "The subject for this commit is:\n\nhttps://github.com/jerry-jerry/jerry-jerry-python",
            "https://github.com/jerry-jerry/jerry-jerry-python",
        ),
        ("The subject for this commit is:\n\n```c\n#include <cstdint>\n", "#include <cstdint>"),
        # Typical replies of larger chat models.
        ("Title: Fix ldexp on 64 bits", "Fix ldexp on 64 bits"),
        ("Subject: BUG: fix ldexp on 64 bits", "BUG: fix ldexp on 64 bits"),
        (
            'Sure! Here is a possible subject line:\n\n"ENH: support dtype changes in views"',
            "ENH: support dtype changes in views",
        ),
        ("Here's the headline:\n**Rain returns to Paris**\n\nThe article says ...", "Rain returns to Paris"),
        ('"Fix typo" is the title for "files: numpy/core/numeric.py"', "Fix typo"),
        ("The commit title would be 'MAINT: tidy imports'.", "MAINT: tidy imports"),
        (
            "  \n\nTST: add tests for non-int slice deprecation\n",
            "TST: add tests for non-int slice deprecation",
        ),
        # Real subjects that look like preambles stay whole.
        ("BUG: fix title bar: crash on resize", "BUG: fix title bar: crash on resize"),
        ("DOC: Added links to text and table", "DOC: Added links to text and table"),
        # Nothing but a lead-in: its first line, not an empty answer.
        (
            "The user has requested a subject for the following commit:\n\n```",
            "The user has requested a subject for the following commit:",
        ),
        ("", ""),
    ],
)
def test_extract_answer_on_realistic_replies(reply, answer):
    assert extract_answer(reply) == answer


def test_server_replies_to_free_text_prompts_are_extracted(scripted_lm):
    reply = 'The title for the commit is: "BUG: fix ldexp on 64 bits"\nThis commit fixes the ldexp ...'
    extracted = Generator(lm=scripted_lm(reply))
    assert extracted.answer_extraction == "first-line"  # the default, stated by results tables
    assert [p.output for p in extracted.generate_batch(["Generate a subject", "Another"])] == [
        "BUG: fix ldexp on 64 bits"
    ] * 2
    assert extracted(prompt="Generate a subject").output == "BUG: fix ldexp on 64 bits"
    # With labels the parser reads the reply; "none" keeps the whole reply.
    assert extracted(prompt="Which tag?", labels=("comedy", "sci-fi")).output == reply
    assert Generator(lm=scripted_lm(reply), answer_extraction="none")(prompt="Generate").output == reply
    with pytest.raises(ValueError, match="answer_extraction"):
        Generator(answer_extraction="last-line")
    with pytest.raises(ValueError, match="label_normalization"):
        Generator(label_normalization="max")


@pytest.mark.slow
def test_local_first_line_answers_equal_the_extracted_whole_replies(local_generator):
    from persona_rag.lm import local_lm

    prompts = [
        "Generate a subject for the following commit: files: numpy/core/numeric.py",
        "List three fruits, one per line.",
    ]
    whole = Generator(lm=local_lm(), answer_extraction="none").generate_batch(prompts)
    first_line = local_generator.generate_batch(prompts)  # stops at the end of the answer line
    assert any("\n" in p.output for p in whole)
    assert [p.output for p in first_line] == [extract_answer(p.output) for p in whole]
