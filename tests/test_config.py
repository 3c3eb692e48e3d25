"""The shipped configs compose and pass the schema; presets, labels and run keys follow the rules of
ragft/config: one preset group (`arm=update/lora_v1`), labels from Hydra's choices, a run key that holds
what the run uses and nothing else, and misspelt keys or values out of range stopped with the key named."""

import functools
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from ragft.cli import check_command_line
from ragft.config.command_line import check_override_keys
from ragft.config.identity import NOT_RESULT_SETTINGS, choices, run_identity, run_key, run_label
from ragft.config.schema import validate
from ragft.context.sources import build_retriever
from ragft.errors import ConfigError
from ragft.eval.registry import resolve_metrics
from tests.conftest import CONF, compose_config, experiments, external_data, sweep_jobs

ARMS = {  # root presets: adaptation, context, retriever, label
    "zero_shot": ("none", "zero_shot", "dense_flat", "zero_shot"),
    "few_shot": ("none", "few_shot", "dense_flat", "few_shot"),
    "rag": ("none", "rag", "dense_flat", "rag"),
    "lora": ("lora", "zero_shot", "dense_flat", "lora"),
    "lora_rag": ("lora", "rag", "dense_flat", "lora_rag"),
    "lora_raft": ("lora", "raft", "dense_flat", "lora_raft"),
    "ft_retriever_rag": ("none", "rag", "dense_ft", "ft_retriever_rag"),
    "ft_retriever_lora_rag": ("lora", "rag", "dense_ft", "ft_retriever_lora_rag"),
}
DEFAULT_ARMS = ["majority", "zero_shot", "few_shot", "rag", "oracle_rag", "lora", "lora_rag"]
EXPERIMENT_LABELS = {  # the labels each experiment's runs are shown under
    "adaptation_methods": {
        f"{method}{suffix}"
        for method in ("full", "lora", "dora", "ia3", "prefix", "ptuning", "prompt", "base_4bit", "qlora")
        for suffix in ("", "_rag")
    }
    | {"zero_shot", "rag"},
    "forgetting": {"base", "full_1ep", "full_4ep", "lora_1ep", "lora_4ep"},
    "knowledge_update": {
        "zero_shot",
        "rag_v1_index",
        "rag_reindexed",
        "lora_v1",
        "lora_retrained_v2",
        "lora_v1_rag_v2",
    },
    "medical_reports": set(DEFAULT_ARMS),
    "preference": {"majority", "oracle_rag", "lora", "lora_rag", "dpo", "dpo_rag", "orpo", "orpo_rag"},
    "medical_reports_tuned": DEFAULT_ARMS * 3,  # each arm at seeds 0, 1, 2
    "data_efficiency": ["few_shot", "lora", "lora_rag"] * 5,  # each at five training set sizes
    "multitask": {"base", "lora_reports_only", "lora_reports_and_qa", "lora_qa_heavy"},
    "retrievers": {"rag", "hnsw_rag", "ivf_rag", "ivfpq_rag", "bm25_rag", "hybrid_rag", "ft_retriever_rag"},
    "sequential": {"zero_shot", "lora"},
    "virtual_tokens_tuned": {"lora", "prefix", "ptuning", "prompt"},
    "pubmedqa": {"majority", "zero_shot", "few_shot", "rag", "oracle_rag", "lora", "lora_rag"},
    "mts_dialog": {"majority", "zero_shot", "few_shot", "lora"},
    "withdrawal": {
        "zero_shot",
        "rag_reindexed",
        "rag_withdrawn",
        "lora_retrained_v2",
        "lora_rag_full",
        "lora_rag_withdrawn",
    },
}


def group_options(group: str) -> list[str]:
    """A group's options, presets in sub-folders as Hydra names them (`update/lora_v1`)."""
    return sorted(p.relative_to(CONF / group).with_suffix("").as_posix() for p in (CONF / group).rglob("*.yaml"))


def composed(*overrides: str):  # noqa: ANN201 - a DictConfig with its `hydra` node (the run's choices)
    return compose_config(*overrides, with_hydra=True)


