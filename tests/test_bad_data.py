"""Every bad data file stops `python -m ragft.run` with one located line (exit status 2, nothing written):
encodings, byte-order marks, empty files, malformed CSV and Parquet, saved datasets, gold passages the
corpus lacks and corpus ids used twice. The bad files are the shipped task's files, copied and changed."""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ragft.data.loading import load_task, task_from_config
from ragft.types import TaskData
from tests.conftest import assert_refused, attempt, compose_config

SMOKE = ("+debug=smoke", "exp_name=test")


@functools.cache
def task_config() -> dict:
    """The task a smoke run loads (medical_reports): its data and corpus sections, as plain values."""
    from omegaconf import OmegaConf

    task = OmegaConf.to_container(compose_config(*SMOKE).task, resolve=True)
    assert isinstance(task, dict)
    return task


def data_lines() -> list[str]:
    return Path(task_config()["data"]["path"]).read_text(encoding="utf-8").splitlines()


def corpus_lines() -> list[str]:
    return Path(task_config()["corpus"]["path"]).read_text(encoding="utf-8").splitlines()


def corpus_name() -> str:
    return Path(task_config()["corpus"]["path"]).name


def field(name: str) -> str:
    """The data file's field for one of ragft's names (input, gold_passages, ...)."""
    return task_config()["data"]["fields"][name]


def records() -> list[dict]:
    return [json.loads(line) for line in data_lines() if line.strip()]


def prefixed(line: str, name: str, prefix: str) -> str:
    """The JSON line with `prefix` put before the value of its field `name` (everything else ASCII, so a
    character's column is its index + 1 in the line whether counted in bytes or characters)."""
    record = json.loads(line)
    record[name] = "\0" + record[name]
    return json.dumps(record).replace("\\u0000", prefix, 1)


def column_of(text: str, char: str) -> tuple[int, int]:
    """(line, column) of the first `char` in `text`, both from 1."""
    at = text.index(char)
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


def as_csv(rows: list[dict]) -> str:
    """Rows as the CSV a user would save: list and mapping cells as JSON."""
    cells = [{k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()} for r in rows]
    return pd.DataFrame(cells).to_csv(index=False)


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def data(path: Path) -> list[str]:
    return [f"task.data.path={path}"]


def corpus(path: Path) -> list[str]:
    return [f"task.corpus.path={path}"]


# --- the cases: each builds its bad input in a folder and says the overrides and the expected message ----

Build = Callable[[Path], tuple[list[str], str]]


def jsonl_latin1(tmp: Path) -> tuple[list[str], str]:
    lines = data_lines()
    lines[2] = prefixed(lines[2], field("input"), "Café ")
    _, column = column_of(lines[2], "é")
    path = write(tmp / "notes.jsonl", "\n".join(lines).encode("latin-1") + b"\n")
    fix = "set task.data.encoding to the file's encoding (e.g. latin-1)"
    return data(path), f"notes.jsonl, line 3: not valid utf-8 (byte 0xe9 at column {column}); {fix}"


def jsonl_cp1252(tmp: Path) -> tuple[list[str], str]:
    lines = data_lines()
    lines[4] = prefixed(lines[4], field("input"), "Seen today \u2013 ")  # an en dash: 0x96 in Windows' code page
    _, column = column_of(lines[4], "\u2013")
    path = write(tmp / "notes.jsonl", "\n".join(lines).encode("cp1252") + b"\n")
    fix = "set task.data.encoding to the file's encoding (e.g. cp1252)"
    return data(path), f"notes.jsonl, line 5: not valid utf-8 (byte 0x96 at column {column}); {fix}"


def jsonl_utf16(tmp: Path) -> tuple[list[str], str]:
    path = write(tmp / "notes.jsonl", ("\n".join(data_lines()) + "\n").encode("utf-16"))  # with its byte-order mark
    problem = "the file is UTF-16 (it starts with a UTF-16 byte-order mark), not utf-8"
    return data(path), f"notes.jsonl: {problem}; set task.data.encoding=utf-16"


def jsonl_utf16_without_bom(tmp: Path) -> tuple[list[str], str]:
    path = write(tmp / "notes.jsonl", ("\n".join(data_lines()) + "\n").encode("utf-16-le"))
    return data(path), "is the file UTF-16? set task.data.encoding to the file's encoding (e.g. utf-16-le)"


def corpus_latin1(tmp: Path) -> tuple[list[str], str]:
    lines = corpus_lines()
    lines[1] = prefixed(lines[1], task_config()["corpus"]["text_field"], "Protocole révisé: ")
    _, column = column_of(lines[1], "é")
    path = write(tmp / corpus_name(), "\n".join(lines).encode("latin-1") + b"\n")
    fix = "set task.corpus.encoding to the file's encoding (e.g. latin-1)"
    return corpus(path), f"{corpus_name()}, line 2: not valid utf-8 (byte 0xe9 at column {column}); {fix}"


