"""The benchmarks' statistics and bookkeeping on synthetic timings: the order arms run in, the warm-ups
before any timed run, the median and spread, ratios paired per repeat, the warm-up step left out of a
training's throughput, and the JSON record."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402
import bench_generation  # noqa: E402


def test_arms_alternate_across_repeats() -> None:
    assert _common.alternating_orders(["a", "b"], 4) == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert _common.alternating_orders(["a", "b", "c"], 3) == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"]]


def test_spread_gives_median_range_quartiles_and_sd() -> None:
    s = _common.spread([3.0, 1.0, 2.0, 10.0])
    assert (s["n"], s["median"], s["min"], s["max"]) == (4, 2.5, 1.0, 10.0)
    assert s["q1"] == pytest.approx(1.75) and s["q3"] == pytest.approx(4.75)
    assert s["iqr"] == pytest.approx(3.0)
    assert s["mean"] == pytest.approx(4.0)
    assert s["sd"] == pytest.approx(statistics.stdev([1, 2, 3, 10]))
    single = _common.spread([5.0])
    assert single["median"] == single["q1"] == single["q3"] == 5.0 and single["sd"] == 0.0
    with pytest.raises(ValueError):
        _common.spread([])


def test_ratios_are_paired_per_repeat_not_a_ratio_of_medians() -> None:
    ratios = _common.paired_ratios([4.0, 6.0, 1.0], [2.0, 6.0, 1.0])
    assert ratios["per_repeat"] == pytest.approx([2.0, 1.0, 1.0])
    assert ratios["median"] == pytest.approx(1.0)  # the ratio of the medians would be 4 / 2 = 2
    assert (ratios["min"], ratios["max"]) == pytest.approx((1.0, 2.0))
    with pytest.raises(ValueError, match="pair"):
        _common.paired_ratios([1.0, 2.0], [1.0])


def fake_arm(name: str, calls: list[str], seconds: list[float], tokens: int = 100):
    """An arm that logs each call and takes the next of its synthetic durations."""
    durations = iter(seconds)

    def run() -> dict:
        calls.append(name)
        return {"seconds": next(durations), "tokens": tokens}

    return run


def test_run_repeats_warms_every_arm_up_first_then_alternates() -> None:
    calls: list[str] = []
    arms = {"plain": fake_arm("plain", calls, [2.0, 4.0, 1.0]), "ragft": fake_arm("ragft", calls, [1.0, 2.0, 1.0])}
    warmups = {"plain": lambda: calls.append("warm plain"), "ragft": lambda: calls.append("warm ragft")}
    records = _common.run_repeats(arms, 3, warmups=warmups, log=lambda _: None)
    assert calls == ["warm plain", "warm ragft", "plain", "ragft", "ragft", "plain", "plain", "ragft"]
    assert [r["order"] for r in records] == [["plain", "ragft"], ["ragft", "plain"], ["plain", "ragft"]]
    assert _common.arm_values(records, "plain") == pytest.approx([50.0, 25.0, 100.0])

    summary = _common.summarise(records, {"ragft/plain": ("ragft", "plain")})
    assert summary["arms"]["plain"]["tokens_per_s"]["median"] == pytest.approx(50.0)
    assert summary["arms"]["ragft"]["seconds"]["max"] == pytest.approx(2.0)
    assert summary["ratios"]["ragft/plain"]["per_repeat"] == pytest.approx([2.0, 2.0, 1.0])
    assert summary["ratios"]["ragft/plain"]["median"] == pytest.approx(2.0)


def test_fewer_than_three_repeats_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        _common.run_repeats({"a": lambda: {"seconds": 1.0, "tokens": 1}}, 2, log=lambda _: None)
    with pytest.raises(ValueError, match="nothing was timed"):
        _common.throughput({"seconds": 0.0, "tokens": 5})


def test_training_throughput_leaves_out_the_warmup_step() -> None:
    steps = [{"step": 1, "seconds": 9.0, "tokens": 900}, {"step": 2, "seconds": 2.0, "tokens": 300}]
    steps.append({"step": 3, "seconds": 3.0, "tokens": 200})
    timed = _common.timed_steps(steps)
    assert (timed["seconds"], timed["tokens"]) == (5.0, 500)
    assert [s["warmup"] for s in timed["steps"]] == [True, False, False]
    with pytest.raises(ValueError, match="none left"):
        _common.timed_steps(steps[:1])
    with pytest.raises(ValueError, match="no tokens"):
        _common.timed_steps([steps[0], {"step": 2, "seconds": 1.0, "tokens": 0}])


def test_step_timer_times_each_step_of_any_trainer_and_is_removed_after(tmp_path: Path) -> None:
    """The timer reaches a Trainer built elsewhere (as ragft's is) and counts its non-padding tokens."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments
    from transformers import trainer as trainer_module

    from ragft.adapt.sft import RightPadCollator

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    features = [{"input_ids": list(range(1, n)), "labels": list(range(1, n))} for n in (5, 7, 4, 9, 6, 8)]
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=3, report_to=[], use_cpu=True,
        save_strategy="no", include_num_input_tokens_seen="non_padding", disable_tqdm=True,
    )  # fmt: skip
    before = list(trainer_module.DEFAULT_CALLBACKS)
    with _common.step_timer() as steps:
        trainer = Trainer(
            model=LlamaForCausalLM(config), args=args, train_dataset=features, data_collator=RightPadCollator(0)
        )
        trainer.train()
    assert list(trainer_module.DEFAULT_CALLBACKS) == before
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert (
        sum(s["tokens"] for s in steps)
        == trainer.state.num_input_tokens_seen
        == sum(len(f["input_ids"]) for f in features)
    )
    assert all(s["seconds"] > 0 for s in steps)


