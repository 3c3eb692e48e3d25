from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from ragft.context.sources import build_retriever
from ragft.errors import ConfigError
from ragft.eval.registry import resolve_metrics
from ragft.config.identity import arm_label
from tests.conftest import CONF, compose_config

ARMS = {  # arm: adaptation, context, retriever, the arm's label
    "zero_shot": ("none", "zero_shot", "dense_flat", "zero_shot"),
    "few_shot": ("none", "few_shot", "dense_flat", "few_shot"),
    "rag": ("none", "rag", "dense_flat", "rag"),
    "lora": ("lora", "zero_shot", "dense_flat", "lora"),
    "lora_rag": ("lora", "rag", "dense_flat", "lora_rag"),
    "raft": ("lora", "raft", "dense_flat", "lora_raft"),
    "ft_retriever_rag": ("none", "rag", "dense_ft", "ft_retriever_rag"),
    "ft_retriever_lora_rag": ("lora", "rag", "dense_ft", "ft_retriever_lora_rag"),
}
DEFAULT_ARMS = ["zero_shot", "few_shot", "rag", "lora", "lora_rag"]


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("arm", group_options("arm"))
def test_every_arm_composes_to_its_adaptation_and_context(arm):
    cfg = compose_config(f"arm={arm}")
    adaptation, context, retriever, label = ARMS[arm]
    assert (cfg.adaptation.name, cfg.context.name, cfg.retriever.name) == (adaptation, context, retriever)
    assert arm_label(cfg.adaptation.name, cfg.context.name, cfg.retriever.label) == label
    instantiate(cfg.context.builder)


def test_the_default_experiment_sweeps_every_arm():
    cfg = compose_config("+exp=medical_reports", with_hydra=True)
    assert cfg.exp_name == "medical_reports" and cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params.arm.split(",") == DEFAULT_ARMS


@pytest.mark.parametrize("exp", group_options("exp"))
def test_every_experiment_composes(exp):
    cfg = compose_config(f"+exp={exp}", "+debug=smoke")
    assert cfg.exp_name == exp


# Tasks whose data is not shipped, and where the test finds it.
EXTERNAL_DATA = {"pubmedqa": CONF.parent.parent / "shared" / "data" / "pubmedqa"}


@pytest.mark.parametrize("task", group_options("task"))
def test_every_task_names_existing_files_and_known_metrics(task):
    overrides = [f"task={task}"]
    if task in EXTERNAL_DATA:
        if not EXTERNAL_DATA[task].is_dir():
            pytest.skip(f"{task} data not found at {EXTERNAL_DATA[task]}")
        overrides.append(f"task.dir={EXTERNAL_DATA[task]}")
    cfg = compose_config(*overrides)
    assert Path(cfg.task.data.path).is_file()
    assert cfg.task.corpus is None or Path(cfg.task.corpus.path).is_file()  # general_qa: a test set without a corpus
    resolve_metrics(cfg.task.metrics)


@pytest.mark.parametrize("retriever", group_options("retriever"))
def test_every_retriever_instantiates(retriever):
    overrides = [f"retriever={retriever}"]
    if retriever == "reranked":  # no cross-encoder ships: the user names one
        with pytest.raises(ConfigError, match="retriever.reranker.source"):
            build_retriever(compose_config(*overrides).retriever)
        overrides.append("retriever.reranker.source=/models/cross-encoder")
    retriever_object = build_retriever(compose_config(*overrides).retriever)
    assert type(retriever_object).__name__.endswith("Retriever") and retriever_object.name == retriever


@pytest.mark.parametrize(("override", "key"), [("context.builder.p_gold=2", "context.builder.p_gold"),
                                                ("context.builder.top_k=0", "context.builder.top_k")])  # fmt: skip
def test_a_bad_context_setting_is_a_config_error_not_a_traceback(override, key, smoke_cfg):
    from ragft.recipe import run_experiment_arm

    with pytest.raises(ConfigError, match=key):
        run_experiment_arm(smoke_cfg("arm=raft", override))


@pytest.mark.parametrize("chunking", group_options("chunking"))
def test_every_chunker_instantiates(chunking):
    chunker = instantiate(compose_config(f"chunking={chunking}").chunking)
    assert type(chunker).__name__.endswith("Chunker")


@pytest.mark.parametrize("context", group_options("context"))
def test_every_context_builder_instantiates(context):
    instantiate(compose_config(f"context={context}").context.builder)


def test_a_command_line_axis_beats_the_arm_shortcut():
    cfg = compose_config("arm=lora_rag", "context=few_shot")
    assert (cfg.adaptation.name, cfg.context.name) == ("lora", "few_shot")


def test_hyper_parameters_are_plain_overrides():
    cfg = compose_config(
        "arm=lora", "adaptation.method.r=4", "training.learning_rate=0.01", "context=few_shot", "context.builder.k=3"
    )
    assert cfg.adaptation.method.r == 4 and cfg.training.learning_rate == 0.01 and cfg.context.builder.k == 3


@pytest.mark.parametrize(
    ("override", "group"), [("arm=bogus", "arm"), ("task=bogus", "task"), ("generator=bogus", "generator")]
)
def test_unknown_group_options_list_the_available_ones(override, group):
    with pytest.raises(ConfigCompositionException, match=rf"(?s)Could not find '{group}/bogus'.*Available options"):
        compose_config(override)


def test_run_identity_covers_what_changes_results_and_nothing_else():
    from ragft.config.identity import run_key

    assert run_key(compose_config("arm=zero_shot")) == run_key(compose_config("arm=zero_shot", "training.epochs=9"))
    assert run_key(compose_config("arm=zero_shot")) == run_key(compose_config("arm=zero_shot", "paths.results=/x"))
    assert run_key(compose_config("arm=lora")) != run_key(compose_config("arm=lora", "training.epochs=9"))
    assert run_key(compose_config("arm=rag")) != run_key(compose_config("arm=rag", "context.builder.top_k=3"))


def test_run_identity_follows_data_content_not_its_location(tmp_path):
    import shutil

    from ragft.config.identity import run_key
    from tests.conftest import ROOT

    shutil.copytree(ROOT / "corpora", tmp_path / "corpora")
    moved = compose_config("arm=rag", f"paths.corpora={tmp_path / 'corpora'}")
    assert run_key(moved) == run_key(compose_config("arm=rag"))
    notes = tmp_path / "corpora" / "clinic" / "notes.jsonl"
    notes.write_text(notes.read_text().replace("Cardivex", "Cardivax"))
    assert run_key(moved) != run_key(compose_config("arm=rag"))
