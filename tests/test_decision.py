"""The decision guide: the best arm that meets a team's constraints, its ties, and what rules out each
better arm, from hand-made records (tests/fake_runs.py) whose every figure the test sets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ragft.decide import main as decide_main
from ragft.errors import ConfigError
from ragft.record.cost import Cost, GenerationCost, MemoryCost, RetrievalCost, TrainingCost
from ragft.report.decision import Constraints, decide
from ragft.report.groups import group_runs, load_runs
from tests.fake_runs import cost, write_run

N = 60


def right_on(share: float, offset: int = 0) -> list[float]:
    """Per-example exact match: the first `share` of the examples right (shifted by `offset`)."""
    return [float((i + offset) % N < share * N) for i in range(N)]


def spent(arm: str, latency_p95: float | None = 0.2, train_s: float = 0.0, reindex_s: float = 0.0,
          serving_mb: float = 500.0, adapter_bytes: int = 0, index_bytes: int = 0) -> Cost:  # fmt: skip
    """A run's cost with the figures the decision reads set."""
    base = cost(arm)
    generation = replace(
        base.generation or GenerationCost(),
        latency_batch1_p95_s=latency_p95,
        memory=MemoryCost(peak_rss_mb=serving_mb, rss_at_start_mb=400.0),
    )
    training = (
        TrainingCost(total_params=1000, trainable_params=10, train_s=train_s, adapter_bytes=adapter_bytes)
        if train_s
        else None
    )
    retrieval = (  # the index read from the cache: this run's embedding took no time, the cold build did
        RetrievalCost(embed_corpus_s=0.001, index_reused=True, reindex_s=reindex_s, index_bytes=index_bytes)
        if reindex_s
        else None
    )
    return replace(base, generation=generation, training=training, retrieval=retrieval)


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """A floor, a ceiling and four strategies: lora_rag best but slow to answer, lora slow to update."""
    exp = tmp_path / "exp"
    write_run(
        exp, "majority", right_on(0.2), settings={"adaptation.answer._target_": "ragft.adapt.majority.MajorityAnswer"}
    )
    oracle = {"context.builder._target_": "ragft.context.rag.OracleContext"}
    write_run(exp, "oracle_rag", right_on(1.0), settings=oracle, run_cost=spent("rag", reindex_s=1.0))
    write_run(exp, "lora_rag", right_on(0.9), run_cost=spent("lora_rag", latency_p95=7.2, train_s=1800, reindex_s=60))
    write_run(
        exp, "lora", right_on(0.7), run_cost=spent("lora", latency_p95=0.5, train_s=1800, adapter_bytes=4 * 2**20)
    )
    write_run(exp, "rag", right_on(0.68), run_cost=spent("rag", latency_p95=0.8, reindex_s=60, index_bytes=2**20))
    write_run(exp, "zero_shot", right_on(0.1), run_cost=spent("zero_shot", latency_p95=0.3))
    return exp


def decision(exp: Path, *assignments: str):  # noqa: ANN201
    groups = group_runs(load_runs(exp))
    return decide(groups, "exact_match", Constraints.parse(assignments))


def test_without_constraints_the_best_strategy_is_recommended_never_a_floor_or_ceiling(experiment):
    made = decision(experiment)
    assert made.best == "lora_rag"  # the oracle scores higher but reads gold passages
    assert "oracle_rag" not in made.ruled_out and "oracle_rag" not in made.ties
    assert made.lines()[1].startswith("Recommended: lora_rag (exact_match 0.900")


def test_a_constraint_rules_out_the_better_arm_and_says_which(experiment):
    made = decision(experiment, "max_latency_s=5")
    assert made.best == "lora"
    assert made.ruled_out == {"lora_rag": ["batch-1 p95 latency 7.2 s > max_latency_s=5"]}
    assert any(line.startswith("lora_rag scores higher (0.900") and "ruled out" in line for line in made.lines())


def test_arms_the_test_set_cannot_separate_are_named_as_ties(experiment):
    """lora (0.70) and rag (0.68) differ on one example in 60: no test separates them; zero_shot differs
    on most, so it is not a tie."""
    made = decision(experiment, "max_latency_s=5")
    assert set(made.ties) == {"rag"} and made.ties["rag"] > 0.05
    assert "Statistically indistinguishable from it" in " ".join(made.lines())


def test_the_recommendation_gives_its_reasons_the_figures_that_meet_each_constraint(experiment):
    lines = decision(experiment, "max_latency_s=5", "max_train_minutes=45").lines()
    assert lines[2] == (
        "It meets every constraint: batch-1 p95 latency 0.5 s <= max_latency_s=5; training 30 min <= max_train_minutes=45."
    )
    assert decision(experiment).lines()[2].startswith("No constraint was set: it is the best-scoring strategy")


