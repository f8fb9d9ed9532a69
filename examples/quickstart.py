"""Personalised answers with retrieval from the user's profile, on the project's sample task.

python examples/quickstart.py
"""

from __future__ import annotations

import tempfile

import dspy

from persona_rag import BM25Retriever, DenseRetriever, PersonalizedRAG, load_lamp, local_lm, make_sample_task


def main() -> None:
    dspy.configure(lm=local_lm())  # any dspy.LM works: a provider, vLLM, SGLang, Ollama...
    data = make_sample_task(tempfile.mkdtemp())
    dev = load_lamp(data, "dev").examples()

    for retriever in (BM25Retriever(), DenseRetriever()):
        program = PersonalizedRAG(task="LaMP-3", retriever=retriever, k=4)
        example = dev[0]
        prediction = program(input=example.input, profile=example.profile)
        print(
            f"{type(retriever).__name__}: answered {prediction.output} (gold {example.output}); "
            f"retrieved {prediction.ids} with scores {[round(s, 3) for s in prediction.scores]}"
        )

    evaluate = dspy.Evaluate(devset=dev, metric=program.task.metric, num_threads=4, display_progress=True)
    print("mean Eval (PAPER.md Eq. 8) over the dev split:", evaluate(program).score)


if __name__ == "__main__":
    main()
