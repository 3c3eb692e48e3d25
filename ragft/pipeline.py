"""One run: load the task, build contexts, (train an adapter), generate, score, record.

Prompting, few-shot, RAG and their fine-tuned variants are the same pipeline: the context builder
decides what a prompt carries, the adaptation decides whether the generator is trained first.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ragft.adapt.sft import build_features, load_adapted, train_adapter
from ragft.cache import content_key, file_digest
from ragft.cost import PeakMemory, StageTimer, generation_cost, parameter_counts
from ragft.data import task_from_config
from ragft.errors import build
from ragft.generation import check_fits, encode, generate
from ragft.leakage import check_leakage
from ragft.metrics import check_metrics, score_predictions
from ragft.model_metrics import EvaluationModels
from ragft.models import Generator, load_generator
from ragft.prompting import ContextBuilder, PromptTemplate
from ragft.record import RunWriter, is_finished, write_table
from ragft.resources import RunResources
from ragft.retrieval.base import document_ranking
from ragft.types import Context, Example, Prediction

log = logging.getLogger(__name__)

# Config sections that change where results go or how they are shown, not what they are.
NOT_IN_RUN_KEY = ("paths", "exp_name", "arm", "run_label", "leakage", "retrieval_eval")


def arm_label(adaptation: str, context: str, retriever: str = "") -> str:
    """zero_shot, few_shot, rag, lora, lora_rag, lora_few_shot, ... from the two axes, prefixed by the
    retriever's label where the context retrieves with a non-default retriever (bm25_rag,
    ft_retriever_lora_rag)."""
    if adaptation == "none":
        label = context
    elif context == "zero_shot":
        label = adaptation
    else:
        label = f"{adaptation}_{context}"
    return f"{retriever}_{label}" if retriever else label


def run_key(cfg: DictConfig) -> str:
    """Hash of everything that can change a run's results: the resolved config with data files named by
    their content (not their path), training settings only where the arm trains, no output locations."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in ("task", "train_task"):
        if cfg.get(key) is None:
            continue
        container[key]["data"]["path"] = _content_of(cfg[key].data.path)
        if cfg[key].get("corpus"):
            container[key]["corpus"]["path"] = _content_of(cfg[key].corpus.path)
    unused = ("training", "train_task") if cfg.adaptation.method is None else ()
    if "training" in container:
        container["training"].pop("logging_steps", None)
    return content_key({k: v for k, v in container.items() if k not in NOT_IN_RUN_KEY + unused})


def _content_of(path: str) -> str:
    return f"sha256:{file_digest(path)}" if Path(path).is_file() else str(path)


def prompts_for(
    template: PromptTemplate, examples: Sequence[Example], contexts: Sequence[Context], tokenizer: Any
) -> list[str]:
    return [template.render(e, c, tokenizer) for e, c in zip(examples, contexts)]


def run_experiment_arm(cfg: DictConfig) -> Path:
    """Run the arm that `cfg` describes unless an identical finished run exists; return its folder.

    A reused run keeps the records of when it ran, its leakage check included (the settings it used
    are in its config.yaml)."""
    task = task_from_config(cfg.task)
    template = PromptTemplate.from_config(cfg.task.template)  # template errors fail before any work ...
    builder: ContextBuilder = build(cfg.context.builder, "context.builder")
    retriever_label = cfg.retriever.get("label", "") if cfg.context.get("retrieves") else ""
    arm = cfg.get("run_label") or arm_label(cfg.adaptation.name, cfg.context.name, retriever_label)
    run_dir = Path(cfg.paths.results) / cfg.exp_name / f"{arm}-{run_key(cfg)}"
    if is_finished(run_dir):
        log.info("%s: finished run with this config exists at %s; reusing it", arm, run_dir)
        write_table(run_dir.parent)
        return run_dir
    evaluation = EvaluationModels(cfg.evaluation)
    check_metrics(cfg.task.metrics, task.split("test")[0], evaluation)  # ... and so do metric settings
    leakage = check_leakage(task, cfg.leakage)  # ... and leaks, where leakage.fail is set
    writer = RunWriter(run_dir)
    try:
        with _log_to(writer.staging / "run.log"):
            started = datetime.now(timezone.utc)
            with PeakMemory() as memory:
                timer = StageTimer()
                metrics, predictions, cost = _execute(cfg, task, builder, template, evaluation, timer)
            cost.update(memory.record(), stage_s=timer.seconds)
            writer.write_json("run.json", _run_info(cfg, arm, run_dir.name, started))
            writer.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
            writer.write_json("metrics.json", metrics)
            writer.write_json("cost.json", cost)
            writer.write_json("leakage.json", leakage)
            writer.write_predictions(predictions)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    write_table(run_dir.parent)
    log.info("%s: wrote %s", arm, run_dir)
    return run_dir


