"""Tuning on validation, never on test: the same trial budget for every arm, the study stored in the
experiment folder, the chosen settings applied to the run on test and recorded with it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from ragft.errors import ConfigError
from ragft.tune import STUDY_FILE, run_arm
from tests.conftest import attempt, records

FEW_SHOT_SPACE = "+tune.space.few_shot={context.builder.k: [1, 2, 3]}"


def study(results: Path, exp: str = "test", label: str = "few_shot") -> optuna.Study:
    """The arm's one study in the experiment's study file."""
    storage = f"sqlite:///{results / exp / STUDY_FILE}"
    (name,) = [n for n in optuna.get_all_study_names(storage) if n.startswith(f"{label}-")]
    return optuna.load_study(study_name=name, storage=storage)


def tried_settings(results: Path, key: str = "context.builder.k", label: str = "few_shot") -> set:
    return {t.params[key] for t in study(results, label=label).trials}


def test_an_arm_is_tuned_on_validation_then_run_on_test_with_the_chosen_settings(smoke_cfg, tmp_path, clinic):
    results = tmp_path / "results"
    run_dir = run_arm(smoke_cfg("arm=few_shot", "tune.trials=3", FEW_SHOT_SPACE))
    assert tried_settings(results) == {1, 2, 3}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study(results).trials)
    tried = records(results / "test_tuning")
    assert len(tried) == 3 and {r.identity.settings["tune.split"] for r in tried} == {"validation"}
    validation = len(clinic.split(clinic.notes, "validation"))
    assert {r.scores["field_accuracy"].n for r in tried} == {validation}  # the whole split, as the final run's test
    (final,) = records(results / "test")
    best = study(results).best_params
    assert final.identity.settings["context.builder.k"] == best["context.builder.k"]
    assert final.identity.settings["tune.chosen.context.builder.k"] == best["context.builder.k"]
    assert final.identity.settings["tune.split"] is None and run_dir.parent == results / "test"


def test_trials_score_the_validation_split_and_never_test(smoke_cfg, tmp_path, clinic):
    results = tmp_path / "results"
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", FEW_SHOT_SPACE))
    validation = {n["id"] for n in clinic.split(clinic.notes, "validation")}
    from ragft.record.run import read_predictions

    for folder in (results / "test_tuning").iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            assert {p["id"] for p in read_predictions(folder)} <= validation


def test_a_second_job_of_the_arm_reuses_the_study(smoke_cfg, tmp_path):
    """Seeds 0, 1, 2 of one arm: the first job runs the trials, the others only read the best."""
    results = tmp_path / "results"
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", FEW_SHOT_SPACE))
    trials = len(study(results).trials)
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", FEW_SHOT_SPACE, "seed=1"))
    assert len(study(results).trials) == trials and tried_settings(results) == {1, 2, 3}  # configured k=2, two draws
    assert sorted(r.identity.seed for r in records(results / "test")) == [0, 1]


def test_named_config_nodes_are_a_choice_the_study_names_and_each_run_applies_with_its_own_seed(smoke_cfg, tmp_path):
    """Few-shot selection as named nodes: the study and the record hold the name, the run the node, and
    `${seed}` in the node is the seed of the run it is applied to (the trials' tune.seed, the final run's
    own seed)."""
    results = tmp_path / "results"
    space = (
        "+tune.space.few_shot={context.builder.selection: {"
        "random: {_target_: ragft.context.shots.RandomShots, seed: '${seed}'}}}"
    )
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", space, "tune.seed=4", "seed=7"))
    assert {t.params["context.builder.selection"] for t in study(results).trials} == {"random"}
    tried = records(results / "test_tuning")
    assert {r.identity.settings["context.builder.selection._target_"] for r in tried} == {
        "ragft.context.shots.RandomShots"
    }
    assert {r.identity.settings["context.builder.selection.seed"] for r in tried} == {4}
    (final,) = records(results / "test")
    assert final.identity.settings["tune.chosen.context.builder.selection"] == "random"
    assert final.identity.settings["context.builder.selection._target_"] == "ragft.context.shots.RandomShots"
    assert final.identity.settings["context.builder.selection.seed"] == 7


def test_a_tuned_retriever_keeps_the_arm_s_name_and_records_which_one_was_chosen(smoke_cfg, tmp_path):
    """A retriever swapped in by tuning: runs without a preset arm keep the label their study has, and
    the record names the retriever chosen, not the one the config started from."""
    space = "+tune.space.rag={retriever: {bm25: {_target_: ragft.retrieval.BM25Retriever}}}"
    run_arm(smoke_cfg("context=rag", "tune.trials=1", space))
    (final,) = records(tmp_path / "results" / "test")
    assert final.identity.arm == "rag" and final.identity.retriever == "bm25"
    assert final.identity.settings["retriever._target_"] == "ragft.retrieval.BM25Retriever"
    assert {r.identity.arm for r in records(tmp_path / "results" / "test_tuning")} == {"rag"}


def test_failed_trials_count_against_the_budget_and_a_study_with_no_scored_trial_is_one_line(smoke_cfg, tmp_path):
    """Settings that cannot work fail their trial (recorded); the study goes on, the budget counts the
    failures, and when nothing scored the arm stops with one line naming where the trials are."""
    failing = "+tune.space.few_shot={generation.batch_size: [0, -1]}"
    with pytest.raises(ConfigError, match=r"every trial of few_shot failed.*test_tuning/"):
        run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", failing))
    trials = study(tmp_path / "results").trials
    assert {t.state for t in trials} == {optuna.trial.TrialState.FAIL}
    assert tried_settings(tmp_path / "results", "generation.batch_size") == {0, -1}
    with pytest.raises(ConfigError, match=r"every trial of few_shot failed"):  # the second job tries no more
        run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", failing))
    assert len(study(tmp_path / "results").trials) == len(trials)


def test_a_study_is_kept_apart_by_its_tuning_seed(smoke_cfg, tmp_path):
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=1", FEW_SHOT_SPACE))
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=1", FEW_SHOT_SPACE, "tune.seed=1"))
    assert len(optuna.get_all_study_names(f"sqlite:///{tmp_path / 'results' / 'test' / STUDY_FILE}")) == 2


def test_each_configuration_of_a_sweep_has_its_own_study_and_more_trials_extend_it(smoke_cfg, tmp_path):
    """k=1..3 tuned twice, once per max_new_tokens: two studies, not one shared by configurations that
    answer differently; asking for a third trial later adds one to the configuration's study."""
    results = tmp_path / "results"
    space = "+tune.space.few_shot={context.builder.k: [1, 2, 3, 4]}"
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", space))
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", space, "task.generation.max_new_tokens=4"))
    storage = f"sqlite:///{results / 'test' / STUDY_FILE}"
    names = optuna.get_all_study_names(storage)

    def distinct(name: str) -> int:
        return len({t.params["context.builder.k"] for t in optuna.load_study(study_name=name, storage=storage).trials})

    assert len(names) == 2 and all(n.startswith("few_shot-") for n in names)
    assert all(distinct(n) == 3 for n in names)  # the configured k=2 and two draws
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=3", space))
    assert len(optuna.get_all_study_names(storage)) == 2
    assert sorted(distinct(n) for n in names) == [3, 4]


