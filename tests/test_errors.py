"""Bad configs and bad data fail before any work, name what to fix, and leave nothing in results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragft.errors import ConfigError, DataError, RagftError
from ragft.recipe import run_experiment_arm

ROOT = Path(__file__).resolve().parent.parent
NOTES = ROOT / "corpora" / "clinic" / "notes.jsonl"


def write_notes(path: Path, mutate) -> Path:  # noqa: ANN001
    lines = NOTES.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(mutate(lines)) + "\n", encoding="utf-8")
    return path


def assert_nothing_written(results: Path) -> None:
    written = [p for p in results.rglob("*") if p.is_file()] if results.exists() else []
    assert written == [], written


def run_expecting(error: type[RagftError], pattern: str, cfg, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(error, match=pattern):
        run_experiment_arm(cfg)
    assert_nothing_written(tmp_path / "results")


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


def test_an_unknown_template_placeholder(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError,
        r"task.template.input_format.*unknown placeholder\(s\) \['note'\]",
        smoke_cfg("task.template.input_format='Note: {note}'"),
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


def test_an_index_that_cannot_be_trained_on_the_corpus(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError,
        r"retriever.index.*'IVF16,Flat' over 13 passages",
        smoke_cfg("arm=rag", "retriever.index='IVF16,Flat'"),
        tmp_path,
    )


def test_k_larger_than_the_train_split(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError,
        r"context.builder.k.*asks for 50.*train split has 12",
        smoke_cfg("arm=few_shot", "context.builder.k=50"),
        tmp_path,
    )


def test_prompt_longer_than_the_model_context(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError,
        r"example 'note-test-\d+' has a \d+-token prompt.*model context of 100 tokens",
        smoke_cfg("generator.max_context=100"),
        tmp_path,
    )


def test_unknown_metric(smoke_cfg, tmp_path):
    run_expecting(ConfigError, r"task.metrics.*unknown metric", smoke_cfg("+task.metrics.bleurt={}"), tmp_path)


def test_generator_that_is_not_available_offline(smoke_cfg, tmp_path):
    run_expecting(
        ConfigError,
        r"generator.source.*cannot load 'no-such-org/no-such-model' offline",
        smoke_cfg("generator.source=no-such-org/no-such-model"),
        tmp_path,
    )


def test_the_command_line_prints_the_error_without_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragft.run",
            "+debug=smoke",
            f"paths.results={tmp_path}",
            f"task.data.path={tmp_path}/missing.jsonl",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        timeout=300,
    )
    assert result.returncode == 2
    assert "ragft: error: config `task.data.path`" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file() and ".hydra" not in p.parts] == []
