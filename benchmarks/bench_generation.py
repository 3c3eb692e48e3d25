"""Generation throughput: ragft's generate() vs plain batched HF generate, same prompts, same run.

    python benchmarks/bench_generation.py --examples 48 --context rag

The baseline is what a plain script does: prompts in data order, batch 8, left padding,
model.generate with greedy decoding. ragft sorts prompts by length and uses the configured
(wider) batch. Both produce the same greedy answers up to padding effects; the script reports
generated tokens/s for each, the ratio, and how many answers agree exactly.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ragft.context.sources import ContextSources
from ragft.context.template import PromptTemplate
from ragft.data.loading import task_from_config
from ragft.models.generation import encode, generate
from ragft.models.loading import load_generator

CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


@torch.inference_mode()
def plain_generate(generator, prompts, max_new_tokens, batch_size=8):  # noqa: ANN001
    tokenizer, outputs, n_tokens = generator.tokenizer, [], 0
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        )
        out = generator.model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        for row in out[:, batch["input_ids"].shape[1] :]:
            kept = row[row != tokenizer.pad_token_id]
            n_tokens += len(kept)
            outputs.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return outputs, n_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--context", default="rag", help="zero_shot, few_shot or rag")
    parser.add_argument("--batch-size", type=int, default=None, help="ragft's batch (default: config)")
    args = parser.parse_args()
    OmegaConf.register_new_resolver("ragft_root", lambda: os.path.dirname(CONF), replace=True)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"context={args.context}", f"task.limits.test={args.examples}"])
    task = task_from_config(cfg.task)
    generator = load_generator(cfg.generator)
    test = task.split("test")
    contexts = instantiate(cfg.context.builder).build(
        test, ContextSources.from_config(task, cfg.get("retriever"), cfg.get("chunking"))
    )
    prompts = PromptTemplate.from_config(cfg.task.template).render_all(test, contexts, generator.tokenizer)
    max_new = cfg.task.generation.max_new_tokens

    start = time.perf_counter()
    plain, plain_tokens = plain_generate(generator, prompts, max_new)
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = generate(
        generator,
        encode(generator, prompts),
        [e.id for e in test],
        max_new,
        batch_size=args.batch_size or cfg.generation.batch_size,
    )
    ours_s = time.perf_counter() - start
    ours_tokens = sum(g.output_tokens for g in ours)

    print(f"{len(prompts)} {args.context} prompts, mean {sum(g.prompt_tokens for g in ours) / len(ours):.0f} tokens")
    print(f"plain HF generate (data order, batch 8): {plain_tokens / plain_s:6.1f} tokens/s  ({plain_s:.0f} s)")
    print(
        f"ragft generate (sorted, batch {args.batch_size or cfg.generation.batch_size}):"
        f"        {ours_tokens / ours_s:6.1f} tokens/s  ({ours_s:.0f} s)"
    )
    print(
        f"speed-up: {(ours_tokens / ours_s) / (plain_tokens / plain_s):.2f}x; "
        f"identical answers: {sum(a == b.text for a, b in zip(plain, ours))}/{len(ours)}"
    )


if __name__ == "__main__":
    main()
