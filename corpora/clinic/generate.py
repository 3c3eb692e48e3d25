"""Generate the fictional Harrowgate clinic corpus, deterministically.

    python corpora/clinic/generate.py            # rewrite the committed files
    python corpora/clinic/generate.py --out DIR  # write elsewhere (tests compare the bytes)

Everything here is invented: the clinic, its drugs, doses, follow-up intervals and report format, so
no pretrained model can know them. A correct report needs the clinic's protocol, which a model can
only get from fine-tuning or retrieval. Only the standard library is used.

The notes test knowledge, not lookup. Every condition has cells (severity x age group) that no training
note falls in (`HELD_OUT`), so a follow-up interval, a referral or a dose of that condition never
appears in a training report; and the `CORPUS_ONLY` conditions are in the protocols alone, never in a
training note or report. Each validation and test note is labelled `knowledge: seen | unseen`,
computed from the training reports (`label_knowledge`), with `knowledge_source` saying why.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

SEED = 20261125
N_NOTES = {"train": 220, "validation": 40, "test": 60}
CHILD_AGE_LIMIT = 16
SEVERITIES = ("mild", "moderate", "severe")
AGE_GROUPS = ("child", "adult")  # child: under CHILD_AGE_LIMIT, the paediatric dose


@dataclass(frozen=True)
class Protocol:
    key: str
    condition: str
    specialty: str
    synonyms: tuple[str, ...]
    drug: str
    adult_dose: str
    child_dose: str
    follow_up: dict[str, str] = field(hash=False)
    symptoms: tuple[str, ...] = ()

    @property
    def passage_id(self) -> str:
        return f"protocol-{self.key}"


PROTOCOLS_V1 = (
    Protocol(
        "hypertension",
        "hypertension",
        "cardiology",
        ("high blood pressure", "raised BP"),
        "Cardivex",
        "10 mg once daily",
        "5 mg once daily",
        {"mild": "12 weeks", "moderate": "6 weeks", "severe": "2 weeks"},
        ("headaches", "a reading of 168/102", "occasional dizziness"),
    ),
    Protocol(
        "asthma",
        "asthma",
        "pulmonology",
        ("reactive airway disease", "wheezy chest"),
        "Bronquil",
        "2 puffs twice daily",
        "1 puff twice daily",
        {"mild": "10 weeks", "moderate": "4 weeks", "severe": "1 week"},
        ("night-time cough", "wheeze on exertion", "chest tightness"),
    ),
    Protocol(
        "diabetes",
        "type 2 diabetes",
        "endocrinology",
        ("adult-onset diabetes", "raised blood sugar"),
        "Glucarin",
        "500 mg twice daily",
        "250 mg twice daily",
        {"mild": "16 weeks", "moderate": "8 weeks", "severe": "3 weeks"},
        ("thirst", "frequent urination", "an HbA1c of 8.1%"),
    ),
    Protocol(
        "migraine",
        "migraine",
        "neurology",
        ("recurrent sick headache", "hemicrania"),
        "Neurolexa",
        "25 mg at onset",
        "10 mg at onset",
        {"mild": "14 weeks", "moderate": "5 weeks", "severe": "2 weeks"},
        ("throbbing one-sided headache", "light sensitivity", "visual aura"),
    ),
    Protocol(
        "eczema",
        "atopic eczema",
        "dermatology",
        ("atopic dermatitis", "itchy dry skin"),
        "Dermalux cream",
        "apply twice daily",
        "apply once daily",
        {"mild": "9 weeks", "moderate": "4 weeks", "severe": "10 days"},
        ("itchy patches", "dry skin on the elbows", "scratching at night"),
    ),
    Protocol(
        "gerd",
        "acid reflux",
        "gastroenterology",
        ("heartburn", "gastro-oesophageal reflux"),
        "Pepzolan",
        "40 mg before breakfast",
        "20 mg before breakfast",
        {"mild": "11 weeks", "moderate": "6 weeks", "severe": "2 weeks"},
        ("burning behind the breastbone", "sour taste", "pain after meals"),
    ),
    Protocol(
        "uti",
        "urinary tract infection",
        "urology",
        ("bladder infection", "cystitis"),
        "Uricept",
        "200 mg three times daily",
        "100 mg three times daily",
        {"mild": "3 weeks", "moderate": "2 weeks", "severe": "4 days"},
        ("burning on urination", "frequency", "lower abdominal pain"),
    ),
    Protocol(
        "otitis",
        "otitis media",
        "ENT",
        ("middle ear infection", "ear infection"),
        "Otaclin",
        "500 mg twice daily",
        "250 mg twice daily",
        {"mild": "4 weeks", "moderate": "2 weeks", "severe": "5 days"},
        ("ear pain", "muffled hearing", "a bulging eardrum"),
    ),
    Protocol(
        "depression",
        "depression",
        "psychiatry",
        ("low mood disorder", "depressive illness"),
        "Seralift",
        "50 mg each morning",
        "25 mg each morning",
        {"mild": "8 weeks", "moderate": "3 weeks", "severe": "1 week"},
        ("poor sleep", "loss of interest", "low energy"),
    ),
    Protocol(
        "osteoarthritis",
        "osteoarthritis",
        "rheumatology",
        ("wear-and-tear arthritis", "degenerative joint disease"),
        "Artheon",
        "400 mg three times daily",
        "200 mg three times daily",
        {"mild": "20 weeks", "moderate": "7 weeks", "severe": "3 weeks"},
        ("knee stiffness", "joint pain worse in the evening", "crepitus"),
    ),
    Protocol(
        "anaemia",
        "iron deficiency anaemia",
        "haematology",
        ("low iron", "iron-poor blood"),
        "Ferrovin",
        "65 mg once daily",
        "30 mg once daily",
        {"mild": "10 weeks", "moderate": "5 weeks", "severe": "1 week"},
        ("tiredness", "pale conjunctivae", "a haemoglobin of 9.8"),
    ),
    Protocol(
        "conjunctivitis",
        "conjunctivitis",
        "ophthalmology",
        ("pink eye", "red eye infection"),
        "Optiflox drops",
        "1 drop four times daily",
        "1 drop twice daily",
        {"mild": "3 weeks", "moderate": "10 days", "severe": "3 days"},
        ("a red eye", "sticky discharge", "gritty sensation"),
    ),
    # Conditions whose protocol is in the corpus only (CORPUS_ONLY): no training note or report has them.
    Protocol(
        "rhinitis",
        "allergic rhinitis",
        "allergology",
        ("hay fever", "seasonal allergy"),
        "Rhinastel spray",
        "2 sprays in each nostril daily",
        "1 spray in each nostril daily",
        {"mild": "13 weeks", "moderate": "7 weeks", "severe": "9 days"},
        ("sneezing fits", "a blocked nose", "itchy watery eyes"),
    ),
    Protocol(
        "sinusitis",
        "acute sinusitis",
        "ENT",
        ("sinus infection", "rhinosinusitis"),
        "Sinuvane",
        "150 mg twice daily",
        "75 mg twice daily",
        {"mild": "5 weeks", "moderate": "12 days", "severe": "6 days"},
        ("facial pressure", "a thick nasal discharge", "pain over the cheekbones"),
    ),
    Protocol(
        "psoriasis",
        "plaque psoriasis",
        "dermatology",
        ("psoriasis vulgaris", "scaly skin plaques"),
        "Psorelan ointment",
        "apply every evening",
        "apply every second evening",
        {"mild": "18 weeks", "moderate": "8 weeks", "severe": "2 weeks"},
        ("silvery scales on the knees", "itchy patches on the scalp", "pitted nails"),
    ),
)

# The knowledge a test note may need that no training report shows. Each condition of the formulary
# loses one axis value in training: a severity (its follow-up interval, and for severe its referral,
# never appear in that condition's training reports) or an age group (its dose never appears).
HELD_OUT = {
    "hypertension": ("severity", "severe"),
    "gerd": ("severity", "severe"),
    "diabetes": ("severity", "mild"),
    "otitis": ("severity", "mild"),
    "eczema": ("severity", "moderate"),
    "osteoarthritis": ("severity", "moderate"),
    "asthma": ("age_group", "child"),
    "migraine": ("age_group", "child"),
    "depression": ("age_group", "child"),
    "conjunctivitis": ("age_group", "child"),
    "uti": ("age_group", "adult"),
    "anaemia": ("age_group", "adult"),
}
CORPUS_ONLY = ("rhinitis", "sinusitis", "psoriasis")  # in the protocols only: no note of the train split, no QA
# Validation and test notes come in blocks with this mix (each block shuffled), so that the first n notes
# of a split, which a run with `limits` takes, hold every kind in about these shares.
EVAL_BLOCK = ("seen_cell", "seen_cell", "held_out_cell", "corpus_only_condition")
PROTOCOL_FIELDS = ("drug", "dose", "follow_up", "referral")  # the facts only the protocol gives
MAX_DRAWS = 1000  # attempts at a note whose text and report are new (see make_note)

# Version 2 of the protocols: the clinic changed these facts.
V2_CHANGES = {
    "hypertension": {"drug": "Vasoren", "adult_dose": "20 mg once daily", "child_dose": "10 mg once daily"},
    "asthma": {"follow_up": {"mild": "8 weeks", "moderate": "3 weeks", "severe": "5 days"}},
    "gerd": {"adult_dose": "30 mg before breakfast", "child_dose": "15 mg before breakfast"},
    "uti": {"drug": "Cystamin", "adult_dose": "100 mg twice daily", "child_dose": "50 mg twice daily"},
}

REPORT_FORMAT_TEXT = (
    "Harrowgate clinic patient report format. Every report has exactly five lines in this order: "
    "PATIENT (age in years and sex), DIAGNOSIS (the clinic's condition name and severity), "
    "TREATMENT (formulary drug and dose), FOLLOW-UP (interval set by the condition's protocol) and "
    "REFERRAL (the specialty clinic for severe cases, otherwise none). Patients under 16 receive the "
    "paediatric dose."
)

GENERAL_QA = (
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the capital of Spain?", "Madrid"),
    ("What is the capital of Germany?", "Berlin"),
    ("What is the capital of Canada?", "Ottawa"),
    ("How many days are in a week?", "seven"),
    ("How many legs does a spider have?", "eight"),
    ("What planet is known as the Red Planet?", "Mars"),
    ("What is the largest ocean on Earth?", "Pacific"),
    ("What gas do plants absorb from the air?", "carbon dioxide"),
    ("What is frozen water called?", "ice"),
    ("Which organ pumps blood through the body?", "heart"),
    ("What is the chemical symbol for gold?", "Au"),
    ("What is the chemical symbol for water?", "H2O"),
    ("How many continents are there?", "seven"),
    ("What colour is the sky on a clear day?", "blue"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("How many hours are in a day?", "24"),
    ("What is the boiling point of water in Celsius?", "100"),
    ("Which animal is known as the king of the jungle?", "lion"),
    ("What do bees make?", "honey"),
    ("What is the opposite of hot?", "cold"),
    ("How many minutes are in an hour?", "60"),
    ("What is the tallest animal?", "giraffe"),
    ("Which metal is liquid at room temperature?", "mercury"),
    ("What is the currency of Japan?", "yen"),
    ("Which bone protects the brain?", "skull"),
    ("What is the main language of Brazil?", "Portuguese"),
    ("What shape has three sides?", "triangle"),
    ("How many sides does a square have?", "four"),
    ("What is the first month of the year?", "January"),
    ("Which star is closest to Earth?", "the Sun"),
    ("What is the capital of Egypt?", "Cairo"),
    ("What is the largest desert in the world?", "Antarctica"),
    ("Which vitamin does sunlight help the body make?", "vitamin D"),
    ("What is the freezing point of water in Celsius?", "0"),
    ("What instrument measures temperature?", "thermometer"),
    ("How many teeth does an adult human usually have?", "32"),
)


def apply_changes(protocol: Protocol, changes: dict) -> Protocol:
    return replace(protocol, **changes)


PROTOCOLS_V2 = tuple(apply_changes(p, V2_CHANGES.get(p.key, {})) for p in PROTOCOLS_V1)


def protocol_text(p: Protocol, version: int) -> str:
    fu = p.follow_up
    return (
        f"Harrowgate clinic protocol (version {version}): {p.condition}, also called "
        f"{' or '.join(p.synonyms)}. Specialty: {p.specialty}. Formulary treatment: {p.drug}. "
        f"Adult dose: {p.drug} {p.adult_dose}. Patients under {CHILD_AGE_LIMIT}: {p.drug} {p.child_dose}. "
        f"Follow-up: mild {fu['mild']}, moderate {fu['moderate']}, severe {fu['severe']}. "
        f"Severe cases are referred to {p.specialty}; otherwise no referral."
    )


def protocol_records(protocols: tuple[Protocol, ...], version: int) -> list[dict]:
    records = [
        {
            "id": p.passage_id,
            "title": p.condition,
            "specialty": p.specialty,
            "text": protocol_text(p, version),
            "version": version,
        }
        for p in protocols
    ]
    records.append(
        {
            "id": "protocol-report-format",
            "title": "report format",
            "specialty": "all",
            "text": REPORT_FORMAT_TEXT,
            "version": version,
        }
    )
    return records


# --- doctors' notes -------------------------------------------------------------------------------

SEVERITY_WORDS = {
    "mild": ("mild", "slight", "early", "low-grade"),
    "moderate": ("moderate", "moderately severe", "intermediate", "fairly marked"),
    "severe": ("severe", "marked", "serious", "advanced"),
}
SEX_WORDS = {
    ("male", False): ("man", "gentleman", "male patient"),
    ("female", False): ("woman", "lady", "female patient"),
    ("male", True): ("boy", "male child", "young lad"),
    ("female", True): ("girl", "female child", "young girl"),
}
OPENINGS = (
    "{age}-year-old {sex_word} seen today.",
    "Seen in clinic: {sex_word}, aged {age}.",
    "Pt is a {age} yo {sex_word}.",
    "Consultation for a {sex_word} of {age} years.",
    "{sex_word_cap}, {age} years old, attends with family.",
)
COMPLAINTS = (
    "Reports {s1} and {s2} for some weeks.",
    "Complains of {s1}; also mentions {s2}.",
    "Presenting complaint: {s1}, with {s2}.",
    "History of {s1} and, more recently, {s2}.",
)
ASSESSMENTS = (
    "Impression: {sev} {cond}.",
    "Findings consistent with {sev} {cond}.",
    "Assessment - {cond}, {sev}.",
    "Working diagnosis is {cond}, judged {sev}.",
    "I think this is {sev} {cond}.",
)
EXTRAS = (
    "No known drug allergies.",
    "Non-smoker.",
    "BMI 27.",
    "Lives alone, independent.",
    "Allergic to penicillin.",
    "Drinks alcohol occasionally.",
    "Temperature 37.1 C.",
    "Mother present.",
    "Previous appendicectomy.",
    "Vaccinations up to date.",
)
PLANS = ("Plan per clinic protocol.", "Treat as per formulary.", "Start standard treatment.", "Please write up report.")


def report_fields(p: Protocol, age: int, sex: str, severity: str) -> dict:
    child = age < CHILD_AGE_LIMIT
    return {
        "age": str(age),
        "sex": sex,
        "diagnosis": p.condition,
        "severity": severity,
        "drug": p.drug,
        "dose": p.child_dose if child else p.adult_dose,
        "follow_up": p.follow_up[severity],
        "referral": p.specialty if severity == "severe" else "none",
    }


def render_report(f: dict) -> str:
    return (
        f"PATIENT: {f['age']} y, {f['sex']}\n"
        f"DIAGNOSIS: {f['diagnosis']}, {f['severity']}\n"
        f"TREATMENT: {f['drug']} {f['dose']}\n"
        f"FOLLOW-UP: {f['follow_up']}\n"
        f"REFERRAL: {f['referral']}"
    )


def render_note(rng: random.Random, p: Protocol, age: int, sex: str, severity: str) -> str:
    sex_word = rng.choice(SEX_WORDS[(sex, age < CHILD_AGE_LIMIT)])
    condition_word = rng.choice((p.condition, *p.synonyms))
    s1, s2 = rng.sample(p.symptoms, 2)
    parts = [
        rng.choice(OPENINGS).format(age=age, sex_word=sex_word, sex_word_cap=sex_word.capitalize()),
        rng.choice(COMPLAINTS).format(s1=s1, s2=s2),
        rng.choice(EXTRAS),
        rng.choice(ASSESSMENTS).format(sev=rng.choice(SEVERITY_WORDS[severity]), cond=condition_word),
        rng.choice(PLANS),
    ]
    return " ".join(parts)


@dataclass(frozen=True)
class Cell:
    """Where a note falls: its condition, severity and age group, which fix its protocol facts."""

    protocol: Protocol
    severity: str
    age_group: str

    @property
    def kind(self) -> str:
        """`corpus_only_condition`, `held_out_cell` (never in the train split) or `seen_cell`."""
        if self.protocol.key in CORPUS_ONLY:
            return "corpus_only_condition"
        axis, value = HELD_OUT.get(self.protocol.key, ("", ""))
        return "held_out_cell" if axis and getattr(self, axis) == value else "seen_cell"


def cells_of(kind: str) -> list[Cell]:
    return [
        cell
        for p in PROTOCOLS_V1
        for severity in SEVERITIES
        for age_group in AGE_GROUPS
        if (cell := Cell(p, severity, age_group)).kind == kind
    ]


def draw(rng: random.Random, groups: list[list[Cell]], n: int) -> list[Cell]:
    """n cells drawn in passes: a pass visits every group once, in a shuffled order, and takes one of its
    cells, so no group is drawn twice before every group has been drawn once."""
    drawn: list[Cell] = []
    while len(drawn) < n:
        order = list(groups)
        rng.shuffle(order)
        drawn += [rng.choice(group) for group in order]
    return drawn[:n]


def by_condition(cells: list[Cell]) -> list[list[Cell]]:
    keys = dict.fromkeys(c.protocol.key for c in cells)
    return [[c for c in cells if c.protocol.key == key] for key in keys]


def split_cells(rng: random.Random, split: str, n: int) -> list[Cell]:
    """Train: passes over every seen cell (its first pass covers them all). Validation and test: blocks
    of EVAL_BLOCK's mix; each kind's cells drawn condition by condition, so every condition appears."""
    if split == "train":
        return draw(rng, [[cell] for cell in cells_of("seen_cell")], n)
    kinds: list[str] = []
    while len(kinds) < n:
        block = list(EVAL_BLOCK)
        rng.shuffle(block)
        kinds += block
    kinds = kinds[:n]
    drawn = {kind: iter(draw(rng, by_condition(cells_of(kind)), kinds.count(kind))) for kind in EVAL_BLOCK}
    return [next(drawn[kind]) for kind in kinds]


def make_note(rng: random.Random, cell: Cell, taken_notes: set[str], taken_reports: set[str]) -> tuple[dict, str]:
    """A note in `cell` whose text is new and whose report is none of `taken_reports`: the age and sex are
    drawn again until both hold (so no evaluation report is a training report, byte for byte)."""
    p, severity = cell.protocol, cell.severity
    for _ in range(MAX_DRAWS):
        age = rng.randint(3, CHILD_AGE_LIMIT - 1) if cell.age_group == "child" else rng.randint(18, 89)
        sex = rng.choice(("male", "female"))
        fields = report_fields(p, age, sex, severity)
        note = render_note(rng, p, age, sex, severity)
        if note not in taken_notes and render_report(fields) not in taken_reports:
            return fields, note
    raise RuntimeError(f"no new note in {cell} after {MAX_DRAWS} draws: the cell has too few ages and sexes")


def note_records(rng: random.Random) -> list[dict]:
    records: list[dict] = []
    taken_notes: set[str] = set()
    for split, n in N_NOTES.items():
        train_reports = {r["report"] for r in records if r["split"] == "train"}
        for i, cell in enumerate(split_cells(rng, split, n)):
            fields, note = make_note(rng, cell, taken_notes, train_reports)
            taken_notes.add(note)
            records.append(
                {
                    "id": f"note-{split}-{i:03d}",
                    "split": split,
                    "specialty": cell.protocol.specialty,
                    "note": note,
                    "report": render_report(fields),
                    "fields": fields,
                    "gold_passages": [cell.protocol.passage_id],
                    "designed": cell.kind,
                }
            )
    label_knowledge(records)
    for record in records:
        if record.pop("designed") != record["knowledge_source"]:
            raise RuntimeError(f"{record['id']}: its cell's kind and its computed knowledge differ")
    return records


def fact_triples(fields: dict) -> set[tuple[str, str, str]]:
    """The report's protocol facts as (condition, field, value)."""
    return {(fields["diagnosis"], name, fields[name]) for name in PROTOCOL_FIELDS}


