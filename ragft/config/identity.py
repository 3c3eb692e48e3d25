"""A run's identity: the key that names its results folder (a hash of everything that can change
its results) and the label it is shown under."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ragft.record.cache import content_key, file_digest

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
    for node in _task_nodes(container):
        node["data"]["path"] = _content_of(node["data"]["path"])
        if node.get("corpus"):
            node["corpus"]["path"] = _content_of(node["corpus"]["path"])
    unused = ("training", "train_task", "train_mix", "sequence") if cfg.adaptation.method is None else ()
    if "training" in container:
        container["training"].pop("logging_steps", None)
    return content_key({k: v for k, v in container.items() if k not in NOT_IN_RUN_KEY + unused})


def _task_nodes(container: dict) -> list[dict]:
    """Every task config in a resolved config: the run's, `train_task`, and those of `train_mix`,
    `sequence` and `evaluate_also`."""
    nodes = [container.get("task"), container.get("train_task")]
    nodes += list(((container.get("train_mix") or {}).get("tasks") or {}).values())
    nodes += list((container.get("sequence") or {}).values()) + list((container.get("evaluate_also") or {}).values())
    return [n for n in nodes if isinstance(n, dict) and isinstance(n.get("data"), dict)]


def _content_of(path: str) -> str:
    return f"sha256:{file_digest(path)}" if Path(path).is_file() else str(path)
