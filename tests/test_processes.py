"""Past one process: data-parallel training under torchrun, the test set answered in shares and
gathered in order, and sweeps under Hydra's parallel and cluster launchers filling one experiment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ragft import processes
from ragft.models import generation
from ragft.models.generation import Batching, encode, generate
from ragft.models.loading import load_generator
from ragft.recipe import run_experiment_arm
from ragft.record.cache import CACHE_ENV
from ragft.record.run import read_predictions, read_record, read_records
from tests.conftest import ROOT, compose_config

# LoRA without dropout: each process would draw its own dropout masks, so only the data split is compared
DDP_RUN = ("+debug=smoke", "arm=lora", "training.max_steps=6", "adaptation.method.lora_dropout=0.0", "exp_name=ddp")
ALSO = ("+task@evaluate_also.general_qa=general_qa",)  # another test set, answered by both processes too
SHARDED = ("generation.batch_size=2", "generation.max_padding=null")  # three batches of the six test notes


def torchrun(results: Path, *overrides: str, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "-m", "ragft.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [*command, *overrides, f"paths.results={results}"], cwd=ROOT, env=env, capture_output=True, text=True
    )


@pytest.mark.integration
def test_two_gloo_processes_train_as_one_with_the_same_global_batch(tmp_path, monkeypatch):
    """Two processes of batch 2 against one of batch 4, from the same data and seed: the loss after
    every step agrees to 1e-5 (relative; the gradients are summed across processes in another order),
    the same tokens are trained on, and the answers come back in the one-process order."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    done = torchrun(tmp_path / "two", *DDP_RUN, *SHARDED, *ALSO, "training.batch_size=2")
    assert done.returncode == 0, done.stderr[-4000:]
    (two,) = read_records(tmp_path / "two" / "ddp")
    cfg = compose_config(*DDP_RUN, *SHARDED, "training.batch_size=4", results=tmp_path / "one")
    one_dir = run_experiment_arm(cfg)
    one = read_record(one_dir)
    assert (two.provenance["processes"], one.provenance["processes"]) == (2, 1)
    assert list(two.other_tests) == ["general_qa"]
    assert two.cost.training is not None and one.cost.training is not None
    assert two.cost.training.train_steps == one.cost.training.train_steps == 6
    assert two.cost.training.train_tokens == one.cost.training.train_tokens
    assert two.cost.training.loss_history == pytest.approx(one.cost.training.loss_history, rel=1e-5)
    two_dir = next(p for p in (tmp_path / "two" / "ddp").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p["id"] for p in read_predictions(two_dir)] == [p["id"] for p in read_predictions(one_dir)]


def test_each_process_answers_every_other_batch_and_all_get_every_answer_in_order(monkeypatch, smoke_cfg):
    """The share of the batches rank 1 answers, gathered by rank 0: the answers one process gives."""
    cfg = smoke_cfg("arm=zero_shot")
    generator = load_generator(cfg.generator)
    prompts = [f"Note {i}: " + "word " * (3 * i) for i in range(7)]
    encoded, ids = encode(generator, prompts), [str(i) for i in range(7)]
    batching = Batching(size=2, max_padding=None)
    alone = generate(generator, encoded, ids, 4, batching)

    answered: list[int] = []
    real_answer = generation._answer
    monkeypatch.setattr(
        generation, "_answer", lambda g, rows, *a: answered.append(len(rows)) or real_answer(g, rows, *a)
    )
    monkeypatch.setattr(processes, "world_size", lambda: 2)
    batches = batching.batches([len(e) for e in encoded])
    of_rank_0 = {b: [alone[row] for row in batches[b]] for b in (0, 2)}
    shares: list[dict] = []
    monkeypatch.setattr(processes, "rank", lambda: 1)
    monkeypatch.setattr(processes, "gather", lambda share: shares.append(dict(share)) or [of_rank_0, share])
    assert generate(generator, encoded, ids, 4, batching) == alone
    assert sorted(shares[0]) == [1, 3] and answered == [2, 1]  # batches 1 and 3 of 0..3 (3: the seventh prompt)

    monkeypatch.setattr(processes, "rank", lambda: 0)
    monkeypatch.setattr(processes, "gather", lambda share: [share, shares[0]])
    assert generate(generator, encoded, ids, 4, batching) == alone
    assert answered == [2, 1, 2, 2]  # then rank 0: batches 0 and 2


SWEEP = ("-m", "+exp=medical_reports", "+debug=smoke", "arm=zero_shot,rag,majority")


def sweep(results: Path, *overrides: str) -> pd.DataFrame:
    """`python -m ragft.run -m +exp=medical_reports` over three arms; its experiment table."""
    done = subprocess.run(
        [sys.executable, "-m", "ragft.run", *SWEEP, *overrides, f"paths.results={results}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return pd.read_csv(results / "medical_reports" / "runs.csv")


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return sweep(tmp_path_factory.mktemp("basic"))


@pytest.mark.integration
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_sweep_under_a_parallel_launcher_writes_the_rows_the_basic_launcher_writes(launcher, basic_sweep, tmp_path):
    """Every job in a process of its own (joblib's workers, submitit's local jobs), at the same time,
    into one experiment: the same runs and scores as the basic launcher, one table, one report."""
    table = sweep(tmp_path, f"hydra/launcher={launcher}")
    assert len(table) == 3 and set(table["status"]) == {"finished"}
    assert set(table["launcher"]) == {launcher} and set(basic_sweep["launcher"]) == {"basic"}
    same = ["run_id", "arm", "field_accuracy", "rouge_l", "format_compliance", "cost_prompt_tokens_mean"]
    pd.testing.assert_frame_equal(table[same], basic_sweep[same])
    report = (tmp_path / "medical_reports" / "report.md").read_text(encoding="utf-8")
    assert all(f"| {arm} " in report for arm in ("zero_shot", "rag", "majority"))
