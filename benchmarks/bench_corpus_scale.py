"""The retrieval stage at corpus scale: embedding (cold, and from ragft's cache), index build, search, memory
and recall@k at 10k, 100k and 1M passages for flat, HNSW and IVF-PQ indexes; on paper, 10M and 100M.

    python benchmarks/bench_corpus_scale.py          # 10k, 100k (3 repeats each), 1M (1): ~20 min on 2 cores
    python benchmarks/bench_corpus_scale.py --tiny   # tiny embedder, 2,000 vectors, in-process: a smoke run

Embedding: `Embedder.embed_timed` (MiniLM) on seeded clinic-style passages, in an empty artefact cache
(`model_cold`) and from one holding them (`model_hit`); `stub_*`: ragft's caching path alone (`embed_cached`)
at 100k passages, with an encoder returning random vectors. Larger corpora are extrapolated linearly.
Indexes: seeded, clustered synthetic unit vectors of 384 dimensions (low intrinsic dimension, like real
embeddings), built by ragft's `DenseRetriever.build` (FAISS train + add, written to and read back from the
cache) via a stand-in embedder and searched with `DenseRetriever.search`: flat and HNSW as conf/retriever's
dense_flat and dense_hnsw presets; IVF-PQ as `IVF{sqrt(n) as a power of 2},PQ48np`, nprobe 16 (not a preset:
dense_pq's IVF2,PQ16x3 suits hundreds of passages). Each build runs in a fresh process and an empty cache
(its peak memory is its own); the indexes alternate (A B C, C B A, ...); recall@k is against flat's results.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault(
    "OMP_WAIT_POLICY", "PASSIVE"
)  # idle OpenMP threads sleep: on a shared machine spinning ones stall

import _common as common
import numpy as np
from tqdm.auto import tqdm

BENCH = "bench_corpus_scale"
DIM, CLUSTERS, LATENT, CLUSTER_SD, NOISE_SD = 384, 1000, 48, 0.5, 0.1
PQ_M, NPROBE = 48, 16
PRESETS = {"flat": "dense_flat", "hnsw": "dense_hnsw", "ivfpq": "dense_pq"}
PAPER_SIZES = (10_000_000, 100_000_000)
ID_BYTES = 8  # FAISS stores an int64 id per vector in an inverted list
RAM_USABLE = 0.5  # share of a machine's memory an index may take (the rest: OS, vectors, the model)
GPU_ASSUMED = {"tflops_sustained": 50.0, "memory_gb": 80.0, "source": "assumption, not measured (no GPU here): an 80 GB "
    "A100/H100-class GPU sustaining 50 TFLOP/s on fp16 encoder matmuls, about a sixth of an A100's 312 TFLOP/s fp16 peak"}  # fmt: skip
CLINIC = ("protocols_v1.jsonl", "notes.jsonl")
UNITS = ("mg", "ml", "weeks", "days", "hours", "mmol/L", "units", "%")


def synthetic_passages(n: int, seed: int = 0) -> list[str]:
    """n clinic-protocol-like passages of 90-130 words: seeded sentences of 6-16 words drawn (as often as
    they occur) from the shipped clinic protocols and notes, with a dose or interval ("25 mg") in each."""
    rows = [json.loads(line) for name in CLINIC for line in (common.ROOT / "corpora" / "clinic" / name).open()]
    vocab = [w for row in rows for w in re.findall(r"[A-Za-z][\w-]*", row.get("text", row.get("note", "")))]
    rng = random.Random(seed)
    passages = []
    for i in range(n):
        words: list[str] = [f"Protocol {i}:"]
        target = rng.randint(90, 130)
        while len(words) < target:
            sentence = [rng.choice(vocab) for _ in range(rng.randint(6, 16))]
            sentence[rng.randrange(len(sentence))] = f"{rng.randint(1, 500)} {rng.choice(UNITS)}"
            words.extend([sentence[0].capitalize(), *sentence[1:-1], sentence[-1] + "."])
        passages.append(" ".join(words))
    return passages


def synthetic_vectors(n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """n clustered unit vectors (float32, DIM): every call shares the clusters and the latent map
    (seed 0), `seed` draws the points, so corpus and queries come from one distribution."""
    shared = np.random.default_rng(0)
    centres = shared.standard_normal((CLUSTERS, LATENT), dtype=np.float32)
    mapping = shared.standard_normal((LATENT, DIM), dtype=np.float32) / np.float32(math.sqrt(LATENT))
    rng, out = np.random.default_rng(seed + 1), np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        latent = centres[rng.integers(0, CLUSTERS, m)] + CLUSTER_SD * rng.standard_normal((m, LATENT), np.float32)
        x = latent @ mapping + NOISE_SD * rng.standard_normal((m, DIM), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def nlist_for(n: int) -> int:
    """IVF cells: sqrt(n) rounded to a power of two (at least 1)."""
    return max(1, 2 ** round(math.log2(math.sqrt(n))))


class VectorEmbedder:
    """Stands in for `Embedder` inside `DenseRetriever`: the corpus' texts are "p<i>" and the queries'
    "q<i>"; it returns their precomputed vectors, so the retriever's index code is timed on its own."""

    path = "synthetic-vectors"

    def __init__(self, corpus: np.ndarray, queries: np.ndarray) -> None:
        self.corpus, self.queries = corpus, queries

    def embed_timed(self, texts: Sequence[str]) -> tuple[np.ndarray, float]:
        return self.corpus, 0.0  # computing them costs nothing here: reindex_s is then the index build alone

    def embed(self, texts: Sequence[str], cache: bool = True) -> np.ndarray:
        return self.queries[[int(t[1:]) for t in texts]]


