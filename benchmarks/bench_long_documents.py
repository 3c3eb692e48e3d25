"""Long corpus documents: a retrieval arm's time per example against zero-shot's, and the padding of every arm.

    python benchmarks/bench_long_documents.py          # 40 PubMedQA questions, ~3,000-word documents, 3 repeats
    python benchmarks/bench_long_documents.py --tiny   # tiny random models, 8 questions: a smoke run

The corpus is made from the shared PubMedQA data (`--data`, default ../shared/data/pubmedqa) in a
temporary folder: every abstract of the data set, whole, concatenated in id order into documents of at
least `--words` words (3,000 by default), each document one corpus entry; a question's gold passage is
the document holding its abstract.

Arms, each a whole `ragft.recipe.run_experiment_arm` on the first `--examples` test questions with the
defaults (SmolLM2-135M, MiniLM, exact FAISS index, batch 32, greedy): `zero_shot`, `few_shot` (two most
similar training questions), `rag` (the top passage; nothing chunked by configuration, so the run
chunks the corpus to the embedder's window by itself, as a user's first run on such a corpus would)
and `rag_chunks_128` (the top passage with `chunking=tokens`: 128-token chunks overlapping by 32).
Every arm runs once untimed first (a retrieving warm-up embeds and indexes the corpus, which the timed
runs reuse from the cache; the build time is recorded apart), then the arms alternate (A B C D,
D C B A, A B C D). Per run: seconds per example for the
whole run (wall clock around the call: task, model, context and answers; the batch-1 latency sample is
off) and for answering alone (the run's `build_context` + `generate` stages), the prompt tokens, and
`prompt_padding_share` (the share padding adds to the prompt tokens a batch processes) from the run's
own record. Ratios (each arm / zero_shot) are paired within each repeat.
Writes benchmarks/results/bench_long_documents.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import ROOT, check_repeats, print_summary, result_path, run_repeats, summarise, write_result

BENCH = "bench_long_documents"
# label -> overrides: the arm presets, and RAG over 128-token chunks (chunking=tokens: 128, overlapping 32)
ARMS = {
    "zero_shot": ["arm=zero_shot"],
    "few_shot": ["arm=few_shot"],
    "rag": ["arm=rag"],
    "rag_chunks_128": ["arm=rag", "chunking=tokens"],
}
TINY = ["+debug=smoke"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def long_document_task(data: Path, folder: Path, words: int) -> dict[str, Any]:
    """Write pubmedqa.jsonl (each question with the id of the document holding its abstract) and
    corpus.jsonl (every abstract, whole, concatenated in id order into documents of at least `words`
    words) into `folder`; returns the corpus' word counts."""
    abstracts: dict[str, list[str]] = {}
    for passage in read_jsonl(data / "corpus.jsonl"):
        abstracts.setdefault(str(passage["pmid"]), []).append(passage["text"])
    documents: list[dict[str, Any]] = []
    document_of: dict[str, str] = {}
    current: list[str] = []
    for pmid in sorted(abstracts):
        current.append(" ".join(abstracts[pmid]))
        document_of[pmid] = f"doc-{len(documents)}"
        if sum(len(text.split()) for text in current) >= words:
            documents.append({"id": f"doc-{len(documents)}", "text": "\n\n".join(current)})
            current = []
    if current:
        documents.append({"id": f"doc-{len(documents)}", "text": "\n\n".join(current)})
    questions = [dict(row, document=document_of[str(row["id"])]) for row in read_jsonl(data / "pubmedqa.jsonl")]
    write_jsonl(folder / "pubmedqa.jsonl", questions)
    write_jsonl(folder / "corpus.jsonl", documents)
    lengths = sorted(len(d["text"].split()) for d in documents)
    return {"documents": len(documents), "words_min": lengths[0], "words_median": lengths[len(lengths) // 2],
            "words_max": lengths[-1]}  # fmt: skip


def overrides(folder: Path, results: Path, examples: int, tiny: bool) -> list[str]:
    """The run's config on the long-document task: its questions' own document as gold, no chunking set."""
    return [
        "task=pubmedqa",
        f"task.dir={folder}",
        "task.corpus.document_field=null",
        "task.data.fields.gold_passages=document",
        f"task.limits.test={examples}",
        "generation.latency_sample=0",
        f"paths.results={results}",
        *(TINY if tiny else []),
    ]


def run_arm(base: list[str], arm: str, label: str) -> dict[str, Any]:
    """One whole run of `arm` (its own experiment folder, so nothing is reused but the cached index)."""
    from ragft.cli import compose_config
    from ragft.recipe import run_experiment_arm
    from ragft.record.run import read_record

    cfg = compose_config([*base, *ARMS[arm], f"exp_name={label}"], runnable=True)
    start = time.perf_counter()
    run_dir = run_experiment_arm(cfg)
    seconds = time.perf_counter() - start
    cost = read_record(run_dir).cost
    generation, stages = cost.generation, cost.stage_s
    n = generation.examples
    answering = stages["build_context"] + stages["generate"]
    return {
        "seconds": seconds,
        "tokens": round(n * (generation.prompt_tokens_mean + generation.output_tokens_mean)),  # prompt + generated
        "examples": n,
        "s_per_example": seconds / n,
        "answer_s_per_example": answering / n,
        "stage_s": stages,
        "prompt_tokens_mean": generation.prompt_tokens_mean,
        "prompt_tokens_max": generation.prompt_tokens_max,
        "prompt_padding_share": generation.prompt_padding_share,
        "retrieval": None if cost.retrieval is None else cost.retrieval.__dict__,
        "prompt_fit": None if cost.prompt_fit is None else cost.prompt_fit.__dict__,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "pubmedqa"), help="PubMedQA folder")
    parser.add_argument("--examples", type=int, default=None, help="test questions (default 40; --tiny 8)")
    parser.add_argument("--words", type=int, default=3000, help="least words per corpus document")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per arm, at least 3")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (+debug=smoke): a smoke run")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_long_documents.json)")
    args = parser.parse_args()
    check_repeats(args.repeats)
    args.examples = args.examples or (8 if args.tiny else 40)
    return args


