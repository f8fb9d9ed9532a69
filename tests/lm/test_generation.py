"""persona_rag.lm.generation: batched generation with the shared-prefix cache, and the stop rule."""

import torch

from persona_rag.lm import shared_local_lm


def test_generation_with_the_shared_prefix_cache_matches_plain_greedy_decoding():
    lm = shared_local_lm()
    questions = [
        "Rate this movie from 1 to 5: a slow but moving western.",
        "Which tag fits Toy Story? Answer with one word.",
        "Say hello.",
        "What is the score of the following review on a scale of 1 to 5? review: " + "great fun " * 20,
        "Name a colour.",
    ]
    conversations = [[{"role": "user", "content": q}] for q in questions]
    # Batches of two: rows of different lengths share a batch and finish at different steps.
    answers = lm.generate(conversations, max_new_tokens=12, batch_size=2)
    for conversation, answer in zip(conversations, answers):
        prompt = lm._encode_prompt(conversation)
        with torch.inference_mode():
            out = lm.model.generate(
                input_ids=torch.tensor([prompt]),
                max_new_tokens=12,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
            )[0, len(prompt) :].tolist()
        eos = lm.tokenizer.eos_token_id
        expected = lm.tokenizer.decode(out[: out.index(eos)] if eos in out else out, skip_special_tokens=True)
        assert answer.text == expected.strip()
        assert answer.input_tokens == len(prompt)


def test_stop_rule_ends_a_row_at_its_first_line_break():
    lm = shared_local_lm()
    conversations = [
        [{"role": "user", "content": "List three fruits, one per line."}],
        [
            {
                "role": "user",
                "content": "Generate a subject for the following commit: files: "
                "numpy/core/src/umath/umathmodule.c.src, numpy/core/tests/test_umath.py",
            }
        ],
    ]
    full = lm.generate(conversations, max_new_tokens=24, batch_size=2)
    asked: list[str] = []

    def stop(text: str) -> bool:
        asked.append(text)
        return True

    stopped = lm.generate(conversations, max_new_tokens=24, batch_size=2, stop=stop)
    for whole, cut in zip(full, stopped):
        assert "\n" in whole.text  # the prompts do produce several lines
        assert whole.text.startswith(cut.text) and "\n" not in cut.text
        assert cut.output_tokens < whole.output_tokens
    assert asked and all("\n" in text for text in asked)  # asked only at line breaks
