"""Bad configs and bad data fail before any work, name what to fix, and leave nothing in results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragft.errors import ConfigError, DataError
from tests.conftest import ROOT, record_of, records, run_expecting

NOTES = ROOT / "corpora" / "clinic" / "notes.jsonl"


def write_notes(path: Path, mutate) -> Path:  # noqa: ANN001
    lines = NOTES.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(mutate(lines)) + "\n", encoding="utf-8")
    return path


def failed_at(stage: str | None, pattern: str, cfg, tmp_path: Path, error: type = ConfigError) -> None:  # noqa: ANN001
    """An error found once the work has begun (loading the generator, building contexts) is a
    ConfigError naming the key (or a DataError naming the place), and the run is recorded as failed at
    that stage, without predictions."""
    from ragft.recipe import run_experiment_arm

    with pytest.raises(error, match=pattern):
        run_experiment_arm(cfg)
    (record,) = records(tmp_path / "results" / "test")
    assert (record.status, record.failure.error) == ("failed", error.__name__)
    assert stage is None or record.failure.stage == stage
    assert [p.name for p in (tmp_path / "results" / "test").rglob("predictions.jsonl")] == []


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the run gets as far as loading the task's data."""
    import ragft.recipe

    monkeypatch.setattr(ragft.recipe, "prepare", lambda cfg: pytest.fail("work started before the error"))


@pytest.mark.parametrize(
    ("override", "pattern"),
    [("+trainig.epochs=3", r"config `trainig`: is not a top-level setting.*Did you mean `training`\?"),
     ("+training.epoch=3", r"config `training.epoch`: .*Did you mean `training.epochs`\?"),
     ("training.batch_size=0", r"config `training.batch_size`: 0 is not allowed"),
     ("training.learning_rate=-1", r"config `training.learning_rate`: -1 is not allowed"),
     ("task.limits.test=0", r"config `task.limits.test`: 0 is not allowed"),
     ("task.limits.test=-5", r"config `task.limits.test`: -5 is not allowed")],
)  # fmt: skip
def test_a_config_the_schema_refuses_stops_the_run_before_any_work(override, pattern, smoke_cfg, tmp_path, no_work):
    run_expecting(ConfigError, pattern, smoke_cfg("arm=lora", override), tmp_path)


def test_missing_data_file(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError,
        r"config `task.data.path`: data file '.*nowhere.jsonl' does not exist",
        smoke_cfg(f"task.data.path={tmp_path}/nowhere.jsonl"),
        tmp_path,
    )


def test_malformed_json_names_file_and_line(smoke_cfg, tmp_path):
    bad = write_notes(tmp_path / "notes.jsonl", lambda lines: [*lines[:2], "{not json", *lines[3:]])
    run_expecting(DataError, r"notes.jsonl, line 3: not valid JSON", smoke_cfg(f"task.data.path={bad}"), tmp_path)


def test_missing_field_names_file_line_and_field(smoke_cfg, tmp_path):
    def drop_note(lines: list[str]) -> list[str]:
        record = json.loads(lines[4])
        del record["note"]
        return [*lines[:4], json.dumps(record), *lines[5:]]

    bad = write_notes(tmp_path / "notes.jsonl", drop_note)
    run_expecting(
        DataError, r"notes.jsonl, line 5, field 'note': missing", smoke_cfg(f"task.data.path={bad}"), tmp_path
    )


def test_field_mapping_to_an_absent_column(smoke_cfg, tmp_path):
    run_expecting(
        DataError,
        r"line 1, field 'doctor_note': missing \(present: .*note",
        smoke_cfg("task.data.fields.input=doctor_note"),
        tmp_path,
    )


def test_a_split_without_examples(smoke_cfg, tmp_path):
    only_train = write_notes(tmp_path / "notes.jsonl", lambda lines: [ln for ln in lines if '"split": "train"' in ln])
    run_expecting(DataError, r"no examples in split 'test'", smoke_cfg(f"task.data.path={only_train}"), tmp_path)


def test_duplicate_ids(smoke_cfg, tmp_path):
    bad = write_notes(tmp_path / "notes.jsonl", lambda lines: [*lines[:6], lines[2], *lines[6:]])
    run_expecting(
        DataError,
        r"line 7, field 'id': duplicate id 'note-train-002' \(first at line 3\)",
        smoke_cfg(f"task.data.path={bad}"),
        tmp_path,
    )


def test_a_field_mapping_without_split(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError, r"task.data.fields.*no mapping for \['split'\]", smoke_cfg("task.data.fields.split=null"), tmp_path
    )


def test_a_template_placeholder_the_records_lack(smoke_cfg, tmp_path):
    run_expecting(
        DataError,
        r"notes.jsonl, line 1, field 'nte': missing, and task.template.input_format names it; did you mean \{note\}",
        smoke_cfg("task.template.input_format='Note: {nte}'"),
        tmp_path,
    )
    run_expecting(
        ConfigError,
        r"task.template.passage_format.*unknown placeholder\(s\) \['source'\]",
        smoke_cfg("task.template.passage_format='{source}: {text}'"),
        tmp_path,
    )