# --- presets, experiments and labels ---------------------------------------------------------------------


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_every_root_arm_sets_its_axes_and_is_labelled_by_its_file_name(arm):
    cfg = composed(f"arm={arm}")
    adaptation, context, retriever, label = ARMS[arm]
    chosen = choices(cfg)
    assert (chosen.adaptation, chosen.context, chosen.retriever) == (adaptation, context, retriever)
    assert run_label(cfg, chosen) == label == arm
    instantiate(cfg.context.builder)


def test_every_preset_is_tested_here_or_swept_by_an_experiment():
    swept = {choices(cfg).arm for exp in experiments() for cfg in jobs_of(exp)}
    assert set(group_options("arm")) - set(ARMS) - swept == set()


def test_the_default_experiment_sweeps_every_arm():
    cfg = composed("+exp=medical_reports")
    assert cfg.exp_name == "medical_reports" and cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params.arm.split(",") == DEFAULT_ARMS


@functools.cache
def jobs_of(exp: str, *overrides: str) -> list:
    """Each job of `python -m ragft.run +exp=<exp> <overrides>`, composed (with its `hydra` node)."""
    return [composed(*job) for job in sweep_jobs(exp, *overrides)]


@pytest.mark.parametrize("exp", experiments())
def test_every_experiment_job_passes_the_schema_under_its_own_label(exp):
    labels = []
    data = external_data(composed(f"+exp={exp}").task.name)  # its folder, for a data set not shipped
    for cfg in jobs_of(exp, *data):
        validate(cfg)
        assert cfg.exp_name == exp
        labels.append(run_label(cfg, choices(cfg)))
    assert sorted(labels) == sorted(EXPERIMENT_LABELS[exp])  # one label per job, as before


def test_a_preset_in_a_sub_folder_is_chosen_with_the_one_syntax():
    cfg = composed("+exp=knowledge_update", "arm=update/lora_v1")
    assert choices(cfg).arm == "update/lora_v1" and run_label(cfg, choices(cfg)) == "lora_v1"
    assert cfg.train_task.name == "clinic_qa" and cfg.adaptation.method._target_ == "peft.LoraConfig"
    forgetting = composed("+exp=forgetting", "arm=forgetting/full_1ep")
    assert forgetting.training.epochs == 1  # the preset's settings win over conf/config.yaml's defaults


def test_a_command_line_axis_beats_the_arm_shortcut_and_the_preset_keeps_its_label():
    cfg = composed("arm=lora_rag", "context=few_shot")
    chosen = choices(cfg)
    assert (chosen.adaptation, chosen.context) == ("lora", "few_shot")
    assert run_label(cfg, chosen) == "lora_rag"
    assert run_key(cfg) != run_key(composed("arm=lora_rag"))  # the key tells the two runs apart


def test_without_a_preset_the_label_comes_from_the_choices():
    assert label_of("adaptation=dora", "context=few_shot") == "dora_few_shot"
    assert label_of("context=rag", "retriever=bm25") == "bm25_rag"
    assert label_of("context=rag", "retriever=dense_ft", "adaptation=lora") == "ft_retriever_lora_rag"
    assert label_of("context=zero_shot", "retriever=bm25") == "zero_shot"  # no retrieval: no retriever in it


def label_of(*overrides: str) -> str:
    cfg = composed(*overrides)
    return run_label(cfg, choices(cfg))


def test_no_group_file_repeats_its_own_name():
    for group in ("adaptation", "context", "retriever"):
        for option in group_options(group):
            text = (CONF / group / f"{option}.yaml").read_text()
            assert f"\nname: {option}\n" not in f"\n{text}", f"conf/{group}/{option}.yaml"
    assert [p for p in CONF.rglob("*.yaml") if "run_label" in p.read_text()] == []


# --- every shipped option ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task", group_options("task"))
def test_every_task_names_existing_files_and_known_metrics(task):
    cfg = compose_config(f"task={task}", *external_data(task))
    validate(cfg)
    assert Path(cfg.task.data.path).is_file()
    assert cfg.task.corpus is None or Path(cfg.task.corpus.path).is_file()  # general_qa: a test set without a corpus
    resolve_metrics(cfg.task.metrics)