class Proposes(optuna.samplers.BaseSampler):
    """A sampler that proposes the given values in turn (then the last forever)."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)

    def infer_relative_search_space(self, study, trial):  # noqa: ANN001, ANN201
        return {}

    def sample_relative(self, study, trial, search_space):  # noqa: ANN001, ANN201
        return {}

    def sample_independent(self, study, trial, name, distribution):  # noqa: ANN001, ANN201
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def test_a_setting_proposed_again_is_answered_from_the_study_and_not_counted(smoke_cfg, tmp_path, monkeypatch):
    """Every arm gets `tune.trials` distinct tries: a repeat (likely in a small space of choices) is
    neither run nor counted, so an arm whose sampler repeats itself is not tuned on fewer settings."""
    monkeypatch.setattr(optuna.samplers, "TPESampler", lambda seed=None: Proposes(1, 1, 2, 1, 3))
    results = tmp_path / "results"
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=3", FEW_SHOT_SPACE))
    trials = study(results).trials
    # the configured k=2 first, then the draws: 1, 1 again, 2 (the configured), 1 again, 3
    assert [t.params["context.builder.k"] for t in trials] == [2, 1, 1, 2, 1, 3]
    assert [t.user_attrs.get("repeat_of") for t in trials] == [None, None, 1, 0, 1, None]
    assert trials[2].value == trials[1].value  # the repeat scores what its setting scored
    assert len(records(results / "test_tuning")) == 3


def test_a_space_smaller_than_the_budget_is_tried_whole_and_a_sampler_stuck_on_tried_settings_stops(
    smoke_cfg, tmp_path, monkeypatch, caplog
):
    results = tmp_path / "results"
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=5", "+tune.space.few_shot={context.builder.k: [1, 2]}"))
    assert tried_settings(results) == {1, 2}
    monkeypatch.setattr(optuna.samplers, "TPESampler", lambda seed=None: Proposes(1))
    monkeypatch.setattr("ragft.tune.MAX_REPEATS", 3)
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", FEW_SHOT_SPACE, "tune.seed=1"))
    assert "proposed only tried settings 3 times in a row" in caplog.text
    (final,) = [r for r in records(results / "test") if r.identity.settings["tune.seed"] == 1]
    assert final.identity.settings["tune.chosen.context.builder.k"] in (1, 2)


def test_the_configured_settings_are_tried_first_beside_the_budget_and_kept_on_a_tie(smoke_cfg, tmp_path, monkeypatch):
    """A search never ends below the configuration it started from: few-shot's configured k=2 is tried
    before the draws and does not count against them; a configured value outside the space is not tried."""
    results = tmp_path / "results"
    monkeypatch.setattr(optuna.samplers, "TPESampler", lambda seed=None: Proposes(1))
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=1", FEW_SHOT_SPACE))
    first, drawn = study(results).trials
    assert (first.params, first.user_attrs.get("configured")) == ({"context.builder.k": 2}, True)
    assert drawn.params == {"context.builder.k": 1}
    if first.value >= drawn.value:  # the smoke model may score both alike: the configured one is kept
        (final,) = records(results / "test")
        assert final.identity.settings["tune.chosen.context.builder.k"] == 2
    monkeypatch.undo()
    run_arm(
        smoke_cfg("arm=few_shot", "tune.trials=1", "+tune.space.few_shot={context.builder.k: [3, 4]}", "exp_name=other")
    )
    (only,) = study(results, exp="other").trials
    assert only.params["context.builder.k"] in (3, 4) and not only.user_attrs.get("configured")


def test_an_arm_without_a_space_runs_as_configured(smoke_cfg, tmp_path):
    run_arm(smoke_cfg("arm=zero_shot", "tune.trials=3", FEW_SHOT_SPACE))
    assert not (tmp_path / "results" / "test" / STUDY_FILE).exists()
    assert not (tmp_path / "results" / "test_tuning").exists()


@pytest.mark.parametrize(
    ("space", "message"),
    [("{context.builder.kk: [1, 2]}", "tune.space.few_shot.context.builder.kk`: `context.builder.kk` is not a setting"),
     ("{context.builder.k: []}", "tune.space.few_shot.context.builder.k`: [] is not a search space."),
     ("{context.builder.k: {low: 3, high: 1}}", "is not a search space."),
     ("{context.builder.selection: {random: 3}}", "is not a search space.")],
)  # fmt: skip
def test_a_bad_search_space_is_one_line(space, message, smoke_cfg):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", f"+tune.space.few_shot={space}"))


def test_tuning_on_test_is_refused(tmp_path):
    result = attempt(tmp_path / "results", "arm=few_shot", "tune.split=test")
    assert result.code == 2
    assert result.error.startswith("config `tune.split`: is the test split")


def test_the_report_says_which_arms_were_tuned_and_an_untuned_report_says_none_was(smoke_cfg, tmp_path):
    from ragft.report.render import write_report

    results = tmp_path / "results"
    run_arm(smoke_cfg("arm=zero_shot"))
    write_report(results / "test")
    assert "No arm was tuned" in (results / "test" / "report.md").read_text(encoding="utf-8")
    run_arm(smoke_cfg("arm=few_shot", "tune.trials=2", FEW_SHOT_SPACE))
    write_report(results / "test")
    markdown = (results / "test" / "report.md").read_text(encoding="utf-8")
    assert "Tuned on the validation split" in markdown and "few_shot (2)" in markdown
    assert "tune.chosen.context.builder.k" in markdown  # the chosen setting, in What differs