def test_record_holds_settings_machine_commit_and_raw_repeats(tmp_path: Path) -> None:
    records = [{"repeat": i, "order": ["a"], "arms": {"a": {"seconds": 1.0, "tokens": 10 + i}}} for i in range(3)]
    path = _common.write_result(tmp_path / "b.json", "bench_x", {"threads": 2}, records, {"unit": "tokens_per_s"})
    saved = json.loads(path.read_text())
    assert saved["bench"] == "bench_x" and saved["settings"] == {"threads": 2}
    assert saved["repeats"] == records
    assert {"commit", "dirty"} <= set(saved["git"])
    assert {"cpu_model", "logical_cores", "torch", "torch_threads"} <= set(saved["machine"])
    assert saved["date"][:2] == "20"


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above counts
    assert _common.git_state(tmp_path)["commit"] is None


def test_a_smoke_run_never_writes_the_committed_record() -> None:
    assert _common.result_path("bench_x", None, tiny=False) == _common.RESULTS / "bench_x.json"
    assert _common.RESULTS not in _common.result_path("bench_x", None, tiny=True).parents
    assert _common.result_path("bench_x", "elsewhere.json", tiny=False) == Path("elsewhere.json")


def test_generated_tokens_stop_at_the_first_stop_token_and_best_batch_breaks_ties_small() -> None:
    assert bench_generation.until_stop([5, 6, 2, 7, 2], [2, 9]) == [5, 6]
    assert bench_generation.until_stop([5, 6], [2]) == [5, 6]
    probe = [{"batch": 8, "seconds": 2.0, "tokens": 100}, {"batch": 16, "seconds": 1.0, "tokens": 50}]
    assert bench_generation.best_batch(probe) == 8
    probe.append({"batch": 32, "seconds": 1.0, "tokens": 80})
    assert bench_generation.best_batch(probe) == 32


def test_the_long_document_corpus_holds_every_abstract_once_and_each_question_finds_its_own(tmp_path: Path) -> None:
    import bench_long_documents as bench

    data = bench.ROOT.parent / "shared" / "data" / "pubmedqa"
    if not data.is_dir():
        pytest.skip(f"PubMedQA data not found at {data}")
    words = 3000
    corpus = bench.long_document_task(data, tmp_path, words)
    documents = bench.read_jsonl(tmp_path / "corpus.jsonl")
    assert corpus["documents"] == len(documents) and corpus["words_median"] >= words
    assert all(len(d["text"].split()) >= words for d in documents[:-1])  # only the last may be shorter
    sections = bench.read_jsonl(data / "corpus.jsonl")
    text_of = {d["id"]: d["text"] for d in documents}
    abstracts: dict[str, list[str]] = {}
    for section in sections:
        abstracts.setdefault(str(section["pmid"]), []).append(section["text"])
    joined = "\n\n".join(text_of.values())
    assert all(joined.count(" ".join(texts)) == 1 for texts in abstracts.values())  # every abstract, once
    for question in bench.read_jsonl(tmp_path / "pubmedqa.jsonl"):
        assert " ".join(abstracts[str(question["id"])]) in text_of[question["document"]]