@pytest.mark.parametrize(
    "override",
    [f"{group}={option}" for group in ("generator", "embedder", "adaptation", "context", "retriever", "chunking")
     for option in group_options(group) if option != "hf"],
)  # fmt: skip
def test_every_shipped_option_passes_the_schema(override):
    needs = ["retriever.reranker.source=/models/x"] if override == "retriever=reranked" else []  # nothing ships
    validate(compose_config(override, *needs))


def test_a_model_to_name_must_be_named():
    with pytest.raises(ConfigError, match=r"`generator.name`: must be set"):
        validate(compose_config("generator=hf", "generator.source=/models/mine"))
    validate(compose_config("generator=hf", "generator.source=/models/mine", "generator.name=mine"))


@pytest.mark.parametrize("retriever", group_options("retriever"))
def test_every_retriever_instantiates(retriever):
    overrides = [f"retriever={retriever}"]
    if retriever == "reranked":  # no cross-encoder ships: the user names one
        with pytest.raises(ConfigError, match="retriever.reranker.source"):
            build_retriever(compose_config(*overrides).retriever)
        overrides.append("retriever.reranker.source=/models/cross-encoder")
    cfg = compose_config(*overrides).retriever
    retriever_object = build_retriever(cfg)
    assert type(retriever_object).__name__ == cfg._target_.rsplit(".", 1)[-1]


@pytest.mark.parametrize(("override", "key"), [("context.builder.p_gold=2", "context.builder.p_gold"),
                                                ("context.builder.top_k=0", "context.builder.top_k")])  # fmt: skip
def test_a_bad_context_setting_is_a_config_error_not_a_traceback(override, key, smoke_cfg):
    from ragft.recipe import run_experiment_arm

    with pytest.raises(ConfigError, match=key):
        run_experiment_arm(smoke_cfg("arm=lora_raft", override))


@pytest.mark.parametrize("chunking", group_options("chunking"))
def test_every_chunker_instantiates(chunking):
    chunker = instantiate(compose_config(f"chunking={chunking}").chunking)
    assert type(chunker).__name__.endswith("Chunker")


@pytest.mark.parametrize("context", group_options("context"))
def test_every_context_builder_instantiates_and_says_whether_it_retrieves(context):
    """A context that puts retrieved passages in prompts must say `retrieves: true`: the run key holds
    the retriever only where it does, so a retrieving context that did not say so would give runs with
    different retrievers one key."""
    from ragft.context.rag import RagContext

    cfg = compose_config(f"context={context}").context
    builder = instantiate(cfg.builder)
    assert callable(getattr(builder, "build", None)), type(builder)
    assert isinstance(builder, RagContext) == bool(cfg.get("retrieves", False)), context


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


def test_a_run_without_a_retriever_composes():
    cfg = composed("~retriever")
    validate(cfg)
    assert cfg.get("retriever") is None and choices(cfg).retriever is None
    assert run_identity(cfg, "rouge_l").retriever is None
    with pytest.raises(ConfigError, match=r"`retriever`: is null, but the context retrieves"):
        validate(composed("~retriever", "context=rag"))


# --- the schema ----------------------------------------------------------------------------------------------

SCHEMA_ERRORS = [  # override, the key the error names, what it says
    ("+trainig.epochs=3", "trainig", r"not a top-level setting.*Did you mean `training`\?"),
    ("+training.epoch=3", "training.epoch", r"not a setting of `training`.*Did you mean `training.epochs`\?"),
    ("training.batch_size=0", "training.batch_size", r"0 is not allowed. Set it to a whole number > 0\."),
    ("training.learning_rate=-1", "training.learning_rate", r"-1 is not allowed. Set it to a number > 0, or null"),
    ("task.limits.test=0", "task.limits.test", r"0 is not allowed. Set it to a whole number > 0, or null"),
    ("task.limits.test=-5", "task.limits.test", r"-5 is not allowed"),
    ("task.generation.max_new_tokens=0", "task.generation.max_new_tokens", "0 is not allowed"),
    ("generation.batch_size=0", "generation.batch_size", "0 is not allowed"),
    ("training.validation.holdout=1.5", "training.validation.holdout", "1.5 is not allowed"),
    ("leakage.fail=maybe", "leakage.fail", "'maybe' is not allowed. Set it to true or false"),
    ("adaptation.merge_for_inference=3", "adaptation.merge_for_inference", "true or false"),
    ("seed=-1", "seed", "-1 is not allowed"),
    ("exp_name=a/b", "exp_name", r"a folder name"),
]


