"""Batched greedy generation: prompts sorted by length so a batch carries little padding, each
batch stopping as soon as all of its rows have finished."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ragft.errors import ConfigError
from ragft.models import Generator


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int
    latency_s: float


def check_fits(lengths: Sequence[int], ids: Sequence[str], max_new_tokens: int, max_context: int) -> None:
    """Fail before any work if a prompt plus its answer would not fit the model's context."""
    for length, example_id in zip(lengths, ids):
        if length + max_new_tokens > max_context:
            raise ConfigError(
                "task.generation.max_new_tokens",
                f"example '{example_id}' has a {length}-token prompt; with {max_new_tokens} new tokens it exceeds "
                f"the model context of {max_context} tokens.",
                "Shorten the template, lower context.builder.k / top_k, or set generator.max_context for a "
                "model with a longer context.",
            )


def encode(generator: Generator, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt (the template already holds the special tokens)."""
    return [generator.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


@torch.inference_mode()
def generate(
    generator: Generator,
    encoded: Sequence[list[int]],
    ids: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 8,
    desc: str = "generating",
) -> list[Generation]:
    """Greedy answers to the `encoded` prompts, in their order; latency is the wall time of the example's batch."""
    tokenizer, model = generator.tokenizer, generator.model
    check_fits([len(e) for e in encoded], ids, max_new_tokens, generator.max_context)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[Generation | None] = [None] * len(encoded)
    eos = stop_token_ids(tokenizer.eos_token_id, model.generation_config.eos_token_id)
    with tqdm(total=len(encoded), desc=desc, unit="ex") as progress:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer.pad(
                {"input_ids": [encoded[i] for i in rows]}, return_tensors="pt", padding_side="left"
            ).to(generator.device)
            began = time.perf_counter()
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
            elapsed = time.perf_counter() - began
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            for row, tokens in zip(rows, new_tokens):
                kept = _until_eos(tokens.tolist(), eos)
                text = tokenizer.decode(kept, skip_special_tokens=True).strip()
                results[row] = Generation(text, len(encoded[row]), len(kept), elapsed)
            progress.update(len(rows))
    return results  # type: ignore[return-value]


def stop_token_ids(*ids: int | Sequence[int] | None) -> list[int]:
    """Every end-of-sequence id, whether given as one id or a list (Llama 3, Qwen 2.5 use lists)."""
    flat: list[int] = []
    for value in ids:
        for token in [value] if isinstance(value, int) else list(value or []):
            if token not in flat:
                flat.append(token)
    return flat


def _until_eos(tokens: list[int], eos: Sequence[int]) -> list[int]:
    for position, token in enumerate(tokens):
        if token in eos:
            return tokens[:position]
    return tokens
