import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent.parent / "corpora" / "clinic"
FILES = ("notes.jsonl", "protocols_v1.jsonl", "protocols_v2.jsonl", "clinic_qa.jsonl", "general_qa.jsonl")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_generator_reproduces_the_committed_files_byte_for_byte(tmp_path):
    subprocess.run(
        [sys.executable, str(CORPUS / "generate.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), name


def test_a_different_seed_gives_a_different_corpus(tmp_path):
    subprocess.run(
        [sys.executable, str(CORPUS / "generate.py"), "--out", str(tmp_path), "--seed", "7"],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "notes.jsonl").read_bytes() != (CORPUS / "notes.jsonl").read_bytes()


def test_note_splits_have_the_promised_sizes():
    splits = Counter(r["split"] for r in read(CORPUS / "notes.jsonl"))
    assert sum(splits.values()) >= 300
    assert splits["test"] >= 60 and splits["validation"] > 0 and splits["train"] > 0


def test_every_gold_passage_exists_in_both_protocol_versions():
    for version in ("protocols_v1.jsonl", "protocols_v2.jsonl"):
        ids = {p["id"] for p in read(CORPUS / version)}
        for name in ("notes.jsonl", "clinic_qa.jsonl"):
            for record in read(CORPUS / name):
                assert set(record["gold_passages"]) <= ids


@pytest.mark.parametrize("field", ["drug", "dose", "follow_up"])
def test_report_facts_come_from_the_protocol_not_the_note(field):
    notes = read(CORPUS / "notes.jsonl")
    protocols = {p["id"]: p["text"] for p in read(CORPUS / "protocols_v1.jsonl")}
    for note in notes:
        value = note["fields"][field]
        assert value in note["report"]
        assert value in protocols[note["gold_passages"][0]]
        assert value not in note["note"], f"{note['id']}: the note gives away {field}"


def test_version_2_changes_some_facts_and_keeps_the_rest():
    qa = read(CORPUS / "clinic_qa.jsonl")
    changed = [q for q in qa if q["changed_in_v2"]]
    assert 0 < len(changed) < len(qa) / 2
    v2 = {p["id"]: p["text"] for p in read(CORPUS / "protocols_v2.jsonl")}
    for q in changed:
        assert q["answer_v2"] in v2[q["gold_passages"][0]]
        assert q["answer"] != q["answer_v2"]


def test_notes_vary_in_wording():
    notes = read(CORPUS / "notes.jsonl")
    openings = Counter(n["note"].split(" ")[0] for n in notes)
    assert len(openings) > 10
    assert len({n["note"] for n in notes}) == len(notes)
