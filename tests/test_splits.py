"""A team's file read as it is: its split values mapped to ragft's splits (several values may form one), a
seeded and stratifiable split made where it has none, and gold passage ids as a list, one id, or one
string of ids. The files are the shipped notes, with their split field renamed, re-valued or removed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ragft.config.schema import validate
from ragft.data.loading import load_examples, load_task, task_from_config
from ragft.errors import ConfigError, DataError
from tests.conftest import assert_refused, attempt

FIELDS = {"id": "id", "input": "note", "reference": "report", "split": "split", "category": "specialty",
          "gold_passages": "gold_passages", "facts": "fields"}  # fmt: skip


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def notes(clinic) -> list[dict]:
    """The shipped notes with five split values, as a file from another project might have them: the
    train split's first half `train`, the rest spread over `valid`, `test1`, `test2` and `test3`."""
    renamed = []
    for i, note in enumerate(clinic.notes):
        value = note["split"]
        if value != "train" or i % 2:
            value = ("valid", "test1", "test2", "test3")[i % 4]
        renamed.append({**note, "split": value})
    return renamed


def test_file_values_map_to_splits_in_file_order(notes, tmp_path):
    path = write_jsonl(notes, tmp_path / "notes.jsonl")
    mapping = {"train": "train", "validation": "valid", "test": ["test1", "test2"]}
    splits = load_examples({"path": path, "fields": FIELDS, "splits": mapping})
    assert sorted(splits) == ["test", "train", "validation"]
    for name, values in mapping.items():
        wanted = [n["id"] for n in notes if n["split"] in ([values] if isinstance(values, str) else values)]
        assert [e.id for e in splits[name]] == wanted, name
    assert not {e.id for e in splits["test"]} & {n["id"] for n in notes if n["split"] == "test3"}


def test_without_a_mapping_a_split_is_named_by_its_value(notes, tmp_path):
    path = write_jsonl(notes, tmp_path / "notes.jsonl")
    splits = load_examples({"path": path, "fields": FIELDS})
    assert Counter({name: len(examples) for name, examples in splits.items()}) == Counter(n["split"] for n in notes)
    with pytest.raises(DataError, match=r"no examples in split 'test' \(found splits: 'test1', .*task.data.splits"):
        load_task("t", {"path": path, "fields": FIELDS}, None)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"train": "train", "test": "tset1"}, r"task.data.splits.test.*'tset1' is not a split value.*'test1'"),
        (
            {"train": "train", "test": ["test1", "train"]},
            r"task.data.splits.test.*'train' is already mapped to 'train'",
        ),
    ],
)
def test_a_mapping_the_file_does_not_match_is_a_config_error(notes, tmp_path, mapping, message):
    path = write_jsonl(notes, tmp_path / "notes.jsonl")
    with pytest.raises(ConfigError, match=message):
        load_examples({"path": path, "fields": FIELDS, "splits": mapping})


def unsplit(notes: list[dict], path: Path) -> Path:
    return write_jsonl([{k: v for k, v in n.items() if k != "split"} for n in notes], path)


def split_ids(path: Path, **split_by) -> dict[str, list[str]]:
    fields = {**FIELDS, "split": None}
    splits = load_examples({"path": path, "fields": fields, "split_by": split_by})
    return {name: [e.id for e in examples] for name, examples in splits.items()}


def test_split_by_makes_a_seeded_stratified_split_that_ignores_file_order(notes, tmp_path):
    path = unsplit(notes, tmp_path / "notes.jsonl")
    made = split_ids(path, validation=0.1, test=0.2, seed=0, stratify="category")
    assert sorted(id for ids in made.values() for id in ids) == sorted(n["id"] for n in notes)
    category = {n["id"]: n["specialty"] for n in notes}
    in_category = Counter(category.values())
    for name, share in (("validation", 0.1), ("test", 0.2)):
        assert len(made[name]) == int(share * len(notes) + 0.5), name  # the share of all, rounded half up
        per_category = Counter(category[i] for i in made[name])
        for c, n in in_category.items():  # each category's share, give or take the one example rounding moves
            assert abs(per_category.get(c, 0) - share * n) < 1, (name, c)
    assert [i for i in made["train"]] == [n["id"] for n in notes if n["id"] in set(made["train"])]  # file order
    reversed_file = split_ids(
        unsplit(notes[::-1], tmp_path / "reversed.jsonl"), validation=0.1, test=0.2, stratify="category"
    )
    assert {k: set(v) for k, v in reversed_file.items()} == {k: set(v) for k, v in made.items()}
    other_seed = split_ids(path, validation=0.1, test=0.2, seed=1, stratify="category")
    assert set(other_seed["test"]) != set(made["test"])


def test_split_by_keeps_its_shares_over_many_small_strata(tmp_path):
    """Forty categories of two examples: rounding each category's 20% would make no test split at all."""
    rows = [{"id": f"n{i}", "note": "x", "report": "y", "specialty": f"c{i // 2}"} for i in range(80)]
    path = write_jsonl(rows, tmp_path / "notes.jsonl")
    fields = {"id": "id", "input": "note", "reference": "report", "split": None, "category": "specialty"}
    splits = load_examples({"path": path, "fields": fields, "split_by": {"test": 0.2, "stratify": "category"}})
    assert len(splits["test"]) == 16 and len({e.category for e in splits["test"]}) == 16


