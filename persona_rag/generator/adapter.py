"""How a LaMP prompt reaches a model through DSPy: the signature, and an adapter that sends it as is.

The LaMP prompts are complete instructions already, so :class:`PromptAdapter` sends the prompt as
the user turn (with the signature's instructions as the system turn and any demos as earlier
turns) instead of DSPy's field-marker format, which small models cannot follow. Prompt optimizers
still work: they change the instructions and demos that this adapter renders.
"""

from __future__ import annotations

from typing import Any

import dspy

__all__ = ["PersonalizedAnswer", "PromptAdapter"]


class PersonalizedAnswer(dspy.Signature):
    """Answer the request the way this user would."""

    prompt: str = dspy.InputField(desc="the task input, preceded by items from the user's profile")
    output: str = dspy.OutputField(desc="the answer only")


class PromptAdapter(dspy.Adapter):
    """Render ``prompt`` as the user turn and read the whole completion as ``output``."""

    def format(
        self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        messages = []
        if signature.instructions:
            messages.append({"role": "system", "content": signature.instructions})
        for demo in demos:
            if "prompt" in demo and "output" in demo:
                messages.append({"role": "user", "content": str(demo["prompt"])})
                messages.append({"role": "assistant", "content": str(demo["output"])})
        messages.append({"role": "user", "content": str(inputs["prompt"])})
        return messages

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        return {"output": (completion or "").strip()}
