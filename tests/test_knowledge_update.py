"""The knowledge-update experiment: v2 answers split into changed and unchanged facts, arms that train
on v1 while being tested on v2, and the stale v1 index."""

import pytest

from ragft.data.loading import task_from_config
from ragft.errors import ConfigError
from ragft.recipe import prepare
from tests.conftest import by_arm, compose_config, ragft_command


def task_of(cfg):  # noqa: ANN001
    return task_from_config(cfg.task)


def test_v2_questions_split_into_changed_and_unchanged_facts():
    cfg = compose_config("+exp=knowledge_update", "arm=update/rag_reindexed")
    v2 = task_of(cfg)
    v1 = task_of(compose_config("task=clinic_qa"))
    test_v1 = {e.id: e for e in v1.split("test")}
    changed = [e for e in v2.split("test") if e.category == "True"]
    unchanged = [e for e in v2.split("test") if e.category == "False"]
    assert changed and unchanged and len(changed) + len(unchanged) == len(v2.split("test"))
    assert all(e.reference != test_v1[e.id].reference for e in changed)  # the v2 answer differs from v1
    assert all(e.reference == test_v1[e.id].reference for e in unchanged)
    assert "version 2" in " ".join(p.text for p in v2.corpus)


def test_stale_and_v1_trained_arms_read_and_learn_version_1(clinic):
    stale = compose_config("+exp=knowledge_update", "arm=update/rag_v1_index")
    conditions = [pid for pid in clinic.protocols[1] if pid != "protocol-report-format"]
    assert sum("(version 1)" in p.text for p in task_of(stale).corpus) == len(conditions)  # every condition protocol
    arm = prepare(compose_config("+exp=knowledge_update", "arm=update/lora_v1_rag_v2"))
    (source,) = arm.adaptation.stages[-1].sources
    train_task = arm.adaptation._task(source)
    v1_answers = {e.id: e.reference for e in task_of(compose_config("task=clinic_qa")).split("train")}
    assert {e.id: e.reference for e in train_task.split("train")} == v1_answers  # learns the old answers ...
    train_sources = arm.adaptation.sources_for(train_task)
    assert (
        train_sources is not arm.sources and "version 1" in train_sources.passages()[0].text
    )  # ... reading old passages
    assert "version 2" in arm.sources.passages()[0].text  # and is served the new ones


@pytest.mark.integration
def test_the_experiment_runs_every_arm_with_its_label(tmp_path):
    ragft_command("ragft.run", "+exp=knowledge_update", "+debug=smoke", f"paths.results={tmp_path}")
    runs = by_arm(tmp_path / "knowledge_update")
    assert sorted(runs) == sorted(
        ["zero_shot", "rag_v1_index", "rag_reindexed", "lora_v1", "lora_retrained_v2", "lora_v1_rag_v2"]
    )
    report = (tmp_path / "knowledge_update" / "report.md").read_text()
    assert "## `contains_reference` by `changed_in_v2`" in report
    assert runs["lora_retrained_v2"].cost.training.train_s > 0 and runs["lora_retrained_v2"].cost.retrieval is None
    assert runs["rag_reindexed"].cost.retrieval.index_build_s >= 0 and runs["rag_reindexed"].cost.training is None


def test_a_withdrawn_protocol_leaves_the_index_and_an_unknown_one_is_a_config_error(clinic):
    withdrawn = compose_config("+exp=withdrawal", "arm=update/rag_withdrawn")
    ids = {p.id for p in task_of(withdrawn).corpus}
    assert ids == set(clinic.protocols[2]) - {"protocol-conjunctivitis"}
    specialties = [q["specialty"] for q in clinic.split(clinic.clinic_qa, "test")]
    assert [e.category for e in task_of(withdrawn).split("test")] == specialties  # broken down by specialty
    served_after = compose_config("+exp=withdrawal", "arm=update/lora_rag_withdrawn")
    assert served_after.train_task.corpus.get("exclude") is None  # trained while the protocol was there
    with pytest.raises(ConfigError, match=r"task.corpus.exclude.*protocol-nope"):
        task_of(compose_config("+exp=withdrawal", "arm=update/rag_withdrawn", "withdrawn=[protocol-nope]"))