def jsonl_utf8_declared_ascii(tmp: Path) -> tuple[list[str], str]:
    lines = data_lines()
    lines[2] = prefixed(lines[2], field("input"), "Café ")
    _, column = column_of(lines[2], "é")
    path = write(tmp / "notes.jsonl", "\n".join(lines) + "\n")
    fix = "set task.data.encoding to the file's encoding (e.g. utf-8)"  # the bytes are UTF-8: it says so
    return [*data(path), "task.data.encoding=ascii"], f"line 3: not valid ascii (byte 0xc3 at column {column}); {fix}"


def unknown_data_encoding(tmp: Path) -> tuple[list[str], str]:
    return ["task.data.encoding=nonsense"], "config `task.data.encoding`: unknown text encoding 'nonsense'"


def unknown_corpus_encoding(tmp: Path) -> tuple[list[str], str]:
    return ["task.corpus.encoding=rot13"], "config `task.corpus.encoding`: unknown text encoding 'rot13'"


def jsonl_0_bytes(tmp: Path) -> tuple[list[str], str]:
    return data(write(tmp / "notes.jsonl", b"")), "notes.jsonl: the file is empty (no examples)"


def jsonl_blank_lines(tmp: Path) -> tuple[list[str], str]:
    return data(write(tmp / "notes.jsonl", "\n  \n\n")), "notes.jsonl: the file is empty (no examples)"


def csv_0_bytes(tmp: Path) -> tuple[list[str], str]:
    return data(write(tmp / "notes.csv", b"")), "notes.csv: the file is empty (no examples)"


def csv_header_only(tmp: Path) -> tuple[list[str], str]:
    header = as_csv(records()).splitlines()[0]
    return data(write(tmp / "notes.csv", header + "\n")), "notes.csv: the file is empty (no examples)"


def csv_latin1(tmp: Path) -> tuple[list[str], str]:
    rows = records()
    rows[3][field("input")] = "Café " + rows[3][field("input")]
    text = as_csv(rows)
    line, column = column_of(text, "é")  # rows before it span several lines (the reports' line breaks)
    path = write(tmp / "notes.csv", text.encode("latin-1"))
    fix = "set task.data.encoding to the file's encoding (e.g. latin-1)"
    return data(path), f"notes.csv, row 4: not valid utf-8 (byte 0xe9 at line {line}, column {column}); {fix}"


def csv_too_many_fields(tmp: Path) -> tuple[list[str], str]:
    table = list(csv.reader(io.StringIO(as_csv(records()))))
    table[6].append("an extra cell")  # data row 6: the header is the table's row 0
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(table)
    path = write(tmp / "notes.csv", out.getvalue())
    return data(path), f"notes.csv, row 6: {len(table[0]) + 1} fields where the header has {len(table[0])}"


def csv_unclosed_quote(tmp: Path) -> tuple[list[str], str]:
    rows = records()
    path = write(tmp / "notes.csv", as_csv(rows) + '"a quote never closed,x\n')
    return data(path), f"notes.csv, row {len(rows) + 1}: a quoted cell is never closed"


def parquet_not_parquet(tmp: Path) -> tuple[list[str], str]:
    path = write(tmp / "notes.parquet", "\n".join(data_lines()))  # JSONL under a Parquet name
    return data(path), "notes.parquet: cannot be read as Parquet ("


def parquet_no_rows(tmp: Path) -> tuple[list[str], str]:
    pd.DataFrame(records()).iloc[:0].to_parquet(tmp / "notes.parquet")
    return data(tmp / "notes.parquet"), "notes.parquet: the file is empty (no examples)"


def datasets_no_rows(tmp: Path) -> tuple[list[str], str]:
    from datasets import Dataset

    Dataset.from_list(records()).select([]).save_to_disk(str(tmp / "notes"))
    return data(tmp / "notes"), "notes: the saved dataset is empty (no examples)"


def datasets_damaged(tmp: Path) -> tuple[list[str], str]:
    from datasets import Dataset

    Dataset.from_list(records()).save_to_disk(str(tmp / "notes"))
    for shard in (tmp / "notes").glob("*.arrow"):
        shard.write_text("not arrow")
    return data(tmp / "notes"), "notes: cannot be read as a dataset saved by save_to_disk ("


def gold_unknown_jsonl(tmp: Path) -> tuple[list[str], str]:
    lines = data_lines()
    record = json.loads(lines[3])
    record[field("gold_passages")] = [*record[field("gold_passages")], "protocol-nowhere"]
    lines[3] = json.dumps(record)
    path = write(tmp / "notes.jsonl", "\n".join(lines) + "\n")
    located = f"notes.jsonl, line 4 (example '{record[field('id')]}'), field '{field('gold_passages')}'"
    return data(path), f"{located}: unknown gold passage 'protocol-nowhere': not a document of {corpus_name()}"


