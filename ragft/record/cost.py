"""Measured cost of a run, typed: parameters, training, retrieval, generation, memory and stage times,
and the instruments that measure them (stage timer, parameter counts; peak memory in
`ragft.record.memory`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from functools import reduce
from typing import Any, TypedDict

import numpy as np

from ragft.record.memory import MemoryCost, PeakMemory

__all__ = [
    "Cost",
    "GenerationCost",
    "MemoryCost",
    "ParameterCounts",
    "PeakMemory",
    "PromptFit",
    "RetrievalCost",
    "StageTimer",
    "TrainingCost",
    "parameter_counts",
]


@dataclass
class PreferenceCost:
    """What a preference stage (DPO, ORPO) trained on and what building its pairs cost."""

    objective: str  # "dpo", "orpo"
    source: str  # where the pairs came from: "own answers", "answers of run <name>", "file <name>"
    pairs: int
    pair_ids: list[str]  # the train examples the pairs are of, in training order (no test example)
    answers_scored: int | None = None  # train answers scored for the pairs (own answers), None otherwise
    threshold: float | None = None  # an answer scoring below it on the primary metric was rejected
    mean_rejected_score: float | None = None
    pairs_s: float = 0.0  # building the pairs: answering and scoring the train split, or reading the file


@dataclass
class TrainingCost:
    """What training the generator cost; summed over stages where a run trains several."""

    total_params: int = 0
    trainable_params: int = 0
    stored: str = ""  # what a deployment stores per task ("adapter", "full model", ...)
    adapter_bytes: int = 0
    adapter_reused: bool = False
    train_s: float = 0.0
    train_tokens: int = 0
    train_tokens_per_s: float = 0.0
    train_examples: int = 0
    train_steps: int = 0
    train_loss: float | None = None
    train_stages: int = 1
    memory: MemoryCost = field(default_factory=MemoryCost)
    loss_history: list[float] = field(default_factory=list)
    validation_examples: int | None = None
    eval_loss_history: list[float] | None = None
    best_eval_loss: float | None = None
    stopped_early: bool | None = None
    # The train splits' examples fitted to training.max_length, counted before a hold-out or a mix takes its
    # share of them (None: recorded before ragft fitted them)
    prompt_fit: PromptFit | None = None
    # The step an interrupted training resumed from (its last checkpoint); time and loss cover every attempt
    resumed_from_step: int | None = None
    preference: PreferenceCost | None = None  # the preference stage's pairs (adaptation=dpo, orpo)
    # Preference training's last logged share of pairs whose chosen response the model prefers, and the mean
    # margin (TRL's rewards/accuracies and rewards/margins; None for supervised training)
    reward_accuracy: float | None = None
    reward_margin: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingCost:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k not in ("memory", "prompt_fit", "preference")}
        fit = PromptFit(**data["prompt_fit"]) if data.get("prompt_fit") else None
        preference = PreferenceCost(**data["preference"]) if data.get("preference") else None
        return cls(**values, memory=MemoryCost(**data.get("memory", {})), prompt_fit=fit, preference=preference)

    @classmethod
    def summed(cls, stages: Sequence[TrainingCost]) -> TrainingCost:
        """The last stage's record with time, tokens, examples, steps and fitted prompts summed over every stage, peak
        memory the highest of any stage, and `adapter_reused` only where every stage was reused."""
        last = stages[-1]
        if len(stages) == 1:
            return last
        train_s = sum(s.train_s for s in stages)
        tokens = sum(s.train_tokens for s in stages)
        peaks = [s.memory for s in stages]
        cuda = [m.peak_cuda_mb for m in peaks if m.peak_cuda_mb is not None]
        fits = [s.prompt_fit for s in stages if s.prompt_fit]
        return TrainingCost(
            **{
                **asdict(last),
                "train_s": train_s,
                "train_tokens": tokens,
                "train_tokens_per_s": tokens / train_s if train_s else 0.0,
                "train_examples": sum(s.train_examples for s in stages),
                "train_steps": sum(s.train_steps for s in stages),
                "train_stages": len(stages),
                "adapter_reused": all(s.adapter_reused for s in stages),
                "prompt_fit": reduce(PromptFit.plus, fits) if fits else None,
                "preference": last.preference,
                "memory": MemoryCost(
                    peak_rss_mb=max(m.peak_rss_mb for m in peaks),
                    rss_at_start_mb=last.memory.rss_at_start_mb,
                    peak_cuda_mb=max(cuda) if cuda else None,
                    peak_source=last.memory.peak_source,
                ),
            }
        )


@dataclass
class RetrievalCost:
    """What the retriever cost to set up: fine-tuning its models, embedding and indexing the corpus."""

    corpus_passages: int = 0
    embed_corpus_s: float = 0.0
    index_build_s: float = 0.0
    index_bytes: int = 0
    index_reused: bool = False
    retriever_train_s: float | None = None
    retriever_train_examples: int | None = None
    retriever_train_pairs: int | None = None
    retriever_train_loss: float | None = None
    retriever_reused: bool | None = None
    reranked_pairs: int | None = None  # query-passage pairs the cross-encoder scored
    # Re-embedding and re-indexing the whole corpus from a cold cache: timed when the embeddings and the
    # index were built and stored with them, so a run that reuses them records the same cost; None where
    # they were cached before ragft recorded it. A knowledge update re-does this.
    reindex_s: float | None = None
    # Where no chunking is configured and some documents are longer than the retriever's embedder reads
    # (its window), the corpus is split into chunks of the window's size, so that a passage in a prompt is
    # what was embedded and ranked: how many documents were longer, and the chunk size in tokens.
    documents_over_window: int | None = None
    chunked_to_window: int | None = None

    @classmethod
    def combined(cls, parts: Sequence[RetrievalCost]) -> RetrievalCost:
        """Several retrievers over one corpus (hybrid, reranked): times and sizes add up."""

        def total(name: str) -> Any:
            values = [getattr(p, name) for p in parts if getattr(p, name) is not None]
            return sum(values) if values else None

        return cls(
            corpus_passages=max((p.corpus_passages for p in parts), default=0),
            embed_corpus_s=total("embed_corpus_s") or 0.0,
            index_build_s=total("index_build_s") or 0.0,
            index_bytes=total("index_bytes") or 0,
            index_reused=all(p.index_reused for p in parts if p.index_bytes),  # parts that index
            retriever_train_s=total("retriever_train_s"),
            retriever_train_examples=total("retriever_train_examples"),
            retriever_train_pairs=total("retriever_train_pairs"),
            retriever_train_loss=next((p.retriever_train_loss for p in parts if p.retriever_train_loss), None),
            retriever_reused=None
            if total("retriever_train_s") is None
            else all(p.retriever_reused for p in parts if p.retriever_train_s is not None),  # parts that train
            reranked_pairs=total("reranked_pairs"),
            reindex_s=cold_total(*(p.reindex_s for p in parts if p.index_bytes)),
        )


def cold_total(*seconds: float | None) -> float | None:
    """The sum of cold-cache times, None when any of them was not measured."""
    return None if any(s is None for s in seconds) else float(sum(s for s in seconds if s is not None))


# Fields of records made before latency was measured at batch 1: the old "latency" was the wall time of
# an example's whole batch, not a latency, so it is not read; the old tokens/s was the throughput it says.
_RETIRED = ("latency_p50_s", "latency_p95_s")
_RENAMED = {"generation_tokens_per_s": "throughput_tokens_per_s"}


@dataclass
class GenerationCost:
    """Answering the test set. Two different figures, labelled apart:

    - throughput at the configured batch size: every test example answered in batches of
      `batch_size` (prompts sorted by length), examples and generated tokens per second of that stage;
    - latency at batch 1: the wall time to answer one request alone, tokens in to text out, measured
      on a seeded sample of `latency_sample` test examples after the batched pass (p50 and p95;
      None where the sample is 0).

    `memory`: the peak resident memory of the batched pass, from released memory."""

    batch_size: int = 0
    examples: int = 0
    prompt_tokens_mean: float = 0.0
    prompt_tokens_max: int = 0
    output_tokens_mean: float = 0.0
    generate_s: float = 0.0  # wall time of the batched pass over the whole test set
    throughput_examples_per_s: float = 0.0
    throughput_tokens_per_s: float = 0.0  # generated tokens
    latency_sample: int = 0
    latency_batch1_p50_s: float | None = None
    latency_batch1_p95_s: float | None = None
    memory: MemoryCost = field(default_factory=MemoryCost)
    # The padding the batches added to the prompts, as a share of their tokens (None: recorded before ragft
    # measured it); `generation.max_padding` bounds it batch by batch.
    prompt_padding_share: float | None = None

    @classmethod
    def measured(
        cls,
        batch_size: int,
        prompt_tokens: Sequence[int],
        output_tokens: Sequence[int],
        generate_s: float,
        latencies: Sequence[float] = (),
        memory: MemoryCost | None = None,
        padded_prompt_tokens: Sequence[int] = (),
    ) -> GenerationCost:
        """The figures from each answered example's token counts, the batched pass's wall time and
        the batch-1 latencies of the sampled examples."""
        return cls(
            batch_size=batch_size,
            examples=len(output_tokens),
            prompt_tokens_mean=float(np.mean(prompt_tokens)),
            prompt_tokens_max=int(np.max(prompt_tokens)),
            output_tokens_mean=float(np.mean(output_tokens)),
            generate_s=generate_s,
            throughput_examples_per_s=len(output_tokens) / generate_s if generate_s else 0.0,
            throughput_tokens_per_s=float(np.sum(output_tokens) / generate_s) if generate_s else 0.0,
            latency_sample=len(latencies),
            latency_batch1_p50_s=float(np.percentile(latencies, 50)) if len(latencies) else None,
            latency_batch1_p95_s=float(np.percentile(latencies, 95)) if len(latencies) else None,
            memory=memory or MemoryCost(),
            prompt_padding_share=(
                float(np.sum(padded_prompt_tokens) / np.sum(prompt_tokens) - 1) if len(padded_prompt_tokens) else None
            ),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationCost:
        """A recorded generation cost; an older record's batch wall times are left out (not latencies),
        its tokens/s read as the throughput it was; any other unknown field is an error."""
        values = {_RENAMED.get(k, k): v for k, v in data.items() if k not in _RETIRED and k != "memory"}
        return cls(**values, memory=MemoryCost(**data.get("memory", {})))


@dataclass(frozen=True)
class PromptFit:
    """How prompts were fitted to their budget (ragft.context.budget): the budget, and how many prompts
    lost or cut anything, with what they lost. For training examples the budget is `training.max_length`
    and a response may be cut too."""

    budget_tokens: int = 0
    prompts_fitted: int = 0
    shots_dropped: int = 0
    passages_dropped: int = 0
    passages_trimmed: int = 0
    inputs_truncated: int = 0
    responses_cut: int = 0

    def plus(self, other: PromptFit) -> PromptFit:
        """Both fits' counts summed (the budget: the larger)."""
        mine, theirs = asdict(self), asdict(other)
        summed = {k: mine[k] + theirs[k] for k in mine if k != "budget_tokens"}
        return PromptFit(budget_tokens=max(self.budget_tokens, other.budget_tokens), **summed)