def label_knowledge(records: list[dict]) -> None:
    """Set `knowledge` and `knowledge_source` on every note, from the training reports alone: a note is
    `unseen` when one of its protocol facts, as (condition, field, value), is in no training report;
    its source is `corpus_only_condition` when no training report has its condition at all,
    `held_out_cell` for the other unseen notes and `seen_cell` for the seen ones."""
    train = [r["fields"] for r in records if r["split"] == "train"]
    known = set().union(*(fact_triples(f) for f in train))
    conditions = {f["diagnosis"] for f in train}
    for record in records:
        unseen = not fact_triples(record["fields"]) <= known
        record["knowledge"] = "unseen" if unseen else "seen"
        record["knowledge_source"] = (
            "corpus_only_condition"
            if record["fields"]["diagnosis"] not in conditions
            else "held_out_cell"
            if unseen
            else "seen_cell"
        )


# --- questions over the protocols -----------------------------------------------------------------

QUESTIONS = {
    "drug": (
        "Which drug does the Harrowgate clinic prescribe for {c}?",
        "What is the formulary treatment for {c} at the clinic?",
    ),
    "adult_dose": ("What is the adult dose for {c} at the clinic?", "How much {d} does an adult with {c} take?"),
    "child_dose": ("What dose of {d} does a child under 16 with {c} receive?", "What is the paediatric dose for {c}?"),
    "follow_up_mild": ("When is follow-up after mild {c}?",),
    "follow_up_moderate": ("When is follow-up after moderate {c}?",),
    "follow_up_severe": ("How soon is follow-up for severe {c}?",),
    "specialty": ("Which specialty are severe cases of {c} referred to?",),
}


