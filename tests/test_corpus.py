"""The shipped clinic corpus: reproducible from its seeded generator, and holding what the experiments
rely on. Expectations come from the generator's own settings and the committed files, not from counts
copied here."""

import importlib.util
import re
import sys
from collections import Counter
from types import ModuleType

import pytest

from tests.conftest import CLINIC


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """corpora/clinic/generate.py, imported (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("clinic_generator", CLINIC / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_the_committed_files_byte_for_byte(generator, tmp_path):
    written = generator.generate(tmp_path)
    assert written  # every file it writes is committed, unchanged
    for name in written:
        assert (tmp_path / name).read_bytes() == (CLINIC / name).read_bytes(), name


def test_a_different_seed_gives_a_different_corpus(generator, tmp_path):
    generator.generate(tmp_path, seed=generator.SEED + 1)
    assert (tmp_path / "notes.jsonl").read_bytes() != (CLINIC / "notes.jsonl").read_bytes()


def test_note_splits_have_the_sizes_the_generator_promises(generator, clinic):
    assert Counter(n["split"] for n in clinic.notes) == generator.N_NOTES
    assert len({n["id"] for n in clinic.notes}) == len(clinic.notes)


def test_every_gold_passage_exists_in_every_protocol_version(clinic):
    assert len(clinic.protocols) >= 2  # an update experiment needs a before and an after
    for version, passages in clinic.protocols.items():
        for record in clinic.notes + clinic.clinic_qa:
            assert set(record["gold_passages"]) <= set(passages), (version, record["id"])


@pytest.mark.parametrize("field", ["drug", "dose", "follow_up"])
def test_report_facts_come_from_the_protocol_not_the_note(clinic, field):
    protocols = clinic.protocols[1]
    for note in clinic.notes:
        value = note["fields"][field]
        assert value in note["report"]
        assert value in protocols[note["gold_passages"][0]]
        assert value not in note["note"], f"{note['id']}: the note gives away {field}"


def test_version_2_changes_exactly_the_flagged_facts(clinic):
    """A question is flagged changed exactly where its v2 answer differs, each answer stands in its own
    version's gold passage, and an update changes some facts but keeps most."""
    v1, v2 = clinic.protocols[1], clinic.protocols[2]
    for q in clinic.clinic_qa:
        gold = q["gold_passages"][0]
        assert q["changed_in_v2"] == (q["answer"] != q["answer_v2"]), q["id"]
        assert q["answer"] in v1[gold] and q["answer_v2"] in v2[gold], q["id"]
        if q["changed_in_v2"]:
            assert v1[gold] != v2[gold], q["id"]
    changed = sum(q["changed_in_v2"] for q in clinic.clinic_qa)
    assert 0 < changed < len(clinic.clinic_qa) / 2


def test_the_test_split_holds_changed_and_unchanged_facts(clinic):
    """The knowledge-update report breaks its scores down by changed and unchanged facts: the test split
    must hold questions of both kinds."""
    test = clinic.split(clinic.clinic_qa, "test")
    assert {q["changed_in_v2"] for q in test} == {True, False}


def phrasing(template: str) -> re.Pattern:
    """A generator's sentence template as a pattern: each {placeholder} stands for some words."""
    parts = re.split(r"\{\w+\}", template)
    return re.compile(r"[\w -]+?".join(re.escape(part) for part in parts))


@pytest.mark.parametrize("templates", ["OPENINGS", "COMPLAINTS", "ASSESSMENTS"])
def test_notes_use_every_phrasing_and_none_repeats(generator, clinic, templates):
    for template in getattr(generator, templates):
        assert any(phrasing(template).search(n["note"]) for n in clinic.notes), template
    assert len({n["note"] for n in clinic.notes}) == len(clinic.notes)