@dataclass
class Cost:
    """Everything a run's cost record holds, measured in the run (reused artefacts say so)."""

    base_total_params: int = 0
    training: TrainingCost | None = None  # None: the arm trains nothing
    retrieval: RetrievalCost | None = None  # None: the arm retrieves nothing
    generation: GenerationCost = field(default_factory=GenerationCost)
    memory: MemoryCost = field(default_factory=MemoryCost)
    stage_s: dict[str, float] = field(default_factory=dict)
    prompt_fit: PromptFit | None = None  # None: recorded before ragft fitted prompts to a budget

    @property
    def trainable_params(self) -> int:
        return self.training.trainable_params if self.training else 0

    @property
    def peak_cuda_mb(self) -> float | None:
        """The run's CUDA peak. The run's own measurement covers its training (a stretch measured inside
        another folds into it); training's is taken too, for records made before it did."""
        peaks = [self.memory.peak_cuda_mb]
        if self.training and not self.training.adapter_reused:
            peaks.append(self.training.memory.peak_cuda_mb)
        measured = [p for p in peaks if p is not None]
        return max(measured) if measured else None

    @property
    def knowledge_update_s(self) -> float | None:
        """Seconds to absorb one knowledge update from a cold cache: the generator re-trained where the
        arm trains it, the retriever re-trained where it is fine-tuned, the corpus re-embedded and
        re-indexed where the arm retrieves (times stored with the cached artefacts, never a cache read;
        None where one of them was not measured)."""
        generator = self.training.train_s if self.training and self.training.trainable_params else 0.0
        if self.retrieval is None:
            return float(generator)
        retriever = self.retrieval.retriever_train_s or 0.0
        return cold_total(generator, retriever, self.retrieval.reindex_s)

    def flat(self) -> dict[str, Any]:
        """One flat mapping of every scalar figure (the experiment table's `cost_*` columns)."""
        row: dict[str, Any] = {"base_total_params": self.base_total_params, "trainable_params": self.trainable_params}
        generation = asdict(self.generation)
        memory = generation.pop("memory")
        row.update({f"generation_{k}" if k in ("batch_size", "examples") else k: v for k, v in generation.items()})
        row.update({f"generate_{k}": v for k, v in memory.items()})
        row.update(asdict(self.memory), peak_cuda_mb=self.peak_cuda_mb)
        if self.training:
            row.update({k: v for k, v in asdict(self.training).items() if not isinstance(v, (list, dict))})
            row.update({f"train_{k}": v for k, v in asdict(self.training.memory).items()})
            if self.training.prompt_fit:
                row.update({f"train_{k}": v for k, v in asdict(self.training.prompt_fit).items()})
            if self.training.preference:
                preference = asdict(self.training.preference)
                row.update({f"preference_{k}": v for k, v in preference.items() if not isinstance(v, list)})
        else:
            row.update(adapter_bytes=0, train_s=0.0)
        if self.retrieval:
            row.update(asdict(self.retrieval))
        if self.prompt_fit:
            row.update({f"prompt_{k}" if k == "budget_tokens" else k: v for k, v in asdict(self.prompt_fit).items()})
        row.update({f"stage_{k}_s": v for k, v in self.stage_s.items()}, knowledge_update_s=self.knowledge_update_s)
        return {k: v for k, v in row.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cost:
        return cls(
            base_total_params=data.get("base_total_params", 0),
            training=TrainingCost.from_dict(data["training"]) if data.get("training") else None,
            retrieval=RetrievalCost(**data["retrieval"]) if data.get("retrieval") else None,
            generation=GenerationCost.from_dict(data.get("generation", {})),
            memory=MemoryCost(**data.get("memory", {})),
            stage_s=dict(data.get("stage_s", {})),
            prompt_fit=PromptFit(**data["prompt_fit"]) if data.get("prompt_fit") else None,
        )


class StageTimer:
    """Wall-clock seconds per named stage of a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.current: str | None = None  # the stage running now (where a failure happened)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start, outer, self.current = time.perf_counter(), self.current, name
        yield
        self.current = outer  # left as it is when the stage raises, so the failure names it
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class ParameterCounts(TypedDict):
    """A model's parameters, as `TrainingCost` names them."""

    total_params: int
    trainable_params: int


def parameter_counts(model: Any) -> ParameterCounts:
    """Trainable and total parameters; a 4-bit weight counts as the weights it packs."""
    if hasattr(model, "get_nb_trainable_parameters"):  # peft: virtual-token embeddings included
        trainable, total = model.get_nb_trainable_parameters()
    elif hasattr(model, "num_parameters"):  # transformers: unpacks 4-bit weights
        trainable, total = model.num_parameters(only_trainable=True), model.num_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total_params": int(total), "trainable_params": int(trainable)}