def gold_unknown_csv(tmp: Path) -> tuple[list[str], str]:
    rows = records()
    rows[6][field("gold_passages")] = ["protocol-nowhere", "protocol-elsewhere"]
    path = write(tmp / "notes.csv", as_csv(rows))
    located = f"notes.csv, row 7 (example '{rows[6][field('id')]}'), field '{field('gold_passages')}'"
    unknown = "unknown gold passages 'protocol-nowhere', 'protocol-elsewhere'"
    return data(path), f"{located}: {unknown}: not documents of {corpus_name()}"


def gold_of_another_corpus(tmp: Path) -> tuple[list[str], str]:
    id_field = task_config()["corpus"]["id_field"]
    renamed = [json.loads(line) for line in corpus_lines() if line.strip()]
    for passage in renamed:
        passage[id_field] = f"v9/{passage[id_field]}"
    path = write(tmp / corpus_name(), "".join(json.dumps(p) + "\n" for p in renamed))
    with_gold = [(n, r) for n, r in enumerate(records(), start=1) if r[field("gold_passages")]]
    number, first = with_gold[0]
    located = f"notes.jsonl, line {number} (example '{first[field('id')]}')"
    others = f"{len(with_gold) - 1} more examples name documents it lacks"
    hint = "no example's gold passage is in it: check task.corpus.path and task.corpus.id_field"
    return corpus(path), f"{located}, field '{field('gold_passages')}': unknown gold passage " + (
        f"'{first[field('gold_passages')][0]}': not a document of {corpus_name()}; {others}; {hint}"
    )


def corpus_duplicate_id(tmp: Path) -> tuple[list[str], str]:
    lines = corpus_lines()
    again = json.loads(lines[1])
    again[task_config()["corpus"]["text_field"]] = "Another text under the same id."
    path = write(tmp / corpus_name(), "\n".join([*lines[:8], json.dumps(again), *lines[8:]]) + "\n")
    passage_id = again[task_config()["corpus"]["id_field"]]
    return corpus(path), f"{corpus_name()}, line 9, field 'id': duplicate id '{passage_id}' (first at line 2)"


def corpus_0_bytes(tmp: Path) -> tuple[list[str], str]:
    return corpus(write(tmp / corpus_name(), b"")), f"{corpus_name()}: the file is empty (no passages)"


def corpus_missing_text(tmp: Path) -> tuple[list[str], str]:
    lines = corpus_lines()
    text_field = task_config()["corpus"]["text_field"]
    passage = json.loads(lines[3])
    del passage[text_field]
    lines[3] = json.dumps(passage)
    path = write(tmp / corpus_name(), "\n".join(lines) + "\n")
    return corpus(path), f"{corpus_name()}, line 4, field '{text_field}': missing (present: "


def corpus_text_field_elsewhere(tmp: Path) -> tuple[list[str], str]:
    return ["task.corpus.text_field=body"], f"{corpus_name()}, line 1, field 'body': missing (present: "


CASES: dict[str, Build] = {
    "jsonl-latin1": jsonl_latin1,
    "jsonl-cp1252": jsonl_cp1252,
    "jsonl-utf16": jsonl_utf16,
    "jsonl-utf16-without-bom": jsonl_utf16_without_bom,
    "corpus-latin1": corpus_latin1,
    "jsonl-utf8-declared-ascii": jsonl_utf8_declared_ascii,
    "data-encoding-unknown": unknown_data_encoding,
    "corpus-encoding-not-a-text-encoding": unknown_corpus_encoding,
    "jsonl-0-bytes": jsonl_0_bytes,
    "jsonl-blank-lines-only": jsonl_blank_lines,
    "csv-0-bytes": csv_0_bytes,
    "csv-header-only": csv_header_only,
    "csv-latin1": csv_latin1,
    "csv-too-many-fields": csv_too_many_fields,
    "csv-quote-never-closed": csv_unclosed_quote,
    "parquet-not-parquet": parquet_not_parquet,
    "parquet-no-rows": parquet_no_rows,
    "datasets-no-rows": datasets_no_rows,
    "datasets-damaged": datasets_damaged,
    "gold-id-unknown-jsonl": gold_unknown_jsonl,
    "gold-ids-unknown-csv": gold_unknown_csv,
    "gold-ids-of-another-corpus": gold_of_another_corpus,
    "corpus-duplicate-id": corpus_duplicate_id,
    "corpus-0-bytes": corpus_0_bytes,
    "corpus-text-missing": corpus_missing_text,
    "corpus-text-field-absent": corpus_text_field_elsewhere,
}


@pytest.mark.parametrize("build", list(CASES.values()), ids=list(CASES))
def test_bad_data_is_one_located_line(build: Build, tmp_path: Path):
    overrides, message = build(tmp_path)
    assert_refused(attempt(tmp_path / "results", *overrides), message)


