"""Check a task before any model work:

    python -m ragft.task check task=<name> [overrides]

Reads the task's data and corpus as a run reads them (a problem is one line naming the key, or the file,
line and field, exit status 2) and prints, in seconds: the examples per split and category; token
lengths (p50, p90, p99, max) of inputs, references and corpus passages under the generator's tokenizer,
and of the passages under the embedder's; how many test prompts fit the prompt budget with each context
(zero-shot, few-shot and RAG as conf/context/ configures them, their demonstrations drawn at random and
their passages the gold ones, where the task has them: no embedding, no retrieval); the leakage checks;
the first test example's prompt with each context; and every problem a run would meet, with the setting
to change. The generator is not loaded, only its tokenizer and config (the packaged default is converted
once per machine, as any run converts it); the embedder is, where a retriever uses one, to know how much
of a passage it reads (its window), as a RAG run would chunk the corpus to it.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

import ragft.cli  # noqa: F401  (offline mode and the `ragft_root` resolver, as for every ragft command)
from ragft.cli import CONF, compose_config, interruptible
from ragft.config.schema import validate
from ragft.context.budget import prompt_budget
from ragft.context.shots import RandomShots
from ragft.context.sources import ContextSources
from ragft.context.template import PromptTemplate
from ragft.data.leakage import check_leakage
from ragft.data.loading import task_from_config
from ragft.data.text import token_counts
from ragft.errors import RagftError
from ragft.models.loading import generator_tokenizer
from ragft.retrieval.embeddings import Embedder
from ragft.types import Context, Example, Passage, TaskData

CONTEXTS = ("zero_shot", "few_shot", "rag")  # conf/context/ files a check renders prompts with
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Lengths:
    """Token counts of some texts: percentiles and the maximum."""

    name: str
    counts: list[int]

    def row(self) -> str:
        if not self.counts:
            return f"| {self.name} | 0 | – | – | – | – |"
        p = [int(np.percentile(self.counts, q)) for q in PERCENTILES]
        return f"| {self.name} | {len(self.counts)} | {p[0]} | {p[1]} | {p[2]} | {max(self.counts)} |"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: `check` and config overrides; a RagftError is one line and exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return 0
    if not args or args[0] != "check":
        given = f"'{args[0]}'" if args else "none"
        print(f"ragft: error: command {given}: the one command is `check` (python -m ragft.task check task=<name>).",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        print(interruptible(lambda: check(compose_config(args[1:]))))
    except RagftError as err:
        print(f"ragft: error: {err}", file=sys.stderr)
        return 2
    return 0


def check(cfg: DictConfig) -> str:
    """The report of `python -m ragft.task check` on the composed config `cfg`."""
    validate(cfg)
    task = task_from_config(cfg.task)
    tokenizer, window = generator_tokenizer(cfg.generator)
    max_new_tokens = int(cfg.task.generation.max_new_tokens)
    budget = prompt_budget(cfg.context.builder.get("max_prompt_tokens"), window, max_new_tokens)
    sources = ContextSources.from_config(task, cfg.get("retriever"), cfg.get("chunking"))
    passages = sources.passages() if task.corpus else []
    problems = _problems(task, sources)
    prompts = Prompts(
        PromptTemplate.from_config(cfg.task.template),
        tokenizer,
        budget,
        int(cfg.seed),
        cfg.task.get("truncate"),
    )
    sections = [
        f"# task {task.name}: {cfg.task.data.path}",
        _splits(task),
        _lengths(task, passages, tokenizer, sources.reading_embedder()),
        f"## prompts\n\nBudget: {budget} prompt tokens (the generator's window of {window} less {max_new_tokens} "
        "new tokens, unless context.builder.max_prompt_tokens sets it).\n\n" + prompts.table(task, passages, problems),
        _leakage(task, cfg),
        "## problems\n\n" + ("\n".join(f"- {p}" for p in problems) if problems else "none found"),
    ]
    return "\n\n".join(sections)


def _splits(task: TaskData) -> str:
    lines = ["## splits", "", "| split | examples | categories |", "|---|---|---|"]
    for name, examples in task.splits.items():
        categories = Counter(e.category or "(none)" for e in examples).most_common()
        shown = ", ".join(f"{c} {n}" for c, n in categories[:8]) + (
            f" and {len(categories) - 8} more" if len(categories) > 8 else ""
        )
        lines.append(f"| {name} | {len(examples)} | {shown} |")
    return "\n".join(lines)


def _lengths(task: TaskData, passages: Sequence[Passage], tokenizer: Any, embedder: Embedder | None) -> str:
    examples = [e for split in task.splits.values() for e in split]
    rows = [
        Lengths("input (generator)", token_counts([e.input for e in examples], tokenizer)),
        Lengths("reference (generator)", token_counts([e.reference for e in examples], tokenizer)),
    ]
    if passages:
        texts = [p.text for p in passages]
        rows.append(Lengths("passage as indexed (generator)", token_counts(texts, tokenizer)))
        if embedder is not None:
            name = f"passage as indexed ({embedder.name or 'embedder'}, reads {embedder.window})"
            rows.append(Lengths(name, token_counts(texts, embedder.tokenizer)))
    header = ["## token lengths", "", "| text | n | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|"]
    return "\n".join(header + [row.row() for row in rows])


@dataclass
class Prompts:
    """The test prompts each context in CONTEXTS would make, built without models: demonstrations drawn
    at random from the train split (as many as the context's `k`), the gold passages as indexed (else
    random ones; as many as its `top_k`)."""

    template: PromptTemplate
    tokenizer: Any
    budget: int
    seed: int  # of the random demonstrations and passages
    truncate: str | None  # task.truncate: inputs over the budget are cut, not a problem

    def table(self, task: TaskData, passages: Sequence[Passage], problems: list[str]) -> str:
        test = task.splits.get("test", [])
        rows = ["| context | test prompts | within the budget | p50 tokens | max tokens |", "|---|---|---|---|---|"]
        shown = []
        for name in CONTEXTS:
            builder = OmegaConf.load(CONF / "context" / f"{name}.yaml").builder
            if builder.get("top_k") and not passages:
                continue
            contexts = self.contexts(test, task, passages, builder)
            prompts = [self.template.render(e, c, self.tokenizer) for e, c in zip(test, contexts)]
            counts = token_counts(prompts, self.tokenizer)
            within = sum(n <= self.budget for n in counts)
            p50 = int(np.percentile(counts, 50)) if counts else "–"
            rows.append(f"| {name} | {len(counts)} | {within} | {p50} | {max(counts, default=0)} |")
            if name == "zero_shot" and within < len(counts) and self.truncate is None:
                problems.append(
                    f"{len(counts) - within} test inputs are over the prompt budget on their own: a run stops unless "
                    "task.truncate is set (head, tail or middle), or the generator reads more (generator.max_context)."
                )
            if prompts:
                shown.append(f"### {name}: the prompt of '{test[0].id}'\n\n```\n{prompts[0]}\n```")
        return "\n".join(rows) + "\n\n" + "\n\n".join(shown)

    def contexts(
        self, test: Sequence[Example], task: TaskData, passages: Sequence[Passage], builder: Any
    ) -> list[Context]:
        if builder.get("k"):  # as few_shot_random picks them
            pool = task.splits.get("train", [])
            k = max(0, min(int(builder.k), len(pool) - 1))
            chosen = RandomShots(self.seed).select(test, pool, k, exclude_self=True)
            return [Context(shots=tuple(pool[i] for i in row)) for row in chosen]
        if builder.get("top_k"):
            rng, top_k = random.Random(self.seed), int(builder.top_k)
            return [
                Context(
                    passages=tuple(
                        (
                            [p for p in passages if p.doc_id in e.gold_passages]
                            or rng.sample(list(passages), min(top_k, len(passages)))
                        )[:top_k]
                    )
                )
                for e in test
            ]
        return [Context() for _ in test]


def _leakage(task: TaskData, cfg: DictConfig) -> str:
    report = check_leakage(task, {**cfg.leakage, "fail": False})
    lines = ["## leakage", "", "| check | checked | exact | near | rate |", "|---|---|---|---|---|"]
    for name, found in report.items():
        lines.append(f"| {name} | {found['checked']} | {found['exact']} | {found['near']} | {found['rate']:.3f} |")
    return "\n".join(lines)


def _problems(task: TaskData, sources: ContextSources) -> list[str]:
    """What a run on this task would meet besides the errors loading already raised."""
    found = []
    if not task.splits.get("validation"):
        found.append(
            "no validation split: tuning (tune.trials) and training.validation.split need one; map one with "
            "task.data.splits or make one with task.data.split_by."
        )
    found += [
        f"split '{name}' ({len(examples)} examples) is not one ragft uses (train, validation, test): map it with "
        "task.data.splits."
        for name, examples in task.splits.items()
        if name not in ("train", "validation", "test")
    ]
    if task.corpus and not any(e.gold_passages for split in task.splits.values() for e in split):
        found.append(
            "no gold passages mapped: recall@k, the ranking metrics, oracle_rag and RAFT need "
            "task.data.fields.gold_passages."
        )
    if sources.window_split:
        over, size = sources.window_split
        found.append(
            f"{over} corpus documents are longer than the embedder reads: a RAG run splits them into chunks of {size} "
            "tokens (choose with chunking=tokens chunking.size=<n>, or chunking=sections)."
        )
    return found


if __name__ == "__main__":
    sys.exit(main())
