"""The default experiment on tiny models, in-process: every arm's record, costs, reuse, failures, the table
and the report. (The same as a user's command line, subprocesses and all, is in test_cli.py.)"""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import ragft.models.generation
import ragft.recipe
from ragft.models.generation import AnsweredBatches, _answer
from ragft.recipe import run_experiment_arm
from ragft.record.run import PREDICTIONS_FILE, RECORD_FILE, read_predictions, read_record, run_dirs
from ragft.report.render import write_report
from tests.conftest import compose_config

ARMS = ["zero_shot", "few_shot", "rag", "lora", "lora_rag"]


def run_arms(results: Path, *arms: str, exp: str = "medical_reports", extra: tuple[str, ...] = ()) -> Path:
    """Run each arm as one job of the experiment would, then build the report (as the sweep's callback does)."""
    for arm in arms:
        cfg = compose_config(f"+exp={exp}", "+debug=smoke", f"arm={arm}", *extra, results=results)
        run_experiment_arm(cfg)
    exp_dir = results / exp
    write_report(exp_dir)
    return exp_dir


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_arms(tmp_path_factory.mktemp("results"), *ARMS)


def records(exp_dir: Path) -> dict:
    return {read_record(d).identity.arm: read_record(d) for d in run_dirs(exp_dir)}


def test_every_arm_writes_a_complete_run_record(experiment):
    dirs = list(run_dirs(experiment))
    assert sorted(d.name.rsplit("-", 1)[0] for d in dirs) == sorted(ARMS)
    for run_dir in dirs:
        assert {RECORD_FILE, PREDICTIONS_FILE, "config.yaml", "run.log"} <= {p.name for p in run_dir.iterdir()}
        record = read_record(run_dir)
        assert record.status == "finished" and record.failure is None
        if record.identity.arm not in ("rag", "lora_rag"):  # (tiny models' outputs may hold no content word)
            assert "groundedness" not in record.scores
        assert record.leakage["train_test"]["checked"] == 6 and record.leakage["corpus_test"]["rate"] == 0.0
        for name in ("rouge_l", "field_accuracy", "protocol_fact_accuracy", "format_compliance"):
            summary = record.scores[name]
            assert summary.ci_low <= summary.mean <= summary.ci_high and summary.n == 6
        predictions = read_predictions(run_dir)
        assert len(predictions) == 6
        assert {"input", "prompt", "retrieved", "output", "reference", "scores"} <= set(predictions[0])


def test_costs_are_measured_for_every_arm(experiment, clinic):
    passages = len(clinic.protocols[1])  # medical_reports retrieves from protocol version 1
    for arm, record in records(experiment).items():
        cost = record.cost
        assert cost.generation.prompt_tokens_mean > 0 and cost.generation.latency_batch1_p50_s > 0
        assert cost.memory.peak_rss_mb > 0 and set(cost.stage_s) >= {"load_generator", "generate", "score"}
        if arm.startswith("lora"):
            assert cost.training is not None and 0 < cost.trainable_params < cost.training.total_params
            assert cost.training.train_s > 0 and cost.training.adapter_bytes > 0
        else:
            assert cost.training is None and cost.trainable_params == 0
        if arm.endswith("rag"):
            assert cost.retrieval is not None
            assert cost.retrieval.index_bytes > 0 and cost.retrieval.corpus_passages == passages
        else:
            assert cost.retrieval is None


def test_retrieval_and_few_shot_lengthen_the_prompt(experiment):
    tokens = {arm: r.cost.generation.prompt_tokens_mean for arm, r in records(experiment).items()}
    assert tokens["few_shot"] > tokens["zero_shot"] and tokens["rag"] > tokens["zero_shot"]
    assert tokens["lora_rag"] == tokens["rag"] and tokens["lora"] == tokens["zero_shot"]


