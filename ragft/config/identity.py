"""A run's identity: the label it is shown under, the key that names its results folder (a hash of
every setting that can change its results, and only of those) and those settings, flattened, for the
report to compare runs by.

Names come from Hydra's runtime choices (which file of each config group composed the run), not from
`name:` keys repeated inside the files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ragft.config.plain import as_plain
from ragft.record.cache import content_key, file_digest
from ragft.record.run import RunIdentity

# The one list of settings that change where results go or how they are shown, never what they are.
NOT_RESULT_SETTINGS = (
    "hydra",  # Hydra's own settings (output folders, launcher, logging)
    "paths",
    "exp_name",
    "leakage",  # the leakage check reports on the data; it changes no output
    "retrieval_eval",  # python -m ragft.retrieve's settings
    "training.logging_steps",
    "training.checkpoint_steps",  # how often the training state is saved for resuming; not what is trained
    "generation.latency_sample",  # how many answers are timed alone; the answers scored are the same
    # How prompts are grouped into batches: each row is answered under its own attention mask, so regrouping
    # changes only float rounding (as another machine does); `generation.batch_size` stays in the key, as
    # it was before these settings existed, so that earlier runs keep their keys.
    "generation.max_padding",
    "generation.max_batch_tokens",
    "retriever.label",  # the prefix of arm labels (bm25_rag)
    "tracking",  # where runs are logged besides their records (tracking=mlflow)
)
# Sections a run uses only through interpolations inside the sections that use them (a retriever's
# `embedder: ${embedder}`, an arm's `exclude: ${withdrawn}`): hashed there, where they are used.
ONLY_INTERPOLATED = ("embedder", "withdrawn")
DEFAULT_ENCODING = "utf-8"  # task.data.encoding, task.corpus.encoding
TRAINING_SECTIONS = ("training", "train_task", "train_mix", "sequence")  # used only where the arm trains
RETRIEVAL_SECTIONS = ("retriever", "chunking")  # used only where the context retrieves


@dataclass(frozen=True)
class Choices:
    """The config group options a run was composed from (Hydra's runtime choices)."""

    arm: str | None  # the preset (`update/lora_v1`), None without one
    adaptation: str
    context: str
    retriever: str | None  # None: `retriever=null`


def choices(cfg: DictConfig) -> Choices:
    """Which file of each group composed `cfg`: from its own `hydra` node (a config composed with
    `return_hydra_config=True`), else from the running Hydra job (`@hydra.main` sets it per job)."""
    from hydra.core.hydra_config import HydraConfig

    if "hydra" in cfg:
        chosen = cfg.hydra.runtime.choices
    elif HydraConfig.initialized():
        chosen = HydraConfig.get().runtime.choices
    else:
        raise RuntimeError(
            "Hydra's runtime choices are unknown: run under @hydra.main, or compose the config with "
            "hydra.compose(..., return_hydra_config=True) or set HydraConfig for it."
        )
    return Choices(chosen.get("arm"), chosen["adaptation"], chosen["context"], chosen.get("retriever"))


def run_folder(cfg: DictConfig, identity: RunIdentity) -> Path:
    """Where a run's record goes: `<paths.results>/<exp_name>/<arm>-<key>`."""
    return Path(cfg.paths.results) / cfg.exp_name / identity.run_id


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


def run_label(cfg: DictConfig, chosen: Choices) -> str:
    """The one labelling rule: a preset arm is labelled by its file name (`update/lora_v1` -> `lora_v1`),
    whatever else the command line changes (the key tells such runs apart); without a preset, by the
    adaptation, context and, where the context retrieves, the retriever's label."""
    if chosen.arm:
        return chosen.arm.rsplit("/", 1)[-1]
    retriever = retriever_label(cfg, chosen) if _retrieves(cfg) else ""
    return arm_label(chosen.adaptation, chosen.context, retriever)


def retriever_label(cfg: DictConfig, chosen: Choices) -> str:
    """The prefix a retriever gives arm labels: its config's `label` where it sets one (`""` for the
    default dense retriever, `ft_retriever` for dense_ft), else its file name."""
    if cfg.get("retriever") is None:
        return ""
    label = cfg.retriever.get("label")
    return str(label) if label is not None else (chosen.retriever or "")


def run_identity(cfg: DictConfig, primary_metric: str) -> RunIdentity:
    """Everything a run record says about what the run is, `primary_metric` being the task's headline."""
    chosen = choices(cfg)
    used = result_config(cfg)
    return RunIdentity(
        exp=cfg.exp_name,
        arm=run_label(cfg, chosen),
        key=content_key(used),
        group_key=content_key(without_seeds(used)),
        task=cfg.task.name,
        primary_metric=primary_metric,
        generator=cfg.generator.name,
        adaptation=chosen.adaptation,
        context=chosen.context,
        retriever=_retriever_name(cfg, chosen) if _retrieves(cfg) else None,
        seed=cfg.seed,
        embedder=_embedder_used(used),
        settings=flatten(used),
    )


def run_key(cfg: DictConfig) -> str:
    """Hash of everything that can change a run's results (see `result_config`)."""
    return content_key(result_config(cfg))


def result_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings that can change a run's results, and only those the run uses: no
    `NOT_RESULT_SETTINGS`, no `ONLY_INTERPOLATED` section on its own, training sections only where the
    arm trains, retriever and chunking only where the context retrieves; data files named by their
    content, not their path."""
    unused = set(NOT_RESULT_SETTINGS) | set(ONLY_INTERPOLATED)
    if cfg.adaptation.method is None:
        unused |= set(TRAINING_SECTIONS)
    if not _retrieves(cfg):
        unused |= set(RETRIEVAL_SECTIONS)
    container = {str(key): as_plain(cfg[key]) for key in cfg if key not in unused}
    for dotted in unused:
        section, _, leaf = dotted.partition(".")
        if leaf and isinstance(container.get(section), dict):
            container[section].pop(leaf, None)
    for node in _task_nodes(container):
        node.pop("dir", None)  # a folder the files are read from (task=pubmedqa task.dir=...): they count by content
        for files in (node["data"], node.get("corpus")):
            if files:
                files["path"] = _content_of(files["path"])
                if files.get("encoding") == DEFAULT_ENCODING:  # the key of runs from before the setting
                    del files["encoding"]
    return container


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted key -> value; lists and empty sections are values of their own."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _retriever_name(cfg: DictConfig, chosen: Choices) -> str | None:
    """The retriever's config option, or the name of the one tuning chose in its place."""
    tuned = OmegaConf.select(cfg, "tune.chosen.retriever")
    return str(tuned) if tuned is not None else chosen.retriever


def _retrieves(cfg: DictConfig) -> bool:
    """Whether the run's context puts retrieved passages in prompts (the context config says so)."""
    return bool(cfg.context.get("retrieves", False))


def without_seeds(settings: Any) -> Any:
    """`settings` with every entry named `seed` left out, at any depth."""
    if isinstance(settings, Mapping):
        return {k: without_seeds(v) for k, v in settings.items() if k != "seed"}
    if isinstance(settings, list):
        return [without_seeds(v) for v in settings]
    return settings


def _embedder_used(settings: Mapping[str, Any]) -> str | None:
    """The name of the embedder the run's retriever or context uses (None: the run embeds nothing)."""
    for section in ("retriever", "context"):
        for node in _nodes_named(settings.get(section), "embedder"):
            if isinstance(node, Mapping) and node.get("name"):
                return str(node["name"])
    return None


def _nodes_named(node: Any, name: str) -> Iterator[Any]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == name:
                yield value
            yield from _nodes_named(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes_named(value, name)


def _task_nodes(container: dict) -> list[dict]:
    """Every task config in a resolved config: the run's, `train_task`, and those of `train_mix`,
    `sequence` and `evaluate_also`."""
    nodes = [container.get("task"), container.get("train_task")]
    nodes += list(((container.get("train_mix") or {}).get("tasks") or {}).values())
    nodes += list((container.get("sequence") or {}).values()) + list((container.get("evaluate_also") or {}).values())
    return [n for n in nodes if isinstance(n, dict) and isinstance(n.get("data"), dict)]


def _content_of(path: str) -> str:
    return f"sha256:{file_digest(path)}" if Path(path).is_file() else str(path)
