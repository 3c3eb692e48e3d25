"""`python -m ragft.task check`: what a task holds and what a run on it would meet, without model work;
bad input is one located line. The expectations are counted from the files the check reads."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from ragft.task import main
from tests.conftest import ROOT, compose_config

SHARED = ROOT.parent / "shared" / "data"
WHOLE = ("+debug=smoke", "task.limits.train=null", "task.limits.test=null")  # tiny models' tokenizers, every example


def check(capsys: pytest.CaptureFixture[str], *overrides: str) -> tuple[int, str, str]:
    code = main(["check", *overrides])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_row(report: str, first_cell: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_shipped_task_is_described_split_by_split(capsys):
    from ragft.data.loading import task_from_config

    code, report, _ = check(capsys, "+debug=smoke")
    assert code == 0
    task = task_from_config(compose_config("+debug=smoke").task)
    for split, examples in task.splits.items():
        assert table_row(report, split)[1] == str(len(examples))
    assert table_row(report, "input (generator)")[1] == str(sum(len(e) for e in task.splits.values()))
    for context in ("zero_shot", "few_shot", "rag"):
        prompts, within = table_row(report, context)[1:3]
        assert prompts == within == str(len(task.split("test")))  # the shipped notes fit
        assert f"### {context}: the prompt of '{task.split('test')[0].id}'" in report
    assert "## leakage" in report and "| train_test |" in report
    assert report.rstrip().endswith("none found")


def test_an_input_over_the_budget_and_an_unused_split_are_problems(capsys, tmp_path, clinic):
    rows = [{**n, "split": "dev" if n["split"] == "validation" else n["split"]} for n in clinic.notes]
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, report, _ = check(capsys, "+debug=smoke", f"task.data.path={path}", "generator.max_context=140")
    assert code == 0
    problems = report.split("## problems")[1]
    dev = sum(r["split"] == "dev" for r in rows)
    assert f"split 'dev' ({dev} examples) is not one ragft uses" in problems and "no validation split" in problems
    over = int(table_row(report, "zero_shot")[1]) - int(table_row(report, "zero_shot")[2])
    assert over > 0 and f"{over} test inputs are over the prompt budget on their own" in problems


def test_a_command_other_than_check_is_one_line(capsys):
    assert main(["chekc", "task=medical_reports"]) == 2
    assert (
        capsys.readouterr().err
        == "ragft: error: command 'chekc': the one command is `check` (python -m ragft.task check task=<name>).\n"
    )


def test_bad_data_is_one_located_line(capsys, tmp_path):
    code, report, error = check(capsys, "+debug=smoke", f"task.data.path={tmp_path / 'missing.jsonl'}")
    assert (code, report, error.count("\n")) == (2, "", 1)
    assert error.startswith("ragft: error: config `task.data.path`")
    code, _, error = check(capsys, "+debug=smoke", "task.template.input_format='{nte}'")
    assert code == 2 and "field 'nte': missing, and task.template.input_format names it" in error


@pytest.mark.skipif(not (SHARED / "pubmedqa").is_dir(), reason=f"PubMedQA not found at {SHARED / 'pubmedqa'}")
def test_pubmedqa_as_shipped_maps_its_splits_and_gold_abstracts(capsys):
    records = [json.loads(line) for line in (SHARED / "pubmedqa" / "pubmedqa.jsonl").open(encoding="utf-8")]
    code, report, _ = check(capsys, *WHOLE, "task=pubmedqa", f"task.dir={SHARED / 'pubmedqa'}")
    assert code == 0
    counts = Counter(r["split"] for r in records)
    assert [table_row(report, s)[1] for s in ("train", "validation", "test")] == [
        str(counts[s]) for s in ("train", "dev", "test")
    ]
    assert "no gold passages" not in report and "is not one ragft uses" not in report
    rag_prompt = report.split("### rag: the prompt of")[1].split("```")[1]
    first_test = next(r for r in records if r["split"] == "test")
    assert first_test["contexts"][0][:80] in rag_prompt  # its gold abstract's first section


@pytest.mark.skipif(not (SHARED / "mts_dialog").is_dir(), reason=f"MTS-Dialog not found at {SHARED / 'mts_dialog'}")
def test_mts_dialog_as_shipped_with_a_section_name_in_its_prompt(capsys):
    records = [json.loads(line) for line in (SHARED / "mts_dialog" / "mts_dialog.jsonl").open(encoding="utf-8")]
    code, report, _ = check(capsys, *WHOLE, "task=mts_dialog", f"task.dir={SHARED / 'mts_dialog'}")
    assert code == 0
    counts = Counter(r["split"] for r in records)
    assert table_row(report, "test")[1] == str(counts["test1"])
    first_test = next(r for r in records if r["split"] == "test1")
    prompt = report.split("### zero_shot: the prompt of")[1]
    assert re.search(rf"Section: {re.escape(first_test['section_name'])}\s+Dialogue:", prompt)