def test_corpus_scale_passages_and_vectors_are_seeded_and_recall_counts_the_exact_top_k() -> None:
    import bench_corpus_scale as bench
    import numpy as np

    assert bench.synthetic_passages(3) == bench.synthetic_passages(3) != bench.synthetic_passages(3, seed=1)
    assert all(90 <= len(p.split()) <= 160 for p in bench.synthetic_passages(20))
    vectors = bench.synthetic_vectors(50, seed=1)
    assert vectors.shape == (50, bench.DIM) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, bench.synthetic_vectors(50, seed=1)) and not np.array_equal(
        vectors, bench.synthetic_vectors(50, seed=2)
    )
    assert [bench.nlist_for(n) for n in (10_000, 100_000, 1_000_000)] == [128, 256, 1024]
    exact = np.array([[1, 2, 3], [4, 5, -1]])
    assert bench.recall_at_k(exact, exact) == 1.0
    assert bench.recall_at_k(np.array([[1, 9, 8], [5, -1, -1]]), exact) == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_corpus_scale_records_every_index_with_flat_recalling_itself(tmp_path: Path) -> None:
    """A tiny in-process run of the corpus-scale benchmark: the record's shape, flat's recall against its own
    exact results, alternating indexes, and the paper arithmetic."""
    import bench_corpus_scale as bench

    args = ["--sizes", "600", "--queries", "20", "--embed-passages", "8", "--stub-passages", "100", "--threads", "1"]
    path = bench.main(
        [*args, "--embedder", "tiny", "--in-process", "--largest-repeats", "3", "--out", str(tmp_path / "c.json")]
    )
    record = json.loads(path.read_text())
    summary, indexes = record["summary"], record["summary"]["indexes"]["600"]
    assert set(indexes) == {"flat", "hnsw", "ivfpq"} and indexes["ivfpq"]["index"] == "IVF32,PQ48np"
    assert indexes["flat"]["recall_at_k"]["min"] == 1.0 and indexes["flat"]["repeats"] == 3
    assert all(0.0 <= indexes[a]["recall_at_k"]["median"] <= 1.0 for a in ("hnsw", "ivfpq"))
    assert indexes["flat"]["bytes_per_vector"]["median"] >= bench.DIM * 4
    assert [r["order"] for r in record["repeats"] if r["part"] == "index"] == _common.alternating_orders(
        ["flat", "hnsw", "ivfpq"], 3
    )
    assert {"model_cold", "model_hit", "stub_cold", "stub_hit"} <= set(summary["embedding"])
    paper = summary["paper_estimates"]["10,000,000"]
    assert paper["flat"]["bytes_by_arithmetic"] == 10_000_000 * 384 * 4
    assert paper["hnsw"]["bytes_by_arithmetic"] == 10_000_000 * (384 * 4 + 2 * 32 * 4)
    assert paper["ivfpq"]["bytes_by_arithmetic"] == 10_000_000 * (48 + 8) + 4096 * 384 * 4
    assert summary["conclusions"]["statement"] and len(summary["paper_estimates"]["implications"]) == 2
    assert {"start", "end", "shared_machine"} <= set(record["settings"]["load_average"])