@pytest.mark.parametrize(("override", "key", "says"), SCHEMA_ERRORS)
def test_a_misspelt_key_or_a_value_out_of_range_names_the_key(override, key, says):
    with pytest.raises(ConfigError, match=rf"^config `{key}[.`].*{says}"):
        validate(compose_config(override))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [(["context=few_shot", "context.builder.k=1.5"], "context.builder.k"),
     (["arm=lora", "adaptation.learning_rate=null"], "training.learning_rate"),
     (["arm=rag", "task=general_qa"], "task.corpus")],
)  # fmt: skip
def test_settings_that_cannot_work_together_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"^config `{key}`"):
        validate(compose_config(*overrides))


@pytest.mark.parametrize(
    ("override", "key", "close"),
    [("trainig.epochs=3", "trainig", "training"), ("training.epoch=3", "training.epoch", "training.epochs"),
     ("+training.epoch=3", "training.epoch", "training.epochs"), ("leakge.ngram=2", "leakge", "leakage"),
     ("evaluate_also.general_qa.limit.test=3", "evaluate_also.general_qa.limit", "evaluate_also.general_qa.limits"),
     ("training.validation.hold_out=0.1", "training.validation.hold_out", "training.validation.holdout")],
)  # fmt: skip
def test_a_command_line_key_is_checked_before_hydra_composes(override, key, close):
    """Hydra itself stops `trainig.epochs=3` with a message advising `+`; ragft stops it first."""
    with pytest.raises(ConfigError, match=rf"^config `{key}`: .*Did you mean `{close}`\?"):
        check_override_keys([override])


def test_command_line_keys_in_open_sections_and_group_choices_pass():
    check_override_keys(
        ["arm=update/lora_v1", "+exp=withdrawal", "task@evaluate_also.general_qa=general_qa", "~chunking",
         "hydra.searchpath=[file:///x]", "adaptation.method.r=4,8", "retriever.search_params.nprobe=8",
         "+task.metrics.my_metric={}", "context.builder.selection.seed=3", "+train_mix.weights.clinic_qa=3",
         "generator.source=/models/x", "task.limits.train=8", "plugins=[my_metrics]"]
    )  # fmt: skip