def _execute(
    cfg: DictConfig,
    task: Any,
    builder: ContextBuilder,
    template: PromptTemplate,
    evaluation: EvaluationModels,
    timer: StageTimer,
) -> tuple[dict, list[Prediction], dict]:
    torch.manual_seed(cfg.seed)
    resources = RunResources(task, cfg.embedder, cfg.retriever, cfg.get("chunking"))
    test = task.split("test")
    with timer.stage("load_generator"):
        generator = load_generator(cfg.generator)
    cost: dict[str, Any] = {
        "base_total_params": parameter_counts(generator.model)["total_params"],
        "generation_batch_size": cfg.generation.batch_size,
    }
    with timer.stage("build_context"):
        contexts = builder.build(test, resources)
        prompts = prompts_for(template, test, contexts, generator.tokenizer)
    cost.update(resources.stats())  # retrieval cost of the test contexts, before training reuses the retriever
    encoded = encode(generator, prompts)  # a prompt too long for the model fails here, before any training
    check_fits(
        [len(e) for e in encoded], [e.id for e in test], cfg.task.generation.max_new_tokens, generator.max_context
    )
    if cfg.adaptation.method is not None:
        train_task, train_resources = _training_data(cfg, task, resources)
        with timer.stage("train"):
            generator, train_stats = _adapt(cfg, train_task, builder, train_resources, template, generator)
        cost.update(train_stats)
    else:
        cost.update(trainable_params=0, adapter_bytes=0, train_s=0.0)
    with timer.stage("generate"):
        generations = generate(
            generator,
            encoded,
            [e.id for e in test],
            cfg.task.generation.max_new_tokens,
            batch_size=cfg.generation.batch_size,
            desc=f"generating {len(test)} answers",
        )
    cost.update(
        generation_cost(
            [g.prompt_tokens for g in generations],
            [g.output_tokens for g in generations],
            [g.latency_s for g in generations],
            timer.seconds["generate"],
        )
    )
    predictions = [
        Prediction(
            example=e,
            prompt=p,
            output=g.text,
            retrieved=document_ranking(c.passages),
            ranking=c.ranking,
            passages=tuple(x.text for x in c.passages),
            prompt_tokens=g.prompt_tokens,
            output_tokens=g.output_tokens,
            latency_s=g.latency_s,
        )
        for e, c, p, g in zip(test, contexts, prompts, generations)
    ]
    with timer.stage("score"):
        metrics = score_predictions(predictions, cfg.task.metrics, seed=cfg.seed, models=evaluation)
    return metrics, predictions, cost


def _training_data(cfg: DictConfig, task: Any, resources: RunResources) -> tuple[Any, RunResources]:
    """The task whose train split (and corpus, for retrieved training contexts) the adapter learns from:
    the run's own, or `train_task` where set — e.g. train on protocol version 1, test on version 2."""
    spec = cfg.get("train_task")
    if spec is None:
        return task, resources
    train_task = task_from_config(spec)
    return train_task, RunResources(train_task, cfg.embedder, cfg.retriever, cfg.get("chunking"))


def _adapt(
    cfg: DictConfig,
    task: Any,
    builder: ContextBuilder,
    resources: RunResources,
    template: PromptTemplate,
    generator: Generator,
) -> tuple[Generator, dict]:
    """Fine-tune on the train split, each prompt built with the arm's own context (so lora_rag trains
    with retrieved passages), excluding an example from its own context."""
    train = task.split("train")
    contexts = builder.build(train, resources, exclude_self=True)
    prompts = prompts_for(template, train, contexts, generator.tokenizer)
    features = build_features(
        generator.tokenizer, prompts, [e.reference for e in train], [e.id for e in train], cfg.training.max_length
    )
    record = train_adapter(generator, cfg.adaptation.method, cfg.training, features)
    generator = load_adapted(generator, record.adapter_dir, merge=cfg.adaptation.merge_for_inference)
    return generator, record.stats


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Copy every log record of the run into the run's own log file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _run_info(cfg: DictConfig, arm: str, run_id: str, started: datetime) -> dict[str, Any]:
    return {
        "exp": cfg.exp_name,
        "arm": arm,
        "run_id": run_id,
        "task": cfg.task.name,
        "generator": cfg.generator.name,
        "adaptation": cfg.adaptation.name,
        "context": cfg.context.name,
        "retriever": cfg.retriever.name,
        "embedder": cfg.embedder.name,
        "seed": cfg.seed,
        "status": "finished",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.time() - started.timestamp(),
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "versions": {p: _version(p) for p in ("torch", "transformers", "peft", "sentence-transformers", "faiss-cpu")},
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