def test_launcher_record_reads_runs_csv_rows_and_checks_every_launcher_scores_the_same(tmp_path: Path) -> None:
    import csv

    import bench_launchers as bench

    def table(launcher: str, threads: int, accuracy: float) -> Path:
        folder = tmp_path / launcher / "medical_reports"
        folder.mkdir(parents=True)
        rows = [
            {"arm": arm, "status": "finished", "launcher": launcher, "torch_threads": str(threads), "wall_s": "12.5",
             "cost_rss_at_start_mb": "700.0", "cost_peak_rss_mb": str(1000.0 + 100 * i + threads),
             "cost_train_peak_rss_mb": "1200.5" if arm == "lora" else "", "cost_generate_peak_rss_mb": "900.0",
             "field_accuracy": str(accuracy if arm == "lora" else 0.5), "rouge_l": "0.25"}
            for i, arm in enumerate(bench.ARMS)
        ]  # fmt: skip
        with (folder / "runs.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return tmp_path / launcher

    records = [
        {"launcher": name, "returncode": 0, "sweep_wall_s": 60.0, "tree_peak_rss_mb": 2000.0,
         "arms": bench.arm_rows(bench.read_rows(table(name, threads, 0.75)))}
        for name, threads in (("basic", 2), ("submitit_local", 2), ("joblib", 1))
    ]  # fmt: skip
    lora = records[0]["arms"]["lora"]
    assert lora["cost_train_peak_rss_mb"] == 1200.5 and lora["torch_threads"] == 2 and lora["launcher"] == "basic"
    assert records[0]["arms"]["zero_shot"]["cost_train_peak_rss_mb"] is None
    summary = bench.summarise(records)
    assert summary["same_metrics"] is True and summary["all_finished"] is True and summary["wall_note"]
    memory = summary["memory_mb"]
    assert (
        memory["joblib"]["rag"]["peak_minus_basic_mb"] == -1.0 and "peak_minus_basic_mb" not in memory["basic"]["rag"]
    )
    assert memory["basic"]["sum_of_run_peaks_mb"] == 1002.0 + 1102.0 + 1202.0
    assert bench.read_rows(tmp_path / "nothing") == []

    records[2]["arms"] = bench.arm_rows(bench.read_rows(table("other", 1, 0.7)))
    changed = bench.summarise(records)
    assert changed["same_metrics"] is False
    assert [(d["arm"], d["score"]) for d in changed["differing"]] == [("lora", "field_accuracy")]


def test_resume_record_pairs_checkpoint_runs_finds_progress_steps_and_compares_losses(tmp_path: Path) -> None:
    import bench_resume as bench

    def run(seconds: float, saves: int, loss: float = 2.0) -> dict:
        size = {"total": 10, "adapter": 4}
        return {"seconds": seconds, "tokens": 100, "train_loss": loss, "saves": saves, "save_s": [0.5] * saves,
                "checkpoint_bytes": size}  # fmt: skip

    records = [
        {"arms": {"no_checkpoints": run(10.0, 0), "checkpoint_every_4": run(11.0, 2)}},
        {"arms": {"no_checkpoints": run(20.0, 0), "checkpoint_every_4": run(21.0, 2)}},
        {"arms": {"no_checkpoints": run(10.0, 0), "checkpoint_every_4": run(12.0, 2)}},
    ]
    summary = bench.overhead_summary(records)
    ratio = summary["time_ratio_checkpoint_over_none"]
    assert ratio["per_repeat"] == pytest.approx([1.1, 1.05, 1.2]) and ratio["median"] == pytest.approx(1.1)
    assert summary["extra_s_per_save_from_difference"]["median"] == pytest.approx(0.5)
    assert summary["save_s"]["n"] == 6 and summary["same_loss_every_repeat"] is True

    for step, files in ((4, {"optimizer.pt": 30, "adapter_model.safetensors": 20}), (12, {"optimizer.pt": 31})):
        folder = tmp_path / "work" / "key" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for name, size in {**files, "rng_state.pth": 5, "trainer_state.json": 2}.items():
            (folder / name).write_bytes(b"x" * size)
    size = bench.checkpoint_bytes(tmp_path / "work")
    assert (size["checkpoint"], size["total"], size["optimizer"], size["rng"], size["other"]) == (
        "checkpoint-12",
        38,
        31,
        5,
        2,
    )
    assert bench.checkpoint_bytes(tmp_path / "none") == {"total": 0, "files": {}}

    chunks = [(1.0, "Map: 48/48 [00:00]\r  0%|   | 0/12 [00:00<?]"), (5.0, "\r 42%|  | 5/1"), (5.1, "2 [00:05<00:07]")]
    assert bench.first_step_times(chunks, 12) == {0: 1.0, 5: 5.1}
    assert bench.max_relative_difference([1.0, 2.2], [1.0, 2.0]) == pytest.approx(0.1)
    assert bench.max_relative_difference([1.0], [1.0, 2.0]) is None

    def resumed(wall: float, losses: list[float]) -> dict:
        return {"wall_s": wall, "to_training_start_s": 30.0, "train_s": 90.0, "resumed_from_step": 4, "train_steps": 12,
                "train_tokens": 999, "train_loss": 2.0, "loss_history": losses}  # fmt: skip

    reference = {**resumed(150.0, [3.0, 2.0, 1.0]), "resumed_from_step": None, "to_training_start_s": 25.0}
    repeats = [{"killed": {"wall_s": 60.0, "to_training_start_s": 26.0, "lost_s": 0.2}, "resumed": resumed(w, losses)}
               for w, losses in ((120.0, [3.0, 2.0, 1.0]), (130.0, [3.0, 2.0, 1.01]))]  # fmt: skip
    result = bench.resume_summary(repeats, reference)
    assert result["interruption_cost_s"]["median"] == pytest.approx(35.0) and result["repeats"] == 2
    assert result["loss_history_max_rel_diff"] == pytest.approx(0.01) and result["same_steps_and_tokens"] is True
    assert result["restart_to_training_s"]["median"] == 30.0 and result["fresh_start_to_training_s"]["median"] == 26.0
