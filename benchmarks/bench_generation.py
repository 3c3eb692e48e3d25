"""Generation throughput: ragft's generate() against plain batched HF generate, same prompts, same run.

    python benchmarks/bench_generation.py          # SmolLM2-135M, 40 RAG prompts, 3 repeats (about 7 min on 2 cores)
    python benchmarks/bench_generation.py --tiny   # tiny random models: seconds

Three arms decode the same rendered prompts with the same model, greedy, the same stop tokens and
`max_new_tokens`, left padding, torch threads fixed:
- `ragft`: `encode` + `generate` (prompts sorted by length, the configured batch, 32 by default);
- `plain_same_batch`: a plain script -- prompts in data order, `tokenizer(...)` + `model.generate` per
  batch -- at ragft's batch size;
- `plain_best_batch`: the plain script at its own best batch size, chosen before timing by one probe
  pass of each size in `--grid` over the first `--probe-examples` prompts (left out where the best is
  ragft's batch: then it is `plain_same_batch`).
Every arm first decodes one untimed warm-up batch; the arms then alternate (A B C, C B A, A B C).
Tokens are the generated tokens up to the first stop token, counted the same way for every arm; timing
covers tokenisation and decoding. Writes benchmarks/results/bench_generation.json (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import (
    check_repeats,
    compose,
    default_threads,
    print_summary,
    result_path,
    run_repeats,
    set_threads,
    summarise,
    write_result,
)

BENCH = "bench_generation"
TINY = ["+debug=smoke"]  # tiny random generator and embedder (conf/debug/smoke.yaml)
WARMUP_PROMPTS = 8


def until_stop(tokens: Sequence[int], stop: Sequence[int]) -> list[int]:
    """The generated tokens before the first stop token: what counts as generated, in every arm."""
    for position, token in enumerate(tokens):
        if token in stop:
            return list(tokens[:position])
    return list(tokens)


def plain_generate(
    generator: Any, prompts: Sequence[str], max_new_tokens: int, batch_size: int, stop: list[int]
) -> tuple[list[str], int]:
    """A plain script: prompts in data order, tokenised and decoded one batch at a time."""
    import torch

    tokenizer, outputs, n_tokens = generator.tokenizer, [], 0
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(
                list(prompts[start : start + batch_size]),
                return_tensors="pt",
                padding=True,
                padding_side="left",
                add_special_tokens=False,
            ).to(generator.device)
            out = generator.model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=stop,
                pad_token_id=tokenizer.pad_token_id,
            )
            for row in out[:, batch["input_ids"].shape[1] :].tolist():
                kept = until_stop(row, stop)
                n_tokens += len(kept)
                outputs.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return outputs, n_tokens


def ragft_generate(
    generator: Any, prompts: Sequence[str], ids: Sequence[str], max_new_tokens: int, batch_size: int
) -> tuple[list[str], int]:
    """ragft's path: `encode` then `generate` (length-sorted batches, bounded by count alone as the plain
    path's are, so both run the same batch size)."""
    from ragft.models.generation import Batching, encode, generate

    batching = Batching(batch_size, max_padding=None)
    generations = generate(generator, encode(generator, prompts), ids, max_new_tokens, batching)
    return [g.text for g in generations], sum(g.output_tokens for g in generations)


def timed(run: Callable[[], tuple[list[str], int]], answers: dict[str, list[str]], name: str) -> dict[str, Any]:
    """Seconds and generated tokens of one call; its answers are kept aside (for the agreement count)."""
    gc.collect()
    start = time.perf_counter()
    outputs, tokens = run()
    seconds = time.perf_counter() - start
    answers[name] = outputs
    return {"seconds": seconds, "tokens": tokens}


def best_batch(probe: Sequence[dict[str, Any]]) -> int:
    """The probed batch size with the highest tokens/s (the smaller one on a tie)."""
    return max(probe, key=lambda p: (p["tokens"] / p["seconds"], -p["batch"]))["batch"]


def build_prompts(cfg: Any, generator: Any) -> tuple[list[str], list[str]]:
    """The test prompts a run with this config renders (retrieval included), and their ids."""
    from hydra.utils import instantiate

    from ragft.context.sources import ContextSources
    from ragft.context.template import PromptTemplate
    from ragft.data.loading import task_from_config

    task = task_from_config(cfg.task)
    test = task.split("test")
    sources = ContextSources.from_config(task, cfg.get("retriever"), cfg.get("chunking"))
    contexts = instantiate(cfg.context.builder).build(test, sources)
    prompts = PromptTemplate.from_config(cfg.task.template).render_all(test, contexts, generator.tokenizer)
    return prompts, [e.id for e in test]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=None, help="test prompts (default 40; --tiny 12)")
    parser.add_argument("--context", default="rag", help="zero_shot, few_shot or rag")
    parser.add_argument("--batch-size", type=int, default=None, help="ragft's batch (default: config, 32; --tiny 4)")
    parser.add_argument("--grid", type=int, nargs="+", default=None, help="plain batch sizes probed (default 8 16 32)")
    parser.add_argument("--probe-examples", type=int, default=None, help="prompts per probe pass (default 24)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per arm, at least 3")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (+debug=smoke): a smoke run")
    parser.add_argument("--overrides", nargs="*", default=[], help="further Hydra overrides")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_generation.json)")
    args = parser.parse_args()
    check_repeats(args.repeats)
    args.examples = args.examples or (12 if args.tiny else 40)
    args.grid = args.grid or ([2, 4, 8] if args.tiny else [8, 16, 32])
    args.probe_examples = args.probe_examples or (8 if args.tiny else 24)
    return args


