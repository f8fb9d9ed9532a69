"""persona_rag.generator.adapter: the prompt adapter."""

from __future__ import annotations

from persona_rag.generator import PersonalizedAnswer, PromptAdapter


def test_prompt_adapter_sends_the_prompt_as_the_user_turn():
    messages = PromptAdapter().format(
        PersonalizedAnswer, [{"prompt": "demo in", "output": "demo out"}], {"prompt": "the question"}
    )
    assert messages[0] == {"role": "system", "content": PersonalizedAnswer.instructions}
    assert messages[1:] == [
        {"role": "user", "content": "demo in"},
        {"role": "assistant", "content": "demo out"},
        {"role": "user", "content": "the question"},
    ]
    assert PromptAdapter().parse(PersonalizedAnswer, "  4 \n") == {"output": "4"}