def test_metric_settings_that_do_not_fit_the_data(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError,
        r"task.metrics.field_accuracy.*does not fit example",
        smoke_cfg("task.metrics.field_accuracy.protocol_fields=[drug,allergy]"),
        tmp_path,
    )
    run_expecting(
        ConfigError,
        r"task.metrics.rouge_l.*unexpected keyword argument 'stem'",
        smoke_cfg("+task.metrics.rouge_l.stem=true"),
        tmp_path,
    )


def test_an_index_that_cannot_be_trained_on_the_corpus(smoke_cfg, tmp_path, clinic):
    passages = len(clinic.protocols[1])  # medical_reports retrieves from protocol version 1
    failed_at(
        "build_context",
        rf"retriever.index.*'IVF{2 * passages},Flat' over {passages} passages",  # more clusters than passages
        smoke_cfg("arm=rag", f"retriever.index='IVF{2 * passages},Flat'"),
        tmp_path,
    )


def test_k_larger_than_the_train_split(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError,
        r"context.builder.k.*asks for 50.*train split has 12",
        smoke_cfg("arm=few_shot", "context.builder.k=50"),
        tmp_path,
    )


def test_prompt_longer_than_the_model_context(smoke_cfg, tmp_path, clinic):
    """The error names the example's file and line, not a setting to blame."""
    first_test = next(i for i, note in enumerate(clinic.notes) if note["split"] == "test")
    failed_at(
        None,  # the prompts are checked between stages, once they are built and before any training
        rf"notes.jsonl, line {first_test + 1}: example '{clinic.notes[first_test]['id']}' alone makes a \d+-token "
        r"prompt.*over the budget of \d+.*Set task.truncate=head, tail or middle",
        smoke_cfg("generator.max_context=100"),
        tmp_path,
        DataError,
    )


def test_task_truncate_cuts_inputs_to_the_models_window(smoke_cfg):
    from ragft.recipe import run_experiment_arm

    cfg = smoke_cfg("generator.max_context=140", "+task.truncate=tail")
    record = record_of(run_experiment_arm(cfg))
    fit = record.cost.prompt_fit
    assert fit.budget_tokens == 140 - cfg.task.generation.max_new_tokens
    assert fit.inputs_truncated > 0 and record.cost.generation.prompt_tokens_max <= fit.budget_tokens


def test_unknown_metric(smoke_cfg, tmp_path):
    run_expecting(ConfigError, r"task.metrics.*unknown metric", smoke_cfg("+task.metrics.bleurt={}"), tmp_path)


def test_generator_that_is_not_available_offline(smoke_cfg, tmp_path):
    failed_at(
        "load_generator",
        r"generator.source.*cannot load 'no-such-org/no-such-model' offline",
        smoke_cfg("generator.source=no-such-org/no-such-model"),
        tmp_path,
    )


def ragft_run(*overrides: str) -> subprocess.CompletedProcess:
    """`python -m ragft.run +debug=smoke <overrides>`, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "ragft.run", "+debug=smoke", *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, message: str, results: Path) -> None:
    """Exit status 2, ragft's one-line error and no traceback, nothing written but Hydra's own log."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"ragft: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p for p in results.rglob("*") if p.is_file() and ".hydra" not in p.parts] == []


@pytest.mark.integration
def test_the_command_line_prints_the_error_without_a_traceback(tmp_path):
    result = ragft_run(f"paths.results={tmp_path}", f"task.data.path={tmp_path}/missing.jsonl")
    assert_one_line_error(result, "config `task.data.path`", tmp_path)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("override", "message"),
    [("trainig.epochs=3", "config `trainig`: is not a top-level setting (with or without `+`). Did you mean `training`?"),
     ("training.epoch=3", "config `training.epoch`: is not a setting of `training`"),
     ("training.batch_size=0", "config `training.batch_size`: 0 is not allowed. Set it to a whole number > 0.")],
)  # fmt: skip
def test_the_command_line_stops_a_misspelt_key_or_a_bad_value_with_exit_status_2(override, message, tmp_path):
    """A misspelt key fails before Hydra composes (Hydra's own error would advise adding it with `+`);
    a bad value fails when the job starts, before any work."""
    assert_one_line_error(ragft_run("arm=lora", f"paths.results={tmp_path}", override), message, tmp_path)


@pytest.mark.integration
def test_a_sweep_is_checked_for_every_value_before_hydra_starts(tmp_path):
    """Each value of a command-line sweep composes before any job runs: Hydra's own error for a key a
    component does not have would advise adding it with `+`."""
    result = subprocess.run(
        [sys.executable, "-m", "ragft.run", "-m", "+debug=smoke", "arm=zero_shot,rag", "retriever.k=3"]
        + [f"paths.results={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        timeout=300,
    )
    assert_one_line_error(
        result, "config `retriever.k`: is not a setting of `retriever` (with or without `+`).", tmp_path
    )
