"""Costs that mean what they say: each stretch's peak memory its own, latency at batch 1 apart from
throughput at the configured batch, and older records read without passing one figure off as another."""

import gc
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ragft.models.generation import Batching, batch1_latencies, encode, generate, latency_sample
from ragft.models.loading import load_generator
from ragft.record import memory
from ragft.record.cache import build_seconds, cached_dir
from ragft.record.cost import Cost, GenerationCost, RetrievalCost, TrainingCost
from ragft.record.memory import MemoryCost, PeakMemory, kernel_peak_bytes, kernel_peak_resets
from ragft.report.costs import COST_COLUMNS, latency, throughput
from ragft.report.render import build_report
from tests.fake_runs import write_experiment

BIG_MB = 256  # far above what the interpreter allocates on its own between two lines
linux_peak = pytest.mark.skipif(not kernel_peak_resets(), reason="needs a resettable kernel peak (/proc, Linux)")


def touched(mb: int) -> np.ndarray:
    """`mb` megabytes written to, so they are resident (not merely reserved)."""
    return np.ones(mb * 2**20 // 8)


def growth(cost: MemoryCost) -> float:
    return cost.peak_rss_mb - cost.rss_at_start_mb


@linux_peak
def test_a_stage_peak_holds_what_it_allocated_and_freed_and_the_next_stage_does_not():
    with PeakMemory("first") as first:
        block = touched(BIG_MB)
        del block
    with PeakMemory("second") as second:
        small = touched(8)
        del small
    assert growth(first.record()) > 0.9 * BIG_MB
    assert growth(second.record()) < 0.5 * BIG_MB
    assert first.record().peak_source == second.record().peak_source == "kernel"


@linux_peak
def test_a_run_after_an_earlier_freed_allocation_does_not_count_it():
    block = touched(BIG_MB)
    held = kernel_peak_bytes()
    del block
    with PeakMemory("run") as run:
        pass
    assert held is not None and held / 2**20 > run.record().rss_at_start_mb + 0.9 * BIG_MB  # the process's mark
    assert growth(run.record()) < 0.5 * BIG_MB  # the run's own


@linux_peak
def test_an_outer_stretch_keeps_the_peak_of_a_stretch_measured_inside_it():
    with PeakMemory("run") as run:
        with PeakMemory("training") as training:
            block = touched(BIG_MB)
            del block
        with PeakMemory("generation") as generation:
            pass
    assert growth(training.record()) > 0.9 * BIG_MB and growth(generation.record()) < 0.5 * BIG_MB
    assert run.record().peak_rss_mb >= training.record().peak_rss_mb


def test_a_stretch_starts_from_memory_that_unreachable_objects_held():
    gc.collect()
    gc.disable()  # the cycle below is freed by the release, not by a collection that happens to run
    try:
        cycle: list = [touched(BIG_MB)]
        cycle.append(cycle)
        before = memory.resident_bytes() / 2**20
        del cycle
        with PeakMemory("run") as run:
            pass
    finally:
        gc.enable()
    assert run.record().rss_at_start_mb < before - 0.9 * BIG_MB


def test_without_a_kernel_peak_the_resident_memory_is_sampled(monkeypatch):
    monkeypatch.setattr(memory, "kernel_peak_resets", lambda: False)
    with PeakMemory("sampled", interval_s=0.01) as sampled:
        block = touched(BIG_MB)
        deadline = time.monotonic() + 30  # waits for the sampler to see the block; not a timing assertion
        while sampled.peak_rss - sampled.start_rss < 0.9 * BIG_MB * 2**20 and time.monotonic() < deadline:
            time.sleep(0.01)
        del block
    cost = sampled.record()
    assert cost.peak_source == "sampled" and growth(cost) > 0.9 * BIG_MB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_finds_the_c_librarys_trim_on_linux():
    assert memory._malloc_trim() is not None


FREED_BEHIND_A_LIVE_BLOCK = """
import sys
import numpy as np, psutil
from ragft.record.memory import map_large_allocations
if sys.argv[1] == "mapped":
    assert map_large_allocations()
resident = lambda: psutil.Process().memory_info().rss / 2**20
warm = np.ones(16 * 2**20 // 8); del warm  # freeing a 16 MiB block raises glibc's own threshold past it
blocks = [np.ones(4 * 2**20 // 8) for _ in range(64)]  # 256 MiB in 4 MiB blocks, as activations are
live = np.ones(4 * 2**20 // 8)  # allocated after them: the heap cannot shrink below it
before = resident()
del blocks
print(round(before - resident()))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_with_large_allocations_mapped_freed_blocks_leave_the_process_at_once():
    def handed_back(mode: str) -> int:  # a fresh process each: the setting holds for the rest of one
        done = subprocess.run([sys.executable, "-c", FREED_BEHIND_A_LIVE_BLOCK, mode], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    assert handed_back("mapped") > 0.9 * BIG_MB
    assert handed_back("as_it_comes") < 0.5 * BIG_MB  # what the setting is for: glibc keeps them resident


# --- generation: latency at batch 1, throughput at the configured batch ----------------------------------


def test_latency_and_throughput_are_recorded_apart():
    cost = GenerationCost.measured(32, [100, 120, 80, 90], [10, 20, 30, 40], 2.0, [0.3, 0.1, 0.2])
    assert cost.examples == 4 and cost.throughput_examples_per_s == 2.0 and cost.throughput_tokens_per_s == 50.0
    assert cost.latency_sample == 3 and cost.latency_batch1_p50_s == pytest.approx(0.2)
    assert cost.latency_batch1_p50_s <= cost.latency_batch1_p95_s <= 0.3
    unsampled = GenerationCost.measured(32, [100], [10], 1.0)
    assert unsampled.latency_batch1_p50_s is None and unsampled.latency_sample == 0


def test_the_flat_row_labels_throughput_latency_and_each_peak():
    cost = Cost(generation=GenerationCost.measured(8, [10], [4], 2.0, [0.5], MemoryCost(700.0, 600.0)))
    row = cost.flat()
    assert row["throughput_tokens_per_s"] == 2.0 and row["generation_examples"] == 1
    assert row["latency_batch1_p50_s"] == 0.5 and row["generate_peak_rss_mb"] == 700.0
    assert not any(isinstance(v, dict) for v in row.values()) and "latency_p50_s" not in row


def test_an_older_record_reads_its_throughput_but_not_its_batch_wall_time_as_latency():
    old = {"batch_size": 32, "generate_s": 48.0, "generation_tokens_per_s": 40.0, "latency_p50_s": 23.9}
    cost = Cost.from_dict({"generation": old, "memory": {"peak_rss_mb": 1900.0, "rss_at_start_mb": 600.0}})
    assert cost.generation.throughput_tokens_per_s == 40.0 and cost.generation.latency_batch1_p50_s is None
    assert cost.memory.peak_source == "sampled"  # how peaks were measured before
    assert latency(cost.generation) == "–" and "40.0 tok/s (batch 32)" in throughput(cost.generation)
    with pytest.raises(TypeError):  # any other unknown field: the record is skipped, its file named
        GenerationCost.from_dict({"latency_per_example_s": 1.0})


def test_the_cost_table_says_which_speed_is_which(tmp_path):
    table = build_report([write_experiment(tmp_path)]).tables["cost"]
    assert COST_COLUMNS["latency"] in table.columns and "batch 1" in COST_COLUMNS["latency"]
    assert "throughput at batch size" in COST_COLUMNS["throughput"]
    assert table.loc["rag", COST_COLUMNS["latency"]] == "0.10 / 0.20 (n=4)"
    assert table.loc["rag", COST_COLUMNS["throughput"]] == "2.00 ex/s, 15.0 tok/s (batch 4)"


def test_the_latency_sample_is_seeded_and_within_the_test_set():
    assert latency_sample(60, 8, seed=0) == latency_sample(60, 8, seed=0) != latency_sample(60, 8, seed=1)
    assert len(set(latency_sample(60, 8, seed=0))) == 8 and all(0 <= i < 60 for i in latency_sample(60, 8, 0))
    assert latency_sample(5, 8, seed=0) == [0, 1, 2, 3, 4] and latency_sample(60, 0, seed=0) == []


def test_batch1_latencies_time_each_sampled_prompt_and_answers_carry_no_batch_time(smoke_cfg):
    generator = load_generator(smoke_cfg().generator)
    encoded = encode(generator, ["Note: mild asthma.", "Note: a much longer note about a severe migraine.", "Hi"])
    batched = generate(generator, encoded, ["a", "b", "c"], max_new_tokens=6, batching=Batching(3, None))
    assert all(0 <= g.output_tokens <= 6 and not hasattr(g, "latency_s") for g in batched)
    latencies = batch1_latencies(generator, encoded, [0, 2], max_new_tokens=6)
    assert len(latencies) == 2 and all(s > 0 for s in latencies)


def test_a_cached_artefact_keeps_the_time_its_build_took_and_a_cache_hit_reports_that_time(tmp_path):
    def build(out: Path) -> None:
        time.sleep(0.05)
        (out / "artefact").write_text("made")

    folder, built = cached_dir("things", "k", build, root=tmp_path)
    again, rebuilt = cached_dir("things", "k", lambda out: pytest.fail("a cache hit builds nothing"), root=tmp_path)
    assert built and not rebuilt and again == folder
    assert build_seconds(again) is not None and build_seconds(again) >= 0.05
    older = tmp_path / "older"  # cached before build times were recorded
    older.mkdir()
    assert build_seconds(older) is None


def test_a_knowledge_update_costs_re_training_plus_cold_re_indexing_and_is_unknown_when_either_is():
    trained = TrainingCost(trainable_params=10, train_s=300.0, adapter_reused=True)
    reindexed = RetrievalCost(embed_corpus_s=0.001, index_reused=True, reindex_s=2.5, retriever_train_s=40.0)
    assert Cost(training=trained).knowledge_update_s == 300.0
    assert Cost(retrieval=reindexed).knowledge_update_s == 42.5
    assert Cost(training=trained, retrieval=reindexed).knowledge_update_s == 342.5
    assert Cost().knowledge_update_s == 0.0  # nothing to re-train or re-index
    assert Cost(training=TrainingCost(trainable_params=0, train_s=9.0)).knowledge_update_s == 0.0  # trains nothing
    assert Cost(training=trained, retrieval=replace(reindexed, reindex_s=None)).knowledge_update_s is None
    assert Cost(retrieval=reindexed).flat()["knowledge_update_s"] == 42.5


def test_a_runs_commit_is_the_one_its_process_started_with(monkeypatch):
    """A sweep in one process imports the code once: a commit made while it runs must not be recorded."""
    import subprocess

    from ragft.record import provenance

    heads = iter(["aaa1111\n", "bbb2222\n"])
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, next(heads), ""))
    provenance._git_sha.cache_clear()
    try:
        started = provenance.started_now()
        assert provenance.finished_at(started)["git_sha"] == "aaa1111"
        assert provenance.finished_at(provenance.started_now())["git_sha"] == "aaa1111"  # the next run too
    finally:
        provenance._git_sha.cache_clear()