def fact_value(p: Protocol, fact: str) -> str:
    if fact.startswith("follow_up_"):
        return p.follow_up[fact.removeprefix("follow_up_")]
    return getattr(p, fact)


def qa_records(rng: random.Random) -> list[dict]:
    records = []
    for p1, p2 in zip(PROTOCOLS_V1, PROTOCOLS_V2, strict=True):
        if p1.key in CORPUS_ONLY:  # their protocol is the only place their facts are, for every task
            continue
        for fact, phrasings in QUESTIONS.items():
            for j, phrasing in enumerate(phrasings):
                condition = rng.choice((p1.condition, *p1.synonyms))
                answer_v1, answer_v2 = fact_value(p1, fact), fact_value(p2, fact)
                records.append(
                    {
                        "id": f"qa-{p1.key}-{fact}-{j}",
                        "question": phrasing.format(c=condition, d=p1.drug),
                        "answer": answer_v1,
                        "answer_v2": answer_v2,
                        "changed_in_v2": answer_v1 != answer_v2,
                        "fact": fact,
                        "specialty": p1.specialty,
                        "gold_passages": [p1.passage_id],
                    }
                )
    rng.shuffle(records)
    n_test, n_val = len(records) // 4, len(records) // 8
    for i, record in enumerate(records):
        record["split"] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return sorted(records, key=lambda r: (r["split"], r["id"]))


def general_records() -> list[dict]:
    return [
        {"id": f"general-{i:03d}", "split": "test", "question": q, "answer": a} for i, (q, a) in enumerate(GENERAL_QA)
    ]


def write_jsonl(path: Path, records: list[dict]) -> None:
    lines = (json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate(out: Path, seed: int = SEED) -> dict[str, int]:
    """Write every corpus file into `out`; return the number of records per file."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "notes.jsonl": note_records(rng),
        "protocols_v1.jsonl": protocol_records(PROTOCOLS_V1, 1),
        "protocols_v2.jsonl": protocol_records(PROTOCOLS_V2, 2),
        "clinic_qa.jsonl": qa_records(rng),
        "general_qa.jsonl": general_records(),
    }
    for name, records in files.items():
        write_jsonl(out / name, records)
    return {name: len(records) for name, records in files.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="output folder")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for name, n in generate(args.out, args.seed).items():
        print(f"{args.out / name}: {n} records")


if __name__ == "__main__":
    main()
