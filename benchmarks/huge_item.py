"""What one huge profile item costs: peak memory and seconds, with and without a 50 MB item.

A profile item has no size limit in the LaMP format, and tokenizers cut to a maximum length only
after tokenizing the whole text: one 50 MB item took 7.2 GiB and 84 s in ``evaluate --retriever
dense`` (BM25 alone 1.1 GiB, 7 s). Each consumer now cuts a text to what it can use before
tokenizing (:func:`persona_rag.tasks.truncation.clip`, ``MAX_INDEXED_CHARS`` of BM25). Target:
the item adds under 200 MB of peak memory and under 5 s.

For each retriever (dense, bm25), two fresh processes run the same LaMP-3 question, whose profile
holds 20 ordinary reviews and one more item: an ordinary one (the baseline), or one of ``--mb``
MB. Each process loads the split, builds the program (default generator's tokenizer for the
prompt budget of 512 tokens, MiniLM for dense), retrieves and builds the prompt, as
``persona-rag evaluate`` does before generating (generation reads only the budgeted prompt, the
same size in both runs). It reports the process's peak RSS and the seconds (wall and CPU) from
loading the split to the prompt; the difference between the two runs is what the item adds.

    python benchmarks/huge_item.py                 # 50 MB item, dense and bm25
    python benchmarks/huge_item.py --mb 5 --retrievers bm25
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REVIEW = "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
WORDS = ["a", "slow", "start", "but", "the", "cast", "carries", "it", "and", "the", "ending", "lands", "well"]


def write_split(directory: Path, huge_chars: int) -> None:
    """One LaMP-3 question whose profile holds 20 ordinary reviews and one of ``huge_chars``
    characters (an ordinary one when 0)."""
    ordinary = [
        {"id": f"p{i}", "text": " ".join(WORDS[i % 7 :] + WORDS[: i % 7]), "score": str(i % 5 + 1)}
        for i in range(20)
    ]
    sentence = " ".join(WORDS) + " "
    text = (sentence * (huge_chars // len(sentence) + 1))[:huge_chars] if huge_chars else sentence
    profile = [*ordinary, {"id": "huge", "text": text, "score": "4"}]
    question = {"id": "q1", "input": REVIEW + "review: the ending lands well", "profile": profile}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dev_questions.json").write_text(json.dumps([question]))
    (directory / "dev_outputs.json").write_text(
        json.dumps({"task": "LaMP_3", "golds": [{"id": "q1", "output": "4"}]})
    )


def child(data: Path, retriever: str) -> dict[str, float]:
    """Run in a fresh process: the models load first (the same in both runs), then the timed part."""
    from persona_rag import Generator, PersonalizedRAG
    from persona_rag.data import load_lamp
    from persona_rag.lm import local_lm
    from persona_rag.retrievers import make_retriever

    program = PersonalizedRAG(
        task="LaMP-3", retriever=make_retriever(retriever), generator=Generator(lm=local_lm())
    )
    program.generator.tokenizer.encode("warm up")  # the generator's model and tokenizer load here
    started, cpu = time.perf_counter(), time.process_time()
    examples = load_lamp(data, "dev").examples()
    [result] = program.batch_retrieve([examples[0].input], [examples[0].profile])
    prompt = program.build_prompt(examples[0].input, result)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_mib": peak_mib,
        "prompt_chars": len(prompt),
        "retrieved": result.ids,
    }


def measure(data: Path, retriever: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(data), "--retrievers", retriever],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the huge item in MB")
    parser.add_argument("--retrievers", default="dense,bm25")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.retrievers)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        baseline, huge = Path(scratch) / "baseline", Path(scratch) / "huge"
        write_split(baseline, 0)
        write_split(huge, int(args.mb * 1_000_000))
        for retriever in args.retrievers.split(","):
            base, big = measure(baseline, retriever), measure(huge, retriever)
            rows.append(
                {
                    "retriever": retriever,
                    "baseline_peak_mib": round(base["peak_mib"]),
                    "huge_peak_mib": round(big["peak_mib"]),
                    "added_peak_mib": round(big["peak_mib"] - base["peak_mib"]),
                    "baseline_s": round(base["seconds"], 2),
                    "huge_s": round(big["seconds"], 2),
                    "added_s": round(big["seconds"] - base["seconds"], 2),
                    "added_cpu_s": round(big["cpu_seconds"] - base["cpu_seconds"], 2),
                    "huge_item_retrieved": "huge" in big["retrieved"],
                    "prompt_chars": [base["prompt_chars"], big["prompt_chars"]],
                }
            )
    print(f"{args.mb:g} MB item; load average {os.getloadavg()[0]:.1f}")
    print("| retriever | peak MiB, baseline | peak MiB, with it | added MiB | added s (wall) | added CPU s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['retriever']} | {row['baseline_peak_mib']} | {row['huge_peak_mib']} | "
            f"**{row['added_peak_mib']}** | **{row['added_s']}** | {row['added_cpu_s']} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