def test_without_a_tie_the_closest_arm_is_named_with_its_p_value(experiment):
    """lora_rag (0.90) against lora (0.70): 12 of 60 examples apart, significant; with a tie (rag beside
    lora under the latency limit) the tie is said instead."""
    made = decision(experiment)
    assert made.ties == {} and made.runner_up is not None
    label, p = made.runner_up
    assert label == "lora" and p < 0.05
    assert any(
        line.startswith("Every other strategy scores significantly worse; the closest, lora") for line in made.lines()
    )
    assert decision(experiment, "max_latency_s=5").runner_up is None


def test_knowledge_updates_multiply_out_and_rule_out_retraining(experiment):
    """Four updates a month at 30 min of training each is 120 min: over a 60 min budget; re-indexing
    at 1 min each fits."""
    made = decision(experiment, "max_latency_s=5", "updates_per_month=4", "max_update_minutes=60")
    assert made.best == "rag"
    assert made.ruled_out["lora"] == ["updates 120 min/month > max_update_minutes=60"]
    assert "spends 4.0 min a month" in made.lines()[-1]


def test_an_update_cost_nobody_measured_from_a_cold_cache_breaks_an_update_limit(experiment):
    """rag's index was cached before its build was timed: its update cost is unknown, not the cache
    read's 0.001 s, so an update budget rules it out and the decision says why."""
    untimed = spent("rag", latency_p95=0.8, reindex_s=60, index_bytes=2**20)
    untimed = replace(untimed, retrieval=replace(untimed.retrieval, reindex_s=None))
    exp = experiment.parent / "untimed"
    write_run(exp, "rag", right_on(0.68), run_cost=untimed)
    write_run(exp, "zero_shot", right_on(0.1), run_cost=spent("zero_shot", latency_p95=0.3))
    made = decision(exp, "updates_per_month=4", "max_update_minutes=60")
    assert made.best == "zero_shot"
    assert made.ruled_out == {"rag": ["updates not measured (max_update_minutes=60)"]}
    assert decision(exp).best == "rag"  # without an update limit the unknown cost rules nothing out


def test_when_nothing_meets_the_constraints_it_says_so_plainly(experiment, capsys):
    made = decision(experiment, "min_quality=0.95")
    assert made.best is None
    assert "No arm meets the constraints." in made.lines()
    assert decide_main([str(experiment), "min_quality=0.95"]) == 1
    assert "No arm meets the constraints." in capsys.readouterr().out


def test_a_limit_on_a_figure_no_run_measured_rules_the_run_out(tmp_path):
    exp = tmp_path / "exp"
    write_run(exp, "rag", right_on(0.8), run_cost=spent("rag", latency_p95=None, reindex_s=1.0))
    write_run(exp, "zero_shot", right_on(0.2), run_cost=spent("zero_shot", latency_p95=0.3))
    made = decision(exp, "max_latency_s=5")
    assert made.best == "zero_shot"
    assert made.ruled_out == {"rag": ["batch-1 p95 latency not measured (max_latency_s=5)"]}


@pytest.mark.parametrize(
    ("assignment", "message"),
    [("max_latency=5", "config `max_latency`: is not a constraint."),
     ("max_latency_s=fast", "config `max_latency_s`: 'fast' is not a number."),
     ("max_memory_gb=-1", "config `max_memory_gb`: '-1' is not allowed."),
     ("min_quality", "config `min_quality`: is not a constraint."),
     ("max_update_minutes=60", "config `max_update_minutes`: limits the time updates take, but no update is expected.")],
)  # fmt: skip
def test_a_bad_constraint_is_one_line(assignment, message, experiment, capsys):
    with pytest.raises(ConfigError, match=message.split(": ", 1)[1][:20]):
        Constraints.parse([assignment])
    assert decide_main([str(experiment), assignment]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"ragft.decide: error: {message}" or line.startswith(f"ragft.decide: error: {message}")


def test_the_command_prints_the_recommendation(experiment, capsys):
    assert decide_main([str(experiment), "max_latency_s=5"]) == 0
    out = capsys.readouterr().out
    assert "Recommended: lora" in out and "max_latency_s=5" in out


def test_the_command_refuses_a_folder_without_runs(tmp_path, capsys):
    assert decide_main([str(tmp_path / "missing")]) == 2
    assert decide_main([str(tmp_path)]) == 2
    assert all(line.startswith("ragft.decide: error: ") for line in capsys.readouterr().err.splitlines())


def test_every_report_ends_its_cost_story_with_the_decision(experiment):
    """Without constraints: the recommendation, its ties and the measured figures, in both renderings."""
    from ragft.report.render import write_report

    write_report(experiment)
    markdown = (experiment / "report.md").read_text(encoding="utf-8")
    section = markdown.split("## Decision", 1)[1].split("\n## ", 1)[0]
    assert "- Recommended: lora\\_rag (exact\\_match 0.900" in section or "- Recommended: lora_rag" in section
    assert "| oracle_rag | reference: gold passages in the prompt (ceiling)" in section
    assert "| majority | reference: a fixed answer (floor)" in section
    page = (experiment / "report.html").read_text(encoding="utf-8")
    assert 'id="decision"' in page and "Recommended: lora_rag" in page