@pytest.mark.parametrize(
    ("fields", "split_by", "message"),
    [
        (FIELDS, {"test": 0.2}, r"task.data.split_by.*also reads them from the field 'split'.*fields.split=null"),
        ({**FIELDS, "split": None}, {"test": 0.2, "stratify": "ward"}, r"split_by.stratify.*'ward' is not a grouping"),
        ({**FIELDS, "split": None, "category": None}, {"test": 0.2, "stratify": "category"}, r"have no category"),
        ({**FIELDS, "split": None}, {"validation": 0.5, "test": 0.5}, r"validation and test take 1 of the examples"),
    ],
)
def test_a_split_by_that_cannot_work_is_a_config_error(notes, tmp_path, fields, split_by, message):
    path = unsplit(notes, tmp_path / "notes.jsonl")
    with pytest.raises(ConfigError, match=message):
        load_examples({"path": path, "fields": fields, "split_by": split_by})


def test_a_mapping_beside_split_by_is_refused(notes, tmp_path):
    path = unsplit(notes, tmp_path / "notes.jsonl")
    data = {"path": path, "fields": {**FIELDS, "split": None}, "split_by": {"test": 0.2}, "splits": {"test": "x"}}
    with pytest.raises(ConfigError, match=r"task.data.splits.*split_by makes the splits.*Keep one"):
        load_examples(data)


def test_gold_ids_as_a_list_one_id_or_a_joined_string_read_alike(notes, tmp_path):
    def read(rows: list[dict], name: str, **settings) -> dict[str, tuple[str, ...]]:
        splits = load_examples({"path": write_jsonl(rows, tmp_path / name), "fields": FIELDS, **settings})
        return {e.id: e.gold_passages for examples in splits.values() for e in examples}

    paired = [{**n, "gold_passages": n["gold_passages"] + ["protocol-extra"]} for n in notes]  # two ids each
    listed = read(paired, "listed.jsonl")
    assert {len(ids) for ids in listed.values()} == {2}
    joined = [{**n, "gold_passages": " ; ".join(n["gold_passages"])} for n in paired]
    assert read(joined, "joined.jsonl", list_separator=";") == listed
    as_json_text = [{**n, "gold_passages": json.dumps(n["gold_passages"])} for n in paired]  # a CSV cell's way
    assert read(as_json_text, "json_text.jsonl") == listed
    single = [{**n, "gold_passages": n["gold_passages"][0]} for n in notes]
    assert read(single, "single.jsonl") == {n["id"]: tuple(n["gold_passages"][:1]) for n in notes}
    gaps = read([{**notes[0], "gold_passages": "a;;b;"}], "gaps.jsonl", list_separator=";")
    assert gaps == {notes[0]["id"]: ("a", "b")}


def test_a_joined_string_without_a_separator_is_named_by_the_gold_check(clinic, tmp_path):
    rows = [{**n, "gold_passages": ";".join(n["gold_passages"] * 2)} for n in clinic.notes]
    path = write_jsonl(rows, tmp_path / "notes.jsonl")
    corpus = {"path": Path(clinic_corpus(clinic, tmp_path))}
    with pytest.raises(DataError, match=r"line 1 .*unknown gold passage '.*;.*'.*set task.data.list_separator=';'"):
        load_task("t", {"path": path, "fields": FIELDS}, corpus)


def clinic_corpus(clinic, tmp_path: Path) -> Path:
    latest = clinic.protocols[max(clinic.protocols)]
    return write_jsonl([{"id": i, "text": t} for i, t in latest.items()], tmp_path / "protocols.jsonl")


def test_the_config_takes_a_mapping_and_a_split_by_and_refuses_a_bad_share(notes, smoke_cfg, tmp_path):
    path = write_jsonl(notes, tmp_path / "notes.jsonl")
    mapped = smoke_cfg(f"task.data.path={path}", "+task.data.splits={train: train, test: [test1, test2]}")
    validate(mapped)
    assert task_from_config(mapped.task).split("test")
    made = smoke_cfg(
        f"task.data.path={path}", "task.data.fields.split=null", "+task.data.split_by={test: 0.25, seed: 3}"
    )
    validate(made)
    bad = attempt(
        tmp_path / "results", f"task.data.path={path}", "task.data.fields.split=null", "+task.data.split_by.test=1.5"
    )
    assert_refused(bad, "task.data.split_by.test")


def test_passages_as_parts_of_documents_are_judged_and_withdrawn_by_document(tmp_path):
    """`task.corpus.document_field`: gold ids name documents, and `corpus.exclude` may name one."""
    from ragft.data.loading import load_corpus, withdraw

    rows = [
        {"id": f"{doc}-{n}", "text": f"section {n} of {doc}", "pmid": doc} for doc in ("111", "222") for n in (0, 1)
    ]
    path = write_jsonl(rows, tmp_path / "corpus.jsonl")
    passages = load_corpus(path, document_field="pmid")
    assert [(p.id, p.doc_id) for p in passages] == [(r["id"], r["pmid"]) for r in rows]
    assert [p.id for p in withdraw(passages, ["111"])] == ["222-0", "222-1"]
    assert [p.id for p in withdraw(passages, ["222-0"])] == ["111-0", "111-1", "222-1"]
    with pytest.raises(ConfigError, match=r"names documents the corpus does not have: \['333'\]"):
        withdraw(passages, ["333"])
