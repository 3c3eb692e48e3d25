"""Batched greedy generation: prompts sorted by length and batched by count and by tokens, so that a
batch carries little padding and one long prompt does not pad a wide batch, each batch stopping as soon
as all of its rows have finished (models with virtual tokens: one prompt at a time).

Speed is measured two ways, never mixed: throughput is the batched pass over the whole test set at the
configured batch size (the recipe times that stage); latency is the wall time of one request answered
alone (batch 1), measured on a seeded sample of the test prompts by `batch1_latencies`. The wall time
of a batch is neither: every example in it would carry the whole batch's time.

Answers are kept batch by batch where the run asks (`AnsweredBatches`): each finished batch is one small
JSON file, written to a temporary name and renamed into place (whole or absent, never torn), so a run
interrupted or killed in its generation resumes at the first batch it had not finished, and the
processes of a multi-process run each answer their share of the batches."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ragft import processes
from ragft.errors import DataError
from ragft.models.loading import Generator
from ragft.record.run import replace_files

log = logging.getLogger(__name__)


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int
    padded_prompt_tokens: int = 0  # the prompt's row in its batch, padding included


@dataclass(frozen=True)
class Batching:
    """How prompts are grouped (`generation.*`): at most `size` a batch, a batch's padded prompt tokens
    (rows × its longest prompt) at most `max_tokens` (None: no bound), and its padding at most
    `max_padding` of its prompt tokens (None: no bound). A prompt alone always makes a batch."""

    size: int = 8
    max_padding: float | None = 0.2
    max_tokens: int | None = None

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices of the prompts of `lengths` in batches, shortest prompts first."""
        batches: list[list[int]] = []
        current: list[int] = []
        tokens = 0
        for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
            length, rows = lengths[index], len(current) + 1
            padded = rows * length  # sorted: the new prompt is the batch's longest
            fits = (
                rows <= self.size
                and (self.max_tokens is None or padded <= self.max_tokens)
                and (self.max_padding is None or padded - tokens - length <= self.max_padding * (tokens + length))
            )
            if current and not fits:
                batches.append(current)
                current, tokens = [], 0
            current.append(index)
            tokens += length
        return batches + [current] if current else batches


