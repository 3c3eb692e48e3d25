"""The commands as a user types them, in subprocesses: a Hydra sweep with its report callback, exit
codes, a failing arm among others, a user's own task from their own config folder, the report and
retrieval commands. Marked `integration` (run with `pytest -m integration`)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from ragft.record.run import read_record, run_dirs
from tests.conftest import ragft_command as ragft

pytestmark = pytest.mark.integration

ARMS = ["majority", "zero_shot", "few_shot", "rag", "oracle_rag", "lora", "lora_rag"]


def arms(exp_dir: Path) -> list[str]:
    return sorted(read_record(d).identity.arm for d in run_dirs(exp_dir))


def test_a_failing_arm_does_not_stop_the_sweep_which_fails_loudly(tmp_path):
    """few_shot asks for k=2 demonstrations of a 1-example train split: that arm alone is invalid. The
    others run, the sweep's report covers them, and the command exits non-zero naming the setting."""
    result = ragft(
        "ragft.run", "+exp=medical_reports", "+debug=smoke", f"paths.results={tmp_path}", "task.limits.train=1",
        expect=None,
    )  # fmt: skip
    assert "config `context.builder.k`: asks for 2 examples but the train split has 1" in result.stderr
    assert arms(tmp_path / "medical_reports") == sorted(set(ARMS) - {"few_shot"})
    assert "| lora_rag |" in (tmp_path / "medical_reports" / "report.md").read_text()


def test_the_report_command_rebuilds_the_report_and_refuses_an_unknown_baseline(tmp_path):
    ragft("ragft.run", "-m", "+debug=smoke", "arm=zero_shot,rag", "exp_name=two", f"paths.results={tmp_path}")
    exp_dir = tmp_path / "two"
    (exp_dir / "report.md").unlink()
    result = ragft("ragft.report", str(exp_dir), "--baseline", "rag")
    assert "report.md" in result.stdout
    assert "### Against the baseline (`rag`)" in (exp_dir / "report.md").read_text()
    unknown = ragft("ragft.report", str(exp_dir), "--baseline", "nope", expect=2)
    assert "baseline 'nope' is not one of the runs" in unknown.stderr


def write_own_task(folder: Path) -> Path:
    """A user's task as the README describes it: JSONL notes and guidelines, one YAML file of their own."""
    wards = ["cardiology", "neurology"]
    with (folder / "letters.jsonl").open("w") as f:
        for i in range(16):
            note = f"Patient {i} seen on {wards[i % 2]} with chest pain of grade {i % 3}. Plan: rest and review."
            letter = f"Dear colleague, patient {i} has grade {i % 3} chest pain and should rest."
            split = "test" if i < 4 else "train"
            f.write(json.dumps({"id": f"n{i}", "notes": note, "letter": letter, "ward": wards[i % 2], "split": split}))
            f.write("\n")
    with (folder / "guidelines.jsonl").open("w") as f:
        for i in range(5):
            f.write(json.dumps({"id": f"g{i}", "text": f"Chest pain of grade {i} needs {i + 1} days of rest."}) + "\n")
    conf = folder / "conf"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "discharge_letters.yaml").write_text(
        f"""name: discharge_letters
data:
  path: {folder / "letters.jsonl"}
  fields: {{id: id, input: notes, reference: letter, split: split, category: ward,
           gold_passages: null, facts: null}}
corpus: {{path: {folder / "guidelines.jsonl"}, id_field: id, text_field: text}}
template: {{system: You write discharge letters., instruction: Write the letter., input_format: "Notes: {{input}}"}}
generation: {{max_new_tokens: 16}}
metrics: {{rouge_l: {{}}, chrf: {{}}, groundedness: {{}}}}
"""
    )
    return conf


def test_a_users_own_task_runs_from_its_config_alone(tmp_path):
    conf = write_own_task(tmp_path)
    ragft(
        "ragft.run", "-m", "+debug=smoke", "task=discharge_letters", "arm=zero_shot,rag", "exp_name=own",
        f"hydra.searchpath=[file://{conf}]", f"paths.results={tmp_path / 'results'}",
    )  # fmt: skip
    exp_dir = tmp_path / "results" / "own"
    assert arms(exp_dir) == ["rag", "zero_shot"]
    table = pd.read_csv(exp_dir / "runs.csv")
    assert {"rouge_l", "chrf", "leak_train_test_rate"} <= set(table.columns)
    report = (exp_dir / "report.md").read_text()
    assert "## `rouge_l` by `ward`" in report and "| cardiology |" in report
    assert "discharge_letters: train/test | 4 |" in report


def test_the_retrieval_only_command_scores_each_retriever(tmp_path, clinic):
    result = ragft(
        "ragft.retrieve", "-m", "+debug=smoke", "retriever=dense_flat,bm25", "exp_name=tune",
        f"paths.results={tmp_path}",
    )  # fmt: skip
    passages = len(clinic.protocols[1])  # medical_reports retrieves from protocol version 1
    assert f"bm25 ({passages} passages, 6 queries): recall@1" in result.stdout
    table = pd.read_csv(tmp_path / "tune" / "retrieval.csv")
    assert sorted(table["retriever"]) == ["bm25", "dense_flat"]
    assert {"recall@1", "recall@5", "mrr", "ndcg@10", "setup_s", "search_ms_per_query"} <= set(table.columns)
    assert table["mrr"].between(0, 1).all() and (table["queries"] == 6).all()