def main() -> None:
    args = parse_args()
    data = Path(args.data)
    if not (data / "corpus.jsonl").is_file():
        raise SystemExit(f"{data}: no corpus.jsonl here; point --data at the shared PubMedQA folder.")
    with tempfile.TemporaryDirectory(prefix="ragft-long-") as scratch:
        folder, results = Path(scratch) / "task", Path(scratch) / "results"
        folder.mkdir()
        corpus = long_document_task(data, folder, args.words)
        print(f"corpus: {corpus}")
        base = overrides(folder, results, args.examples, args.tiny)
        counter = iter(range(10**6))

        def arm_call(arm: str) -> Callable[[], dict[str, Any]]:
            return lambda: run_arm(base, arm, f"{arm}-{next(counter)}")

        warmups = {arm: arm_call(arm) for arm in ARMS}
        records = run_repeats({arm: arm_call(arm) for arm in ARMS}, args.repeats, warmups, log=print)
    ratios = {f"{arm}/zero_shot": (arm, "zero_shot") for arm in ARMS if arm != "zero_shot"}
    summary = summarise(records, ratios, unit="s_per_example")
    for key in ("answer_s_per_example", "prompt_padding_share", "prompt_tokens_mean"):
        summary[key] = {arm: [r["arms"][arm][key] for r in records] for arm in ARMS}
    print_summary(summary)
    settings = {
        "data": "shared PubMedQA (PQA-L): every abstract, concatenated into long documents",
        "corpus": corpus,
        "examples": args.examples,
        "words_per_document_at_least": args.words,
        "arms": {
            arm: f"ragft.recipe.run_experiment_arm, {' '.join(overrides)}, defaults" for arm, overrides in ARMS.items()
        },
        "overrides": [o for o in base if not o.startswith(("task.dir=", "paths.results="))],
        "tiny": args.tiny,
    }
    write_result(result_path(BENCH, args.out, args.tiny), BENCH, settings, records, summary)


if __name__ == "__main__":
    main()