class AnsweredBatches:
    """The answered batches of one test set in `folder`; `ids` are its examples' ids, by prompt index."""

    def __init__(self, folder: Path, ids: Sequence[str]) -> None:
        self.folder = folder
        self.ids = list(ids)
        self.earlier_seconds = 0.0  # generation time of the batches an earlier attempt answered

    def load(self, batches: Sequence[Sequence[int]]) -> dict[int, list[Generation]]:
        """The kept answers of `batches` (batch index -> its rows' answers), their time added to
        `earlier_seconds`; a file whose examples differ from its batch's is not used."""
        kept: dict[int, list[Generation]] = {}
        self.earlier_seconds = 0.0
        for index, rows in enumerate(batches):
            try:
                saved = json.loads(self._file(index).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if saved.get("ids") != [self.ids[row] for row in rows]:
                log.info("answers of batch %d were for other examples; answering it again", index)
                continue
            kept[index] = [Generation(**g) for g in saved["answers"]]
            self.earlier_seconds += float(saved["seconds"])
        if kept:
            log.info(
                "%d of %d batches were answered by an earlier attempt; answering the rest", len(kept), len(batches)
            )
        return kept

    def save(self, index: int, rows: Sequence[int], answers: Sequence[Generation], seconds: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {"ids": [self.ids[row] for row in rows], "answers": [asdict(a) for a in answers], "seconds": seconds},
            ensure_ascii=False,
        )
        replace_files({self._file(index): lambda tmp: tmp.write_text(text, encoding="utf-8")})

    def _file(self, index: int) -> Path:
        return self.folder / f"batch-{index:05d}.json"


def check_fits(
    lengths: Sequence[int],
    ids: Sequence[str],
    max_new_tokens: int,
    max_context: int,
    places: Mapping[str, str] | None = None,
) -> None:
    """Fail before any work if a prompt plus its answer would not fit the model's context; the error
    names the example's file and line where `places` (example id -> place) knows them."""
    for length, example_id in zip(lengths, ids):
        if length + max_new_tokens > max_context:
            problem = (
                f"example '{example_id}' has a {length}-token prompt; with {max_new_tokens} new tokens "
                f"(task.generation.max_new_tokens) it exceeds the model context of {max_context} tokens. Shorten "
                "the input or the template, lower context.builder.k / top_k, or set generator.max_context for a "
                "model with a longer context."
            )
            raise DataError((places or {}).get(example_id, "task data"), problem)


def encode(generator: Generator, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt (the template already holds the special tokens)."""
    return [generator.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


Decode = Callable[[Any, Any, int, list[int], int], list[list[int]]]


@torch.inference_mode()
def generate(
    generator: Generator,
    encoded: Sequence[list[int]],
    ids: Sequence[str],
    max_new_tokens: int,
    batching: Batching = Batching(),
    desc: str = "generating",
    kept: AnsweredBatches | None = None,
) -> list[Generation]:
    """Greedy answers to the `encoded` prompts, in their order, in `batching`'s batches. A model with
    virtual tokens (peft prefix, P-tuning v2, prompt tuning) decodes one example at a time through
    `decode_with_virtual_tokens`.

    With `kept`, each batch's answers are kept as it finishes and batches an earlier attempt answered
    are not answered again. In a multi-process run each process answers every world-size-th batch and
    every process gets all the answers, in order (the batches are the same as in one process)."""
    check_fits([len(e) for e in encoded], ids, max_new_tokens, generator.max_context)
    decode, batching = _decoder(generator, batching)
    batches = batching.batches([len(e) for e in encoded])
    answered = kept.load(batches) if kept is not None else {}
    share, of = processes.rank(), processes.world_size()
    mine = [i for i in range(len(batches)) if i % of == share and i not in answered]
    total = sum(len(batches[i]) for i in mine)
    with tqdm(total=total, desc=desc, unit="ex", disable=not processes.is_main()) as progress:
        for index in mine:
            began = time.perf_counter()
            answered[index] = _answer(generator, [encoded[i] for i in batches[index]], max_new_tokens, decode)
            if kept is not None:
                kept.save(index, batches[index], answered[index], time.perf_counter() - began)
            progress.update(len(batches[index]))
    for answered_by_one in processes.gather(answered):  # every process's batches ([answered] in one process)
        answered.update(answered_by_one)
    results: list[Generation | None] = [None] * len(encoded)
    for index, rows in enumerate(batches):
        for row, generation in zip(rows, answered[index]):
            results[row] = generation
    return results  # type: ignore[return-value]


def latency_sample(n_examples: int, size: int, seed: int) -> list[int]:
    """`size` example indices (all of them where there are fewer), chosen with `seed`, in order."""
    if size <= 0 or n_examples == 0:
        return []
    chosen = np.random.default_rng(seed).choice(n_examples, size=min(size, n_examples), replace=False)
    return sorted(int(i) for i in chosen)


@torch.inference_mode()
def batch1_latencies(
    generator: Generator, encoded: Sequence[list[int]], sample: Sequence[int], max_new_tokens: int
) -> list[float]:
    """Seconds to answer each sampled prompt alone (batch 1): token ids in, text out, as one request
    is served. Run after the batched pass, so the model is warm."""
    decode, _ = _decoder(generator, Batching(1))
    latencies = []
    for index in sample:
        began = time.perf_counter()
        _answer(generator, [encoded[index]], max_new_tokens, decode)
        latencies.append(time.perf_counter() - began)
    return latencies


def _decoder(generator: Generator, batching: Batching) -> tuple[Decode, Batching]:
    """How the model decodes, and the batches it can take."""
    if has_virtual_tokens(generator.model):
        return decode_with_virtual_tokens, Batching(1)
    return _decode, batching


def _answer(
    generator: Generator, prompts: Sequence[list[int]], max_new_tokens: int, decode: Decode
) -> list[Generation]:
    """One batch: padded on the left, decoded, cut at the first end token, detokenised."""
    tokenizer, model = generator.tokenizer, generator.model
    eos = stop_token_ids(tokenizer.eos_token_id, model.generation_config.eos_token_id)
    batch = tokenizer.pad({"input_ids": list(prompts)}, return_tensors="pt", padding_side="left").to(generator.device)
    generations = []
    for prompt, tokens in zip(prompts, decode(model, batch, max_new_tokens, eos, tokenizer.pad_token_id)):
        kept = _until_eos(tokens, eos)
        text = tokenizer.decode(kept, skip_special_tokens=True).strip()
        generations.append(Generation(text, len(prompt), len(kept), padded_prompt_tokens=batch["input_ids"].shape[1]))
    return generations


def _decode(model: Any, batch: Any, max_new_tokens: int, eos: list[int], pad_token_id: int) -> list[list[int]]:
    """The new tokens of each row: transformers' greedy `generate` (KV cache, stops when every row ended)."""
    output = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos,
        pad_token_id=pad_token_id,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    return output[:, batch["input_ids"].shape[1] :].tolist()


def has_virtual_tokens(model: Any) -> bool:
    """A peft prompt-learning model: prefixes or soft prompts in front of every input."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def decode_with_virtual_tokens(
    model: Any, batch: Any, max_new_tokens: int, eos: list[int], pad_token_id: int
) -> list[list[int]]:
    """Greedy decoding of one unpadded prompt for a prompt-learning peft model. The prompt goes through
    peft's forward pass, which puts the virtual tokens (or per-layer prefixes) in front of it exactly as in
    training; each next token then runs on the base model against that pass's KV cache. (With peft 0.21
    and transformers 5, peft's own `generate` answers the same whatever the learned prefixes hold: they
    do not reach the model.)"""
    if batch["input_ids"].shape[0] != 1:
        raise ValueError("decode_with_virtual_tokens decodes one prompt at a time (padding would shift positions).")
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=True)
    base = model.get_base_model()
    tokens: list[int] = []
    for _ in range(max_new_tokens):
        token = output.logits[:, -1].argmax(-1, keepdim=True)
        tokens.append(int(token))
        if tokens[-1] in eos:
            break
        cache = output.past_key_values
        mask = torch.ones(1, cache.get_seq_length() + 1, dtype=torch.long, device=token.device)
        output = base(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True)
    return [tokens]


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
