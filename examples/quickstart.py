"""Personalised answers with retrieval from the user's profile, on the project's sample task.

    python examples/quickstart.py                       # a fresh sample task, zero-shot reader
    python examples/quickstart.py --data ../shared/lamp-real/movielens_rating

The offline default model answers zero-shot here (`persona-rag demo` fine-tunes it first): what
this shows is what each retriever puts in front of it, and how a DSPy evaluation runs a program.
"""

from __future__ import annotations

import argparse
import tempfile

import dspy

from persona_rag import BM25Retriever, DenseRetriever, PersonalizedRAG, load_lamp, local_lm, make_sample_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="LaMP-format directory (default: a fresh sample task)")
    parser.add_argument("--questions", type=int, default=24, help="dev questions evaluated")
    parser.add_argument("--tiny", action="store_true", help="a few questions (seconds)")
    args = parser.parse_args()

    dspy.configure(lm=local_lm())  # any dspy.LM works: a provider, vLLM, SGLang, Ollama...
    data = args.data or make_sample_task(tempfile.mkdtemp())
    split = load_lamp(data, "dev", limit=4 if args.tiny else args.questions)
    dev = split.examples()

    example = dev[0]
    print(f"question: {example.input}")
    for retriever in (BM25Retriever(), DenseRetriever()):
        program = PersonalizedRAG(task=split.task, retriever=retriever, k=4)
        prediction = program(input=example.input, profile=example.profile)
        print(f"{type(retriever).__name__}: answered {prediction.output} (gold {example.output}) from")
        for item, score in zip(prediction["items"], prediction.scores):  # .items is the dict method
            print(f"    {score:6.3f}  {split.task.entry(item)}")

    evaluate = dspy.Evaluate(devset=dev, metric=program.task.metric, num_threads=1, display_progress=True)
    print(f"mean Eval (Eq. 8 of docs/method.md) over {len(dev)} dev questions:", evaluate(program).score)


if __name__ == "__main__":
    main()