class Arms:
    """The three arms over one loaded generator and its rendered prompts: each a call returning the
    answers and the generated-token count for a slice of the prompts."""

    def __init__(self, generator: Any, prompts: list[str], ids: list[str], max_new: int, batch: int) -> None:
        from ragft.models.generation import stop_token_ids

        self.generator, self.prompts, self.ids, self.max_new, self.batch = generator, prompts, ids, max_new, batch
        self.stop = stop_token_ids(generator.tokenizer.eos_token_id, generator.model.generation_config.eos_token_id)

    def plain(self, size: int, count: int | None = None) -> Callable[[], tuple[list[str], int]]:
        some = self.prompts[:count]
        return lambda: plain_generate(self.generator, some, self.max_new, size, self.stop)

    def ragft(self, count: int | None = None) -> Callable[[], tuple[list[str], int]]:
        some, ids = self.prompts[:count], self.ids[:count]
        return lambda: ragft_generate(self.generator, some, ids, self.max_new, self.batch)

    def probe(self, grid: Sequence[int], count: int) -> list[dict[str, Any]]:
        """One plain pass of each batch size over the first `count` prompts (untimed for the result)."""
        probe = [{"batch": b, **timed(self.plain(b, count), {}, "probe")} for b in grid]
        print(
            "probe (plain, data order): "
            + ", ".join(f"batch {p['batch']} {p['tokens'] / p['seconds']:.1f}" for p in probe)
        )
        return probe

    def timed_and_warmups(self, best: int, answers: dict[str, list[str]]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The timed arms (plain at its best batch only where that differs from ragft's) and a warm-up
        batch of each."""
        makers: dict[str, Callable[[int | None], Callable[[], tuple[list[str], int]]]] = {
            "plain_same_batch": lambda count: self.plain(self.batch, count),
            "ragft": self.ragft,
        }
        if best != self.batch:
            makers["plain_best_batch"] = lambda count: self.plain(best, count)
        timed_arms = {
            name: (lambda name=name, make=make: timed(make(None), answers, name)) for name, make in makers.items()
        }
        warmups = {name: make(WARMUP_PROMPTS) for name, make in makers.items()}
        return timed_arms, warmups


def settings_for(
    args: argparse.Namespace, arms: Arms, probe: list[dict[str, Any]], best: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """What the record says the benchmark ran: arms, token definition, sizes, threads, model."""
    tokenizer, batch = arms.generator.tokenizer, arms.batch
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in arms.prompts]
    return {
        "arms": {
            "ragft": f"ragft.models.generation.encode + generate, length-sorted, batch {batch}",
            "plain_same_batch": f"tokenizer + model.generate in data order, batch {batch}",
            "plain_best_batch": f"the same plain script at its best probed batch, {best}"
            + ("" if best != batch else " (= plain_same_batch, not measured twice)"),
        },
        "tokens": "generated tokens before the first stop token, every arm alike",
        "warmup": f"one untimed batch of the first {min(WARMUP_PROMPTS, len(lengths))} prompts per arm, after the probe",
        "probe": probe,
        "probe_examples": min(args.probe_examples, len(lengths)),
        "examples": len(lengths),
        "context": args.context,
        "batch_size": batch,
        "max_new_tokens": arms.max_new,
        "stop_token_ids": arms.stop,
        "mean_prompt_tokens": sum(lengths) / len(lengths),
        "repeats": args.repeats,
        "dtype": str(arms.generator.model.dtype),
        "tiny": args.tiny,
        **extra,
    }


def main() -> None:
    args = parse_args()
    threads = set_threads(args.threads or default_threads())
    overrides = [*(TINY if args.tiny else []), f"context={args.context}", f"task.limits.test={args.examples}"]
    cfg = compose([*overrides, *args.overrides])
    batch = args.batch_size or (4 if args.tiny else cfg.generation.batch_size)

    from ragft.models.loading import load_generator

    generator = load_generator(cfg.generator)
    prompts, ids = build_prompts(cfg, generator)
    arms = Arms(generator, prompts, ids, cfg.task.generation.max_new_tokens, batch)
    grid = sorted({*args.grid, batch})
    probe = arms.probe(grid, args.probe_examples)
    best = best_batch(probe)
    answers: dict[str, list[str]] = {}
    timed_arms, warmups = arms.timed_and_warmups(best, answers)
    records = run_repeats(timed_arms, args.repeats, warmups=warmups)
    best_arm = "plain_best_batch" if best != batch else "plain_same_batch"
    summary = summarise(
        records,
        {"ragft/plain_same_batch": ("ragft", "plain_same_batch"), "ragft/plain_best_batch": ("ragft", best_arm)},
    )
    summary["plain_best_batch_size"] = best
    summary["identical_answers_ragft_vs_plain_same_batch"] = sum(
        a == b for a, b in zip(answers["ragft"], answers["plain_same_batch"])
    )
    extra = {
        "grid": grid,
        "threads": threads,
        "generator": cfg.generator.name,
        "overrides": [*overrides, *args.overrides],
    }
    print_summary(summary)
    write_result(
        result_path(BENCH, args.out, args.tiny), BENCH, settings_for(args, arms, probe, best, extra), records, summary
    )


if __name__ == "__main__":
    main()