# --- what is accepted: byte-order marks, declared encodings, withdrawn documents --------------------------


def load(data_path: Path | None = None, corpus_path: Path | None = None, encoding: str = "utf-8") -> TaskData:
    """The smoke run's task with its data file (read in `encoding`) or its corpus file replaced."""
    task = task_config()
    data_section = {**task["data"], "path": data_path or task["data"]["path"], "encoding": encoding}
    corpus_section = {**task["corpus"], "path": corpus_path or task["corpus"]["path"]}
    return load_task(task["name"], data_section, corpus_section, task["limits"])


@pytest.mark.parametrize("where", ["jsonl", "csv", "corpus"])
def test_a_utf8_byte_order_mark_is_skipped_in_every_text_format(where: str, tmp_path: Path):
    text = as_csv(records()) if where == "csv" else "\n".join(corpus_lines() if where == "corpus" else data_lines())
    name = {"jsonl": "notes.jsonl", "csv": "notes.csv", "corpus": corpus_name()}[where]
    (tmp_path / "plain").mkdir()
    plain = write(tmp_path / "plain" / name, text)
    marked = write(tmp_path / name, codecs.BOM_UTF8 + text.encode("utf-8"))
    if where == "corpus":
        assert load(corpus_path=marked) == load(corpus_path=plain)
    else:
        assert load(marked) == load(plain)


@pytest.mark.parametrize(
    ("encoding", "text", "suffix"),
    [("latin-1", "Café ", "jsonl"), ("cp1252", "Seen \u2013 ", "jsonl"), ("latin-1", "Café ", "csv"),
     ("utf-16", "Café ", "jsonl")],
    ids=["latin1-jsonl", "cp1252-jsonl", "latin1-csv", "utf16-jsonl"],
)  # fmt: skip
def test_a_file_in_its_declared_encoding_reads_as_its_utf8_copy(encoding, text, suffix, tmp_path: Path):
    lines = data_lines()
    lines[2] = prefixed(lines[2], field("input"), text)
    content = as_csv([json.loads(line) for line in lines if line.strip()]) if suffix == "csv" else "\n".join(lines)
    declared = write(tmp_path / f"notes.{suffix}", content.encode(encoding))
    (tmp_path / "utf8").mkdir()
    utf8 = write(tmp_path / "utf8" / f"notes.{suffix}", content)
    task = load(declared, encoding=encoding)
    assert task == load(utf8)
    assert any(e.input.startswith(text) for examples in task.splits.values() for e in examples)


def test_withdrawn_documents_keep_their_gold_ids():
    """`task.corpus.exclude` takes documents out of the index; the examples citing them still load."""
    cfg = compose_config("+exp=withdrawal", "arm=update/rag_withdrawn")
    task = task_from_config(cfg.task)
    withdrawn = set(cfg.task.corpus.exclude)
    assert withdrawn and not withdrawn & {p.id for p in task.corpus}
    assert any(withdrawn & set(e.gold_passages) for examples in task.splits.values() for e in examples)


# --- python -m ragft.score: the predictions file --------------------------------------------------------


def predictions_of(tmp_path: Path, encode: Callable[[str], bytes], second: str) -> tuple[Path, list[str]]:
    """A predictions file for the smoke test split, its second output `second`, written as `encode` makes it."""
    test = task_from_config(compose_config("+debug=smoke").task).split("test")
    lines = [json.dumps({"id": e.id, "output": e.reference}) for e in test]
    lines[1] = json.dumps({"id": test[1].id, "output": "\0"}).replace("\\u0000", second)
    return write(tmp_path / "vendor.jsonl", encode("\n".join(lines) + "\n")), lines


def test_a_predictions_file_with_a_byte_order_mark_is_read(tmp_path: Path):
    from ragft.score import read_outputs

    task = task_from_config(compose_config("+debug=smoke").task)
    path, _ = predictions_of(tmp_path, lambda s: codecs.BOM_UTF8 + s.encode("utf-8"), "Café")
    outputs = read_outputs(path, task.split("test"), task.name)
    assert [p.example.id for p in outputs] == [e.id for e in task.split("test")]
    assert outputs[1].output == "Café"


def test_a_predictions_file_not_in_utf8_is_one_located_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from ragft.score import main

    path, lines = predictions_of(tmp_path, lambda s: s.encode("latin-1"), "Café")
    _, column = column_of(lines[1], "é")
    assert main(["+debug=smoke", f"predictions={path}", f"out={tmp_path / 'results' / 'vendor'}"]) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.endswith(
        f"vendor.jsonl, line 2: not valid utf-8 (byte 0xe9 at column {column}); save the file as UTF-8"
    )
    assert not (tmp_path / "results").exists()