def index_run(
    size: int, spec: str, params: dict[str, Any], queries: int, k: int, threads: int, own: bool
) -> dict[str, Any]:
    """Index `size` synthetic vectors with ragft's DenseRetriever in an empty cache and search `queries` others:
    times, memory, bytes, ids found. `own`: a process of its own (memory released first, not worth it else)."""
    import faiss

    from ragft.record.memory import PeakMemory
    from ragft.retrieval.dense import DenseRetriever
    from ragft.types import Passage

    common.set_threads(threads)
    faiss.omp_set_num_threads(threads)
    corpus, query_vectors = synthetic_vectors(size, seed=1), synthetic_vectors(queries, seed=2)
    passages = [Passage(id=str(i), text=f"p{i}") for i in range(size)]
    retriever = DenseRetriever(VectorEmbedder(corpus, query_vectors), index=spec, search_params=params)  # type: ignore[arg-type]
    with common.empty_artefact_cache(), PeakMemory(f"{spec} over {size}", release=own) as memory:
        start = time.perf_counter()
        cost = retriever.build(passages)
        build_s = time.perf_counter() - start
    asked = [f"q{i}" for i in range(queries)]
    retriever.search(asked[:10], k)  # untimed warm-up
    start = time.perf_counter()
    found = retriever.search(asked, k)
    search_s = time.perf_counter() - start
    peak = memory.record()
    return {
        "size": size, "index": spec, "search_params": params, "build_s": build_s,
        "ragft_index_build_s": cost.index_build_s, "train_add_write_s": cost.reindex_s,
        "index_bytes": cost.index_bytes, "bytes_per_vector": cost.index_bytes / size,
        "peak_rss_mb": peak.peak_rss_mb, "rss_at_start_mb": peak.rss_at_start_mb, "peak_source": peak.peak_source,
        "search_s": search_s, "queries": queries, "ms_per_query": 1000 * search_s / queries, "queries_per_s": queries / search_s,
        "ids": np.array([[int(p.id) for p in row] + [-1] * (k - len(row)) for row in found], dtype=np.int64),
    }  # fmt: skip


def in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """`fn(*args)` in a spawned process of its own, so that its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top k that was found (ids, -1 for none)."""
    return float(np.mean([len(set(f[f >= 0]) & set(e[e >= 0])) / max(1, (e >= 0).sum()) for f, e in zip(found, exact)]))


