"""The experiment as a user runs it, on tiny models: every arm, every output file, reuse, the report."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARMS = ["zero_shot", "few_shot", "rag", "lora", "lora_rag"]


def ragft(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=900,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("results")
    ragft("ragft.run", "+exp=medical_reports", "+debug=smoke", f"paths.results={results}")
    return results / "medical_reports"


def run_dirs(exp_dir: Path) -> list[Path]:
    return sorted(p for p in exp_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_every_arm_writes_a_complete_run_record(experiment):
    dirs = run_dirs(experiment)
    assert sorted(d.name.rsplit("-", 1)[0] for d in dirs) == sorted(ARMS)
    for run_dir in dirs:
        assert {
            "run.json", "config.yaml", "metrics.json", "cost.json", "leakage.json", "predictions.jsonl", "run.log"
        } <= {p.name for p in run_dir.iterdir()}  # fmt: skip
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if not run_dir.name.startswith(("rag", "lora_rag")):  # (tiny models' outputs may hold no content word)
            assert "groundedness" not in metrics
        leakage = json.loads((run_dir / "leakage.json").read_text())
        assert leakage["train_test"]["checked"] == 6 and leakage["corpus_test"]["rate"] == 0.0
        names = ("rouge_l", "field_accuracy", "protocol_fact_accuracy", "format_compliance", "embedding_similarity")
        for name in names:
            agg = metrics[name]
            assert agg["ci_low"] <= agg["mean"] <= agg["ci_high"] and agg["n"] == 6
        predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
        assert len(predictions) == 6
        assert {"input", "prompt", "retrieved", "output", "reference", "scores"} <= set(predictions[0])


def test_costs_are_measured_for_every_arm(experiment):
    for run_dir in run_dirs(experiment):
        cost = json.loads((run_dir / "cost.json").read_text())
        arm = json.loads((run_dir / "run.json").read_text())["arm"]
        assert cost["prompt_tokens_mean"] > 0 and cost["latency_p50_s"] > 0 and cost["peak_rss_mb"] > 0
        if arm.startswith("lora"):
            assert 0 < cost["trainable_params"] < cost["total_params"]
            assert cost["train_s"] > 0 and cost["adapter_bytes"] > 0
        else:
            assert cost["trainable_params"] == 0
        if arm.endswith("rag"):
            assert cost["index_bytes"] > 0 and cost["corpus_passages"] == 13


def test_retrieval_and_few_shot_lengthen_the_prompt(experiment):
    tokens = {}
    for run_dir in run_dirs(experiment):
        arm = json.loads((run_dir / "run.json").read_text())["arm"]
        tokens[arm] = json.loads((run_dir / "cost.json").read_text())["prompt_tokens_mean"]
    assert tokens["few_shot"] > tokens["zero_shot"] and tokens["rag"] > tokens["zero_shot"]
    assert tokens["lora_rag"] == tokens["rag"] and tokens["lora"] == tokens["zero_shot"]


def test_the_table_has_one_row_per_run_in_csv_and_parquet(experiment):
    csv = pd.read_csv(experiment / "runs.csv")
    parquet = pd.read_parquet(experiment / "runs.parquet")
    assert sorted(csv["arm"]) == sorted(ARMS) and len(parquet) == len(ARMS)
    assert {"field_accuracy", "field_accuracy_ci_low", "cost_trainable_params", "cost_latency_p95_s"} <= set(
        csv.columns
    )


def test_the_report_compares_every_arm(experiment):
    report = (experiment / "report.md").read_text()
    for arm in ARMS:
        assert f"| {arm} |" in report
    for section in (
        "## Quality",
        "### Against the baseline (`zero_shot`)",
        "## Cost",
        "## Example predictions",
        "## What differs",
        "## Leakage",
        "![quality against cost](quality_cost.png)",
    ):
        assert section in report
    page = (experiment / "report.html").read_text()
    assert all(f"<th>{arm}</th>" in page for arm in ARMS) and page.count("data:image/png;base64,") == 2


def test_runs_over_several_seeds_are_one_row_of_the_report(tmp_path):
    ragft(
        "ragft.run", "-m", "+debug=smoke", "context=few_shot_random", "seed=0,1", "exp_name=seeds",
        f"paths.results={tmp_path}",
    )  # fmt: skip
    assert len(run_dirs(tmp_path / "seeds")) == 2
    report = (tmp_path / "seeds" / "report.md").read_text()
    leaderboard = report.split("## Quality\n", 1)[1].split("\n\n![", 1)[0]
    [row] = [line for line in leaderboard.splitlines() if line.startswith("| few_shot_random |")]
    assert re.fullmatch(r"\| few_shot_random \| .* sd \d\.\d{3} .*\| 0, 1 \|", row)


def test_a_rerun_reuses_finished_runs(experiment):
    before = {d.name: (d / "metrics.json").stat().st_mtime_ns for d in run_dirs(experiment)}
    result = ragft("ragft.run", "+exp=medical_reports", "+debug=smoke", f"paths.results={experiment.parent}")
    assert result.stderr.count("reusing it") + result.stdout.count("reusing it") == len(ARMS)
    assert {d.name: (d / "metrics.json").stat().st_mtime_ns for d in run_dirs(experiment)} == before


def test_a_single_axis_sweep_adds_runs_to_the_same_table(experiment):
    ragft(
        "ragft.run",
        "-m",
        "+exp=medical_reports",
        "+debug=smoke",
        f"paths.results={experiment.parent}",
        "arm=rag",
        "context.builder.top_k=1,2",
    )
    table = pd.read_csv(experiment / "runs.csv")
    assert len(table) == len(ARMS) + 1  # top_k=1 is the default rag run, reused
    assert (table["arm"] == "rag").sum() == 2


def test_the_report_command_rebuilds_the_report(experiment):
    (experiment / "report.md").unlink()
    result = ragft("ragft.report", str(experiment), "--baseline", "lora")
    assert "report.md" in result.stdout
    assert "### Against the baseline (`lora`)" in (experiment / "report.md").read_text()
    unknown = subprocess.run(
        [sys.executable, "-m", "ragft.report", str(experiment), "--baseline", "nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert unknown.returncode == 2 and "baseline 'nope' is not one of the runs" in unknown.stderr


def test_the_clinic_qa_task_runs(tmp_path):
    ragft("ragft.run", "+debug=smoke", "task=clinic_qa", "arm=rag", "exp_name=qa", f"paths.results={tmp_path}")
    [run_dir] = run_dirs(tmp_path / "qa")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"exact_match", "token_f1", "recall_at_k", "embedding_similarity"} <= set(metrics)
    outputs = [json.loads(line)["output"] for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert ("groundedness" in metrics) == any(re.search(r"\w", o) for o in outputs)  # (a tiny model may say nothing)


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
    assert sorted(d.name.rsplit("-", 1)[0] for d in run_dirs(exp_dir)) == ["rag", "zero_shot"]
    table = pd.read_csv(exp_dir / "runs.csv")
    assert {"rouge_l", "chrf", "leak_train_test_rate"} <= set(table.columns)
    report = (exp_dir / "report.md").read_text()
    assert "## `rouge_l` by `ward`" in report and "| cardiology |" in report
    assert "discharge_letters: train/test | 4 |" in report


def test_a_failing_arm_does_not_stop_the_others_and_the_sweep_fails_loudly(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragft.run",
            "+exp=medical_reports",
            "+debug=smoke",
            f"paths.results={tmp_path}",
            "task.limits.train=1",
        ],  # few_shot asks for k=2 demonstrations: only that arm is invalid
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert result.returncode != 0
    assert "config `context.builder.k`: asks for 2 examples but the train split has 1" in result.stderr
    written = sorted(d.name.rsplit("-", 1)[0] for d in run_dirs(tmp_path / "medical_reports"))
    assert written == sorted(set(ARMS) - {"few_shot"})
    assert "| lora_rag |" in (tmp_path / "medical_reports" / "report.md").read_text()


def test_raft_and_fine_tuned_retriever_arms_run(tmp_path):
    ragft(
        "ragft.run", "-m", "+debug=smoke", "arm=raft,ft_retriever_lora_rag", "exp_name=combos",
        f"paths.results={tmp_path}",
    )  # fmt: skip
    dirs = {d.name.rsplit("-", 1)[0]: d for d in run_dirs(tmp_path / "combos")}
    assert set(dirs) == {"lora_raft", "ft_retriever_lora_rag"}
    cost = json.loads((dirs["ft_retriever_lora_rag"] / "cost.json").read_text())
    assert cost["retriever_train_pairs"] == 12 and cost["retriever_train_s"] > 0 and cost["trainable_params"] > 0
    metrics = json.loads((dirs["lora_raft"] / "metrics.json").read_text())
    assert {"mrr", "ndcg@10", "recall@1"} <= set(metrics) and metrics["mrr"]["group"] == "retrieval"
    report = (tmp_path / "combos" / "report.md").read_text()
    assert "| ft_retriever_lora_rag |" in report.split("## Retrieval", 1)[1]


def test_the_retrieval_only_command_scores_each_retriever(tmp_path):
    result = ragft(
        "ragft.retrieve", "-m", "+debug=smoke", "retriever=dense_flat,bm25", "exp_name=tune",
        f"paths.results={tmp_path}",
    )  # fmt: skip
    assert "bm25 (13 passages, 6 queries): recall@1" in result.stdout
    table = pd.read_csv(tmp_path / "tune" / "retrieval.csv")
    assert sorted(table["retriever"]) == ["bm25", "dense_flat"]
    assert {"recall@1", "recall@5", "mrr", "ndcg@10", "setup_s", "search_ms_per_query"} <= set(table.columns)
    assert table["mrr"].between(0, 1).all() and (table["queries"] == 6).all()
