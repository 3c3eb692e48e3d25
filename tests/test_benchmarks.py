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