def test_the_table_has_one_row_per_run_in_csv_and_parquet(experiment):
    csv = pd.read_csv(experiment / "runs.csv")
    parquet = pd.read_parquet(experiment / "runs.parquet")
    assert sorted(csv["arm"]) == sorted(ARMS) and len(parquet) == len(ARMS)
    assert (csv["status"] == "finished").all()
    assert {"field_accuracy", "field_accuracy_ci_low", "cost_trainable_params", "cost_latency_batch1_p95_s"} <= set(
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


def test_a_rerun_reuses_finished_runs(experiment, caplog):
    before = {d.name: (d / RECORD_FILE).stat().st_mtime_ns for d in run_dirs(experiment)}
    with caplog.at_level("INFO", logger="ragft.recipe"):
        run_arms(experiment.parent, *ARMS)
    assert caplog.text.count("reusing it") == len(ARMS)
    assert {d.name: (d / RECORD_FILE).stat().st_mtime_ns for d in run_dirs(experiment)} == before


def test_runs_over_several_seeds_are_one_row_of_the_report(tmp_path):
    for seed in (0, 1):
        cfg = compose_config(
            "+debug=smoke", "context=few_shot_random", f"seed={seed}", "exp_name=seeds", results=tmp_path
        )
        run_experiment_arm(cfg)
    write_report(tmp_path / "seeds")
    assert len(list(run_dirs(tmp_path / "seeds"))) == 2
    report = (tmp_path / "seeds" / "report.md").read_text()
    leaderboard = report.split("## Quality\n", 1)[1].split("\n\n![", 1)[0]
    [row] = [line for line in leaderboard.splitlines() if line.startswith("| few_shot_random |")]
    assert re.fullmatch(r"\| few_shot_random \| .* sd \d\.\d{3} .*\| 0, 1 \|", row)


def test_a_run_that_fails_is_recorded_shown_and_run_again(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the decoder ran out of memory")

    cfg = compose_config("+debug=smoke", "arm=zero_shot", "exp_name=failing", results=tmp_path)
    monkeypatch.setattr(ragft.recipe, "answer", broken)
    with pytest.raises(RuntimeError, match="ran out of memory"):
        run_experiment_arm(cfg)
    [run_dir] = run_dirs(tmp_path / "failing")
    record = read_record(run_dir)
    assert record.status == "failed" and record.failure is not None
    assert (record.failure.stage, record.failure.error) == ("generate", "RuntimeError")
    assert "ran out of memory" in record.failure.message and not (run_dir / PREDICTIONS_FILE).exists()
    table = pd.read_csv(tmp_path / "failing" / "runs.csv")
    assert table["status"].tolist() == ["failed"] and table["failed_stage"].tolist() == ["generate"]
    write_report(tmp_path / "failing")
    assert "ran out of memory" in (tmp_path / "failing" / "report.md").read_text()

    monkeypatch.undo()  # the next identical job runs it again and replaces the failed record
    assert run_experiment_arm(cfg) == run_dir
    assert read_record(run_dir).status == "finished" and len(read_predictions(run_dir)) == 6
    assert pd.read_csv(tmp_path / "failing" / "runs.csv")["status"].tolist() == ["finished"]


def test_an_interrupted_run_publishes_nothing_and_the_next_attempt_answers_only_the_rest(tmp_path, monkeypatch):
    """Interrupted after its first batch, a run keeps that batch in its work folder; the same config
    answers the two other batches only, and records what an uninterrupted run records."""
    overrides = ("+debug=smoke", "arm=zero_shot", "generation.batch_size=2", "generation.max_padding=null")
    overrides += ("generation.latency_sample=0",)  # every answer counted below is a batch's
    save = AnsweredBatches.save

    def interrupted_after_one(self, index, *args):
        save(self, index, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(AnsweredBatches, "save", interrupted_after_one)
    cfg = compose_config(*overrides, "exp_name=stopped", results=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_experiment_arm(cfg)
    exp_dir = tmp_path / "stopped"
    (work,) = [p for p in exp_dir.iterdir() if p.name.endswith(".partial")]
    assert not list(run_dirs(exp_dir)) and len(list((work / "answers").iterdir())) == 1

    monkeypatch.undo()
    answered = []
    monkeypatch.setattr(ragft.models.generation, "_answer", lambda *a: answered.append(a) or _answer(*a))
    resumed = read_record(run_experiment_arm(cfg))
    assert len(answered) == 2 and not work.exists() and resumed.provenance["resumed"] is True
    monkeypatch.undo()
    reference = run_experiment_arm(compose_config(*overrides, "exp_name=whole", results=tmp_path))
    assert read_predictions(next(run_dirs(exp_dir))) == read_predictions(reference)


def test_a_single_axis_sweep_adds_runs_to_the_same_table(experiment):
    run_arms(experiment.parent, "rag", extra=("context.builder.top_k=2",))
    table = pd.read_csv(experiment / "runs.csv")
    assert len(table) == len(ARMS) + 1
    assert (table["arm"] == "rag").sum() == 2
    experiment.joinpath("report.md").unlink()
    run_arms(experiment.parent)  # (no arm: the report alone) the two rag runs are two rows, told apart by key
    leaderboard = (experiment / "report.md").read_text().split("## Quality\n", 1)[1].split("\n\n![", 1)[0]
    assert len(re.findall(r"^\| rag\b", leaderboard, re.M)) == 2


def test_the_clinic_qa_task_runs(tmp_path):
    cfg = compose_config("+debug=smoke", "task=clinic_qa", "arm=rag", "exp_name=qa", results=tmp_path)
    run_dir = run_experiment_arm(cfg)
    scores = read_record(run_dir).scores
    assert {"exact_match", "token_f1", "recall_at_k", "embedding_similarity"} <= set(scores)
    outputs = [p["output"] for p in read_predictions(run_dir)]
    assert ("groundedness" in scores) == any(re.search(r"\w", o) for o in outputs)  # (a tiny model may say nothing)


def test_raft_and_fine_tuned_retriever_arms_run(tmp_path):
    exp_dir = run_arms(tmp_path, "lora_raft", "ft_retriever_lora_rag", exp="medical_reports")
    by_arm = records(exp_dir)
    assert set(by_arm) == {"lora_raft", "ft_retriever_lora_rag"}
    combined = by_arm["ft_retriever_lora_rag"].cost
    train_notes = 12  # +debug=smoke's task.limits.train
    assert combined.retrieval is not None and combined.retrieval.retriever_train_pairs == train_notes
    assert (combined.retrieval.retriever_train_s or 0) > 0 and combined.trainable_params > 0
    raft = by_arm["lora_raft"].scores
    assert {"mrr", "ndcg@10", "recall@1"} <= set(raft) and raft["mrr"].group == "retrieval"
    assert "| ft_retriever_lora_rag |" in (exp_dir / "report.md").read_text().split("## Retrieval", 1)[1]


def test_the_record_round_trips_and_refuses_another_schema(experiment):
    run_dir = next(iter(run_dirs(experiment)))
    record = read_record(run_dir)
    data = json.loads((run_dir / RECORD_FILE).read_text())
    assert record.to_dict() == json.loads(json.dumps(data)) and data["schema_version"] == record.schema_version
    data["schema_version"] = record.schema_version + 1
    with pytest.raises(ValueError, match="schema"):
        type(record).from_dict(data)