def documented_commands() -> list[str]:
    """The `python -m ragft.run ...` commands the experiments' own comments tell a user to type."""
    found = []
    for path in sorted((CONF / "exp").glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.startswith("#") and "python -m ragft.run " in line:
                found.append(line.split("python -m ragft.run ", 1)[1].strip())
    return found


@pytest.mark.parametrize("command", documented_commands())
def test_every_command_an_experiment_documents_passes_the_command_line_check(command, tmp_path):
    """An experiment that sets `hydra.mode: MULTIRUN` sweeps a listed value without `-m`
    (`+exp=data_efficiency arm=few_shot context.builder.k=1,3,4`): the check composes it as a sweep."""
    check_command_line([*command.split(), f"paths.results={tmp_path}"])


def test_a_listed_value_without_a_sweep_is_refused_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        check_command_line(["arm=few_shot", "context.builder.k=1,3", f"paths.results={tmp_path}"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "context.builder.k=1,3" in error, error


# --- run identity ----------------------------------------------------------------------------------------------


def test_run_identity_covers_what_changes_results_and_nothing_else():
    zero_shot, lora, rag = (run_key(composed(f"arm={arm}")) for arm in ("zero_shot", "lora", "rag"))
    assert zero_shot == run_key(composed("arm=zero_shot", "training.epochs=9"))  # trains nothing
    assert zero_shot == run_key(composed("arm=zero_shot", "paths.results=/x", "exp_name=other", "leakage.ngram=4"))
    assert zero_shot == run_key(composed("arm=zero_shot", "retriever=bm25", "chunking=tokens"))  # retrieves nothing
    assert zero_shot == run_key(composed("arm=zero_shot", "embedder=tiny"))  # embeds nothing
    assert lora == run_key(composed("arm=lora", "training.logging_steps=1"))
    assert lora != run_key(composed("arm=lora", "training.epochs=9"))
    assert rag != run_key(composed("arm=rag", "context.builder.top_k=3"))
    assert rag != run_key(composed("arm=rag", "retriever=bm25"))
    assert rag != run_key(composed("arm=rag", "embedder=tiny"))  # the retriever's embedder
    assert rag != run_key(composed("arm=rag", "embedder@evaluation.embedder=tiny"))  # embedding_similarity's


def test_run_identity_records_the_settings_and_groups_seeds():
    lora = run_identity(composed("arm=lora"), "field_accuracy")
    other_seed = run_identity(composed("arm=lora", "seed=1"), "field_accuracy")
    assert (lora.arm, lora.adaptation, lora.context, lora.retriever) == ("lora", "lora", "zero_shot", None)
    assert (lora.seed, other_seed.seed, lora.task, lora.generator) == (0, 1, "medical_reports", "smollm2-135m-instruct")
    assert lora.key != other_seed.key and lora.group_key == other_seed.group_key
    assert lora.settings["training.epochs"] == 2 and lora.settings["training.seed"] == 0
    assert lora.settings["task.data.path"].startswith("sha256:")
    assert not any(key.split(".")[0] in NOT_RESULT_SETTINGS for key in lora.settings)
    assert "training.logging_steps" not in lora.settings and "embedder.name" not in lora.settings
    zero_shot = run_identity(composed("arm=zero_shot"), "field_accuracy")
    assert not any(key.startswith(("training.", "retriever.", "chunking.")) for key in zero_shot.settings)
    rag = run_identity(composed("arm=rag"), "field_accuracy")
    assert rag.retriever == "dense_flat" and rag.embedder == "all-minilm-l6-v2" and zero_shot.embedder is None


def test_run_identity_follows_data_content_not_its_location(tmp_path):
    import shutil

    from tests.conftest import ROOT

    shutil.copytree(ROOT / "corpora", tmp_path / "corpora")
    moved = composed("arm=rag", f"paths.corpora={tmp_path / 'corpora'}")
    assert run_key(moved) == run_key(composed("arm=rag"))
    notes = tmp_path / "corpora" / "clinic" / "notes.jsonl"
    notes.write_text(notes.read_text().replace("Cardivex", "Cardivax"))
    assert run_key(moved) != run_key(composed("arm=rag"))


def test_a_task_folder_counts_by_its_files_content_not_its_location(tmp_path):
    import shutil

    from tests.conftest import EXTERNAL_DATA

    if not EXTERNAL_DATA["pubmedqa"].is_dir():
        pytest.skip(f"pubmedqa data not found at {EXTERNAL_DATA['pubmedqa']}")
    shutil.copytree(EXTERNAL_DATA["pubmedqa"], tmp_path / "pubmedqa")
    here = composed("arm=rag", "task=pubmedqa", f"task.dir={EXTERNAL_DATA['pubmedqa']}")
    moved = composed("arm=rag", "task=pubmedqa", f"task.dir={tmp_path / 'pubmedqa'}")
    assert run_key(moved) == run_key(here)
    assert "task.dir" not in run_identity(moved, "accuracy").settings
    questions = tmp_path / "pubmedqa" / "pubmedqa.jsonl"
    questions.chmod(0o644)
    questions.write_text(questions.read_text().replace('"yes"', '"no"', 1))
    assert run_key(moved) != run_key(here)
