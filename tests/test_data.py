"""Task data in every supported format gives the same examples; malformed data names file, row and field."""

import json
from pathlib import Path

import pandas as pd
import pytest

from ragft.data.loading import load_examples, load_task
from ragft.errors import ConfigError, DataError
from ragft.record.run import read_predictions
from tests.conftest import ROOT, record_of

FIELDS = {
    "id": "id",
    "input": "note",
    "reference": "report",
    "split": "split",
    "category": "specialty",
    "gold_passages": "gold_passages",
    "facts": "fields",
}


def data(path: Path, **settings) -> dict:
    """A task's `data` section for the file at `path`."""
    return {"path": path, "fields": FIELDS, **settings}


@pytest.fixture(scope="module")
def records(clinic) -> list[dict]:
    """A few of the shipped notes from two splits."""
    return clinic.split(clinic.notes, "train")[:6] + clinic.split(clinic.notes, "test")[:4]


@pytest.fixture(scope="module")
def expected(records, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("jsonl") / "notes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return load_examples(data(path))


def as_csv(records: list[dict], path: Path) -> Path:
    rows = [{**r, "gold_passages": json.dumps(r["gold_passages"]), "fields": json.dumps(r["fields"])} for r in records]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_csv_parquet_and_saved_datasets_read_like_jsonl(records, expected, tmp_path):
    from datasets import Dataset, DatasetDict

    as_csv(records, tmp_path / "notes.csv")
    pd.DataFrame(records).to_parquet(tmp_path / "notes.parquet")
    Dataset.from_list(records).save_to_disk(str(tmp_path / "flat"))
    by_split = {
        s: Dataset.from_list([{k: v for k, v in r.items() if k != "split"} for r in records if r["split"] == s])
        for s in ("train", "test")
    }
    DatasetDict(by_split).save_to_disk(str(tmp_path / "dict"))  # the split comes from the dict's keys
    for source in ("notes.csv", "notes.parquet", "flat", "dict"):
        assert load_examples(data(tmp_path / source)) == expected, source
    assert [len(expected[s]) for s in ("train", "test")] == [
        sum(r["split"] == s for r in records) for s in ("train", "test")
    ]
    assert expected["test"][0].facts == next(r["fields"] for r in records if r["split"] == "test")


def test_a_missing_csv_column_names_file_row_and_field(records, tmp_path):
    path = as_csv(records, tmp_path / "notes.csv")
    with pytest.raises(DataError, match=r"notes.csv, row 1, field 'summary': missing"):
        load_examples(data(path, fields={**FIELDS, "reference": "summary"}))


def test_an_empty_csv_cell_names_its_row(records, tmp_path):
    rows = [dict(r) for r in records]
    rows[3]["note"] = ""
    path = as_csv(rows, tmp_path / "notes.csv")
    with pytest.raises(DataError, match=r"notes.csv, row 4, field 'note': empty"):
        load_examples(data(path))


def test_a_list_cell_that_is_not_json(records, tmp_path):
    """A cell that opens a JSON list and breaks it (a cell without `[` is one id, or ids joined by
    task.data.list_separator: tests/test_splits.py)."""
    path = as_csv(records, tmp_path / "notes.csv")
    frame = pd.read_csv(path, dtype=str)
    frame.loc[1, "gold_passages"] = '["protocol-a", protocol-b]'
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 2, field 'gold_passages': expected a JSON list"):
        load_examples(data(path))


def test_a_wrongly_typed_parquet_value(records, tmp_path):
    rows = [dict(r) for r in records]
    for r in rows:
        r["note"] = 7
    pd.DataFrame(rows).to_parquet(tmp_path / "notes.parquet")
    with pytest.raises(DataError, match=r"notes.parquet, row 1, field 'note': expected str, got int"):
        load_examples(data(tmp_path / "notes.parquet"))


def test_unknown_formats_and_plain_folders_are_config_errors(tmp_path):
    (tmp_path / "notes.xlsx").write_text("x")
    with pytest.raises(ConfigError, match=r"task.data.path.*unknown format '.xlsx'"):
        load_examples(data(tmp_path / "notes.xlsx"))
    with pytest.raises(ConfigError, match=r"task.data.path.*not one saved by datasets"):
        load_examples(data(tmp_path))


def test_a_limit_on_a_split_the_data_lacks(records, tmp_path):
    path = as_csv(records, tmp_path / "notes.csv")
    with pytest.raises(ConfigError, match=r"task.limits.validation.*unknown split"):
        load_task("t", {"path": path, "fields": FIELDS}, None, {"validation": 3})


PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa"


@pytest.mark.skipif(
    not (PUBMEDQA / "pubmedqa.jsonl").is_file(),
    reason=f"PubMedQA not found at {PUBMEDQA} (the task reads it from a user-given folder)",
)
def test_pubmedqa_runs_from_a_local_folder(smoke_cfg):
    from ragft.recipe import run_experiment_arm

    cfg = smoke_cfg("task=pubmedqa", f"task.dir={PUBMEDQA}", "arm=rag", "task.limits.train=8", "task.limits.test=6")
    run_dir = run_experiment_arm(cfg)
    accuracy = record_of(run_dir).scores["accuracy"]
    assert accuracy.n == 6 and 0 <= accuracy.mean <= 1
    predictions = read_predictions(run_dir)
    assert all(p["reference"] in ("yes", "no", "maybe") for p in predictions)
    assert all(p["retrieved"][0].split("-")[0].isdigit() for p in predictions)  # passages of the PubMed corpus
