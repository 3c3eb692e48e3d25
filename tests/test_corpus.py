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


# --- knowledge the training reports do not show -------------------------------------------------------

PASSAGE = re.compile(
    r"Specialty: (?P<specialty>[^.]+)\. Formulary treatment: (?P<drug>[^.]+)\. "
    r"Adult dose: (?P=drug) (?P<adult>[^.]+)\. Patients under (?P<limit>\d+): (?P=drug) (?P<child>[^.]+)\. "
    r"Follow-up: mild (?P<mild>[^,]+), moderate (?P<moderate>[^,]+), severe (?P<severe>[^.]+)\."
)


def protocol_facts(passage: str) -> dict[str, str]:
    match = PASSAGE.search(passage)
    assert match, passage
    return match.groupdict()


def cell(note: dict, child_limit: int) -> tuple[str, str, str]:
    """(condition, severity, age group) of a note, from its facts."""
    f = note["fields"]
    return f["diagnosis"], f["severity"], "child" if int(f["age"]) < child_limit else "adult"


def test_every_notes_facts_are_its_gold_protocols_referral_and_age_group_dose_included(clinic):
    for note in clinic.notes:
        protocol = protocol_facts(clinic.protocols[1][note["gold_passages"][0]])
        f = note["fields"]
        child = int(f["age"]) < int(protocol["limit"])
        assert f["drug"] == protocol["drug"], note["id"]
        assert f["dose"] == protocol["child" if child else "adult"], note["id"]
        assert f["follow_up"] == protocol[f["severity"]], note["id"]
        assert f["referral"] == (protocol["specialty"] if f["severity"] == "severe" else "none"), note["id"]
        assert note["specialty"] == protocol["specialty"], note["id"]


def test_knowledge_labels_are_recomputed_from_the_training_reports(generator, clinic):
    """unseen: a protocol fact, as (condition, field, value), that no training report holds; the source
    says whether the condition is missing from training altogether or only that cell of it."""

    def triples(note: dict) -> set[tuple[str, str, str]]:
        return {(note["fields"]["diagnosis"], name, note["fields"][name]) for name in generator.PROTOCOL_FIELDS}

    train = clinic.split(clinic.notes, "train")
    known = set().union(*map(triples, train))
    conditions = {n["fields"]["diagnosis"] for n in train}
    for note in clinic.notes:
        unseen = not triples(note) <= known
        source = "seen_cell" if not unseen else "held_out_cell" if note["fields"]["diagnosis"] in conditions else None
        assert note["knowledge"] == ("unseen" if unseen else "seen"), note["id"]
        assert note["knowledge_source"] == (source or "corpus_only_condition"), note["id"]


@pytest.mark.parametrize("split", ["validation", "test"])
def test_evaluation_splits_mix_seen_and_both_kinds_of_unseen_in_every_block(generator, clinic, split):
    """Blocks of the generator's mix, in order: the first n notes a run with `limits` takes hold every kind."""
    notes = clinic.split(clinic.notes, split)
    block = len(generator.EVAL_BLOCK)
    for start in range(0, len(notes) - block + 1, block):
        kinds = Counter(n["knowledge_source"] for n in notes[start : start + block])
        assert kinds == Counter(generator.EVAL_BLOCK), (split, start)
    unseen = {n["knowledge_source"] for n in notes if n["knowledge"] == "unseen"}
    assert unseen == {"held_out_cell", "corpus_only_condition"}
    assert {n["knowledge"] for n in clinic.split(clinic.notes, "train")} == {"seen"}


def test_corpus_only_conditions_are_in_the_protocols_and_in_no_training_note_report_or_question(generator, clinic):
    corpus_only = [p for p in generator.PROTOCOLS_V1 if p.key in generator.CORPUS_ONLY]
    assert corpus_only
    train = clinic.split(clinic.notes, "train")
    for p in corpus_only:
        for version, passages in clinic.protocols.items():
            assert p.passage_id in passages, version
        names = (p.condition, *p.synonyms, p.drug)
        for note in train:
            assert not any(name in note["note"] or name in note["report"] for name in names), (p.key, note["id"])
        assert any(n["gold_passages"] == [p.passage_id] for n in clinic.split(clinic.notes, "test")), p.key
        assert not any(q["gold_passages"] == [p.passage_id] for q in clinic.clinic_qa), p.key


def test_held_out_cells_are_absent_from_train(generator, clinic):
    train_cells = {cell(n, generator.CHILD_AGE_LIMIT) for n in clinic.split(clinic.notes, "train")}
    conditions = {p.key: p.condition for p in generator.PROTOCOLS_V1}
    for key, (axis, value) in generator.HELD_OUT.items():
        position = {"severity": 1, "age_group": 2}[axis]
        assert not any(c[0] == conditions[key] and c[position] == value for c in train_cells), key
    for note in clinic.notes:
        if note["knowledge_source"] == "held_out_cell":
            assert cell(note, generator.CHILD_AGE_LIMIT) not in train_cells, note["id"]
    evaluated = {cell(n, generator.CHILD_AGE_LIMIT) for n in clinic.notes if n["knowledge_source"] == "held_out_cell"}
    assert {c[0] for c in evaluated} == {conditions[key] for key in generator.HELD_OUT}  # every condition tested


def test_the_first_pass_over_train_covers_every_seen_cell_and_no_evaluation_report_is_a_training_one(generator, clinic):
    """A run that trains on the first n notes (n at least the number of seen cells) sees every seen fact,
    so the seen/unseen labels hold for it too."""
    train = clinic.split(clinic.notes, "train")
    cells = [cell(n, generator.CHILD_AGE_LIMIT) for n in train]
    assert set(cells[: len(set(cells))]) == set(cells)
    train_reports = {n["report"] for n in train}
    assert not [n["id"] for n in clinic.notes if n["split"] != "train" and n["report"] in train_reports]
