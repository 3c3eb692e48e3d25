"""The real default models on a few examples (minutes on a CPU): `pytest -m slow`."""

import pytest

from ragft.recipe import run_experiment_arm
from ragft.record.run import read_predictions
from tests.conftest import compose_config, record_of


@pytest.mark.slow
def test_smollm2_with_minilm_retrieval_writes_real_reports(tmp_path):
    cfg = compose_config("arm=rag", "exp_name=slow", "task.limits.test=4", "generation.batch_size=4", results=tmp_path)
    run_dir = run_experiment_arm(cfg)
    record, predictions = record_of(run_dir), read_predictions(run_dir)
    assert record.scores["recall_at_k"].mean >= 0.75  # MiniLM finds 3 of these 4 protocols (0.95 on all 60 notes)
    assert all(p["output"].strip() for p in predictions)
    assert all("PATIENT" in p["output"] for p in predictions)  # the instruction's format is followed
    assert record.cost.base_total_params == 134_515_008  # SmolLM2-135M, as its model card counts it