def index_specs(size: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """Index string and search parameters per arm: ragft's presets; IVF-PQ scaled to the corpus."""
    specs = {}
    for arm, preset in PRESETS.items():
        node = common.compose([f"retriever={preset}"]).retriever
        specs[arm] = (str(node.index), dict(node.search_params))
    specs["ivfpq"] = (f"IVF{nlist_for(size)},PQ{PQ_M}np", {"nprobe": NPROBE})
    return specs


def index_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every size: every index in alternating order, repeated; recall against flat's first repeat."""
    records, run = [], in_fresh_process if args.fresh else (lambda fn, *a: fn(*a))
    plan = [(size, args.largest_repeats if size == max(args.sizes) else args.repeats) for size in args.sizes]
    bar = tqdm(total=sum(r * len(PRESETS) for _, r in plan), desc="index builds", unit="build")
    for size, repeats in plan:
        specs, rows = index_specs(size), []
        for repeat, order in enumerate(common.alternating_orders(list(specs), repeats)):
            arms = {}
            for arm in order:
                bar.set_postfix_str(f"{arm} over {size:,}")
                arms[arm] = run(index_run, size, *specs[arm], args.queries, args.k, args.threads, args.fresh)
                bar.update()
            rows.append({"part": "index", "size": size, "repeat": repeat, "order": order, "arms": arms})
        exact = rows[0]["arms"]["flat"]["ids"]
        for row in rows:
            for result in row["arms"].values():
                result["recall_at_k"] = recall_at_k(result.pop("ids"), exact)
        records.extend(rows)
    bar.close()
    return records


def index_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per size and index: the spread of every figure; per size, search speed against flat per repeat."""
    keys = ("build_s", "ms_per_query", "queries_per_s", "recall_at_k", "peak_rss_mb", "index_bytes", "bytes_per_vector")
    summary: dict[str, Any] = {}
    for size in dict.fromkeys(r["size"] for r in records):
        rows = [r for r in records if r["part"] == "index" and r["size"] == size]
        arms = {a: {k: common.spread([r["arms"][a][k] for r in rows]) for k in keys} for a in rows[0]["arms"]}
        for arm, figures in arms.items():
            figures["index"], figures["repeats"] = rows[0]["arms"][arm]["index"], len(rows)
            figures["search_params"] = rows[0]["arms"][arm]["search_params"]
            if arm != "flat":
                qps = [[r["arms"][a]["queries_per_s"] for r in rows] for a in (arm, "flat")]
                figures["search_speedup_vs_flat"] = common.paired_ratios(*qps)
        summary[str(size)] = arms
    return summary


def stub_encode(texts: list[str], **_: Any) -> np.ndarray:
    """A stand-in SentenceTransformer's `encode` for ragft's `embed_cached`: random unit vectors, no model time."""
    x = np.random.default_rng(len(texts)).standard_normal((len(texts), DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cache_arms(label: str, embed: Callable[[], Any], passages: int, tokens: int, hit_cache: Path) -> dict[str, Any]:
    """Two arms: `<label>_cold` embeds in an empty artefact cache, then copies what it cached into
    `hit_cache` (untimed); `<label>_hit` reads them from `hit_cache` (the cache the last cold run filled)."""

    def timed() -> dict[str, Any]:
        start = time.perf_counter()
        np.asarray(embed()[0]).sum()  # a large cache hit is memory-mapped: read it, as indexing would
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "tokens": tokens, "passages": passages, "passages_per_s": passages / seconds}

    def cold() -> dict[str, Any]:
        with common.empty_artefact_cache() as scratch:
            result = timed()
            shutil.copytree(scratch / "embeddings", hit_cache / "embeddings", dirs_exist_ok=True)
        return result

    return {f"{label}_cold": cold, f"{label}_hit": timed}


def embedding_benchmark(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cold and cache-hit embedding with the configured embedder, and ragft's caching path at
    `--stub-passages` with the stub encoder; the embedder's shape and the passages' token counts."""
    from hydra.utils import instantiate

    from ragft.retrieval.embeddings import embed_cached

    embedder = instantiate(common.compose([f"embedder={args.embedder}"]).embedder)
    texts, stub_texts = synthetic_passages(args.embed_passages), synthetic_passages(args.stub_passages, seed=1)
    start, model = time.perf_counter(), embedder.model  # the model loads here
    embedder.encode(texts[:64], progress=False)  # and warms up; untimed
    facts = {"name": embedder.name, "load_and_warm_s": time.perf_counter() - start, "window": embedder.window}
    lengths = [len(ids) for ids in embedder.tokenizer(texts)["input_ids"]]
    tokens, config = sum(min(n, model.max_seq_length) for n in lengths), model[0].auto_model.config
    facts |= {"tokens_mean": tokens / len(texts), "tokens_max": max(lengths), "over_window": sum(n > model.max_seq_length for n in lengths),
              "layers": config.num_hidden_layers, "hidden": config.hidden_size, "ffn": config.intermediate_size}  # fmt: skip
    with common.empty_artefact_cache() as hit_cache:
        stub = SimpleNamespace(encode=stub_encode, ragft_path="stub")  # no tokens counted: no model reads them
        arms = {
            **cache_arms("model", lambda: embedder.embed_timed(texts), len(texts), tokens, hit_cache),
            **cache_arms("stub", lambda: embed_cached(stub, stub_texts), len(stub_texts), 0, hit_cache),
        }
        records = common.run_repeats(arms, args.repeats, log=tqdm.write)
    return [{"part": "embedding", **r} for r in records], facts


def embedding_summary(records: Sequence[dict[str, Any]], facts: dict[str, Any]) -> dict[str, Any]:
    """Spread per arm; FLOPs per passage (BERT: L x T x (8H^2 + 4HI + 4TH)); the FLOP/s the cold rate implies."""
    rows = [r for r in records if r["part"] == "embedding"]
    keys = ("seconds", "passages_per_s")
    arms = {a: {k: common.spread([r["arms"][a][k] for r in rows]) for k in keys} for a in rows[0]["arms"]}
    t, h = facts["tokens_mean"], facts["hidden"]
    flops = facts["layers"] * t * (8 * h * h + 4 * h * facts["ffn"] + 4 * t * h)
    rate = arms["model_cold"]["passages_per_s"]["median"]
    return {**arms, "flops_per_passage": flops, "implied_gflops_sustained": rate * flops / 1e9, "embedder": facts}


def conclusions(emb: dict[str, Any], idx: dict[str, Any], largest: int, hour_s: float = 3600.0) -> dict[str, Any]:
    """The largest corpus two cores embed and index in an hour, per index, from the measured rates (index
    build rate at the largest measured size; HNSW's slows as n grows, so beyond it this is optimistic)."""
    rate, hit_rate = emb["model_cold"]["passages_per_s"]["median"], emb["stub_hit"]["passages_per_s"]["median"]
    out: dict[str, Any] = {"embed_passages_per_s_cold": rate, "embed_only_passages_per_hour": hour_s * rate}
    out["embed_extrapolated_linearly"] = {f"{n:,}": {"cold_hours": n / rate / 3600, "cache_hit_s": n / hit_rate}
                                          for n in (10_000, 100_000, 1_000_000, *PAPER_SIZES)}  # fmt: skip
    for arm, s in idx[str(largest)].items():
        build_rate = largest / s["build_s"]["median"]
        out[arm] = {"build_vectors_per_s": build_rate, "index_only_vectors_per_hour": hour_s * build_rate,
                    "embed_and_index_passages_per_hour": hour_s / (1 / rate + 1 / build_rate),
                    "embedding_share_of_time": (1 / rate) / (1 / rate + 1 / build_rate)}  # fmt: skip
    per_hour = ", ".join(f"{a} {out[a]['embed_and_index_passages_per_hour']:,.0f}" for a in PRESETS)
    builds = ", ".join(f"{a} {out[a]['build_vectors_per_s']:,.0f}" for a in PRESETS)
    share = min(out[a]["embedding_share_of_time"] for a in PRESETS)
    out["statement"] = (
        f"Two cores embed (~{emb['embedder']['tokens_mean']:.0f}-token passages at {rate:.1f} passages/s) and index "
        f"about {max(out[a]['embed_and_index_passages_per_hour'] for a in PRESETS):,.0f} passages in an hour "
        f"({per_hour}); embedding takes {share:.1%} or more of that hour. With the embeddings already cached, the "
        f"index alone builds at {builds} vectors/s (measured at {largest:,}, extrapolated linearly)."
    )
    return out


def paper_estimates(emb: dict[str, Any], idx: dict[str, Any], largest: int, ram_bytes: int) -> dict[str, Any]:
    """10M and 100M passages on paper: embedding time, index memory (bytes per vector), shards and GPUs."""
    rate, top = emb["model_cold"]["passages_per_s"]["median"], idx[str(largest)]
    links = int(re.search(r"HNSW(\d+)", top["hnsw"]["index"]).group(1))
    gpu_rate = GPU_ASSUMED["tflops_sustained"] * 1e12 / emb["flops_per_passage"]
    out: dict[str, Any] = {"assumptions": {"gpu": GPU_ASSUMED, "ram_usable_share": RAM_USABLE, "ram_bytes": ram_bytes,
        "gpu_embed_passages_per_s": gpu_rate, "hnsw_links_per_vector": 2 * links, "id_bytes": ID_BYTES}}  # fmt: skip
    for n in PAPER_SIZES:
        nlist = nlist_for(n)
        arithmetic = {"flat": n * DIM * 4, "hnsw": n * (DIM * 4 + 2 * links * 4),
                      "ivfpq": n * (PQ_M + ID_BYTES) + nlist * DIM * 4}  # fmt: skip
        per_index = {}
        for arm, nbytes in arithmetic.items():
            measured = top[arm]["bytes_per_vector"]["median"] * n
            scale = {"flat": n / largest, "hnsw": math.log2(n) / math.log2(largest),
                     "ivfpq": (n / nlist) / (largest / nlist_for(largest))}[arm]  # fmt: skip
            shards = math.ceil(max(nbytes, measured) / (RAM_USABLE * ram_bytes))
            per_index[arm] = {
                "bytes_by_arithmetic": nbytes, "bytes_from_measured_per_vector": measured,
                "machines_like_this_one": shards, "gpus_assumed_80gb": math.ceil(nbytes / (GPU_ASSUMED["memory_gb"] * 1e9)),
                "build_hours_at_measured_rate": n / (largest / top[arm]["build_s"]["median"]) / 3600,
                "search_ms_per_query_one_machine": top[arm]["ms_per_query"]["median"] * scale,
                "search_ms_per_query_sharded": top[arm]["ms_per_query"]["median"] * scale / shards,
            }  # fmt: skip
        out[f"{n:,}"] = {"embed_cpu_hours_two_cores": n / rate / 3600, "embed_cores_for_one_day": n / rate / 86400 * 2,
            "embed_gpu_hours_assumed": n / gpu_rate / 3600, "embeddings_cache_bytes": n * DIM * 4, "ivf_nlist": nlist,
            **per_index}  # fmt: skip
    out["search_scaling"] = ("flat: linear in n; hnsw: log2(n) hops (what HNSW is built for, not measured past "
        f"{largest:,}); ivfpq: codes scanned per query, nprobe x n / nlist. Sharded: the shards searched in parallel "
        "(faiss IndexShards on one machine, or one server per shard and the top k merged), not counting the merge.")  # fmt: skip
    out["implications"] = implications(out)
    return out


def implications(est: dict[str, Any]) -> list[str]:
    """What the paper figures mean, in sentences built from them."""
    lines = []
    for n in PAPER_SIZES:
        e = est[f"{n:,}"]
        memory = "; ".join(
            f"{a} {e[a]['bytes_by_arithmetic'] / 1e9:,.1f} GB: {e[a]['machines_like_this_one']} shard(s) on machines like "
            f"this one, {e[a]['gpus_assumed_80gb']} x 80 GB GPU(s) with faiss-gpu" for a in PRESETS
        )  # fmt: skip
        lines.append(
            f"{n:,} passages: embedding {e['embed_cpu_hours_two_cores']:,.0f} h on two cores "
            f"({e['embed_cores_for_one_day']:,.0f} cores for one day) or {e['embed_gpu_hours_assumed']:.2f} h on one "
            f"GPU at the assumed rate; {memory}."
        )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="corpus sizes")
    parser.add_argument("--repeats", type=int, default=3, help="runs per index below the largest size, at least 3")
    parser.add_argument("--largest-repeats", type=int, default=1, help="runs per index at the largest size")
    parser.add_argument("--queries", type=int, default=1000, help="queries per search")
    parser.add_argument("--k", type=int, default=10, help="passages per query")
    parser.add_argument("--embed-passages", type=int, default=2000, help="passages embedded by the model")
    parser.add_argument("--stub-passages", type=int, default=100_000, help="passages through the cache path")
    parser.add_argument("--embedder", default="minilm", help="embedder config (conf/embedder)")
    parser.add_argument("--threads", type=int, default=2, help="torch and FAISS threads")
    parser.add_argument("--in-process", dest="fresh", action="store_false", help="no fresh process per build")
    parser.add_argument("--tiny", action="store_true", help="tiny embedder, 2,000 vectors, in-process: a smoke run")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_corpus_scale.json)")
    args = parser.parse_args(argv)
    common.check_repeats(args.repeats)
    if args.tiny:
        args.sizes, args.largest_repeats, args.queries, args.fresh, args.embedder = [2000], 3, 50, False, "tiny"
        args.embed_passages, args.stub_passages = 32, 500
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    import faiss
    import psutil

    args = parse_args(argv)
    load_start = os.getloadavg()
    threads = common.set_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    embedding_records, facts = embedding_benchmark(args)
    index_records = index_benchmark(args)
    emb, idx, largest = embedding_summary(embedding_records, facts), index_summary(index_records), max(args.sizes)
    ram = psutil.virtual_memory().total
    summary = {"embedding": emb, "indexes": idx, "conclusions": conclusions(emb, idx, largest),
               "paper_estimates": paper_estimates(emb, idx, largest, ram)}  # fmt: skip
    load_end, omp = os.getloadavg(), os.environ.get("OMP_WAIT_POLICY")
    settings = {
        "sizes": args.sizes, "repeats": {str(s): args.largest_repeats if s == largest else args.repeats for s in args.sizes},
        "queries": args.queries, "k": args.k, "threads": {"torch": threads, "faiss": args.threads, "OMP_WAIT_POLICY": omp},
        "faiss": faiss.__version__, "fresh_process_per_build": args.fresh, "embedder": args.embedder,
        "embed_passages": args.embed_passages, "stub_passages": args.stub_passages, "tiny": args.tiny,
        "ivfpq": f"IVF{{sqrt(n) as a power of 2}},PQ{PQ_M}np, nprobe {NPROBE}: not a ragft preset; np: no polysemous "
        "training, a fixed cost at any n that ragft's search (no polysemous_ht) never uses",
        "vectors": f"{CLUSTERS} Gaussian clusters (sd {CLUSTER_SD}) in {LATENT} dims, mapped linearly to {DIM}, noise sd "
        f"{NOISE_SD}, unit-normalised; queries: held-out draws", "build_s": "DenseRetriever.build: content key, train + "
        "add, write and read back (train_add_write_s: ragft's own record)", "load_average": {"start": load_start,
        "end": load_end, "shared_machine": max(load_start[0], load_end[0]) > 0.5},
    }  # fmt: skip
    path = common.result_path(BENCH, args.out, args.tiny)
    return common.write_result(path, BENCH, settings, embedding_records + index_records, summary)


if __name__ == "__main__":
    main()
