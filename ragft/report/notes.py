"""What each report section and metric means: one text for both renderings (Markdown inline syntax;
the HTML report turns `code` into <code> after escaping)."""

from __future__ import annotations

import html
import re

from markupsafe import Markup

from ragft.report.escape import md_code

SECTIONS = {  # {baseline}, {primary}, {base}: names from the runs, each rendered as code and escaped
    "failed": (
        "Runs that stopped with an error, at the stage named: they are in no table or figure below. The "
        "run's folder holds its log with the whole trace; the next identical job runs it again."
    ),
    "unreadable": (
        "Run folders whose record or predictions could not be read (damaged, or written by another version "
        "of ragft): they are in no table or figure. Delete such a folder and run its arm again to replace it."
    ),
    "quality": (
        "Mean over the test examples with a bootstrap 95% confidence interval; ▲ / ▼ mark a run "
        "significantly better / worse than the baseline {baseline} (paired permutation test on the same "
        "examples, p < 0.05 after Holm's adjustment for the number of comparisons in this report)."
    ),
    "seeds": (
        "Runs that differ only in their seed are one row: each example's score is averaged over the seeds, "
        "the interval is bootstrapped over examples, and `sd` is the standard deviation of the seeds' means."
    ),
    "breakdown": (
        "{primary} on each group of test examples the task marks (`task.data.breakdowns`), with its bootstrap "
        "95% interval and the group's size. For the clinic's reports, `knowledge`: `seen` where every protocol "
        "fact of the reference occurs in some training report, `unseen` where one occurs only in the corpus "
        "(a held-out condition x severity x age-group cell, or a condition no training note has). An arm that "
        "only memorised the training reports scores well on `seen` and not on `unseen`."
    ),
    "versus": (
        "Mean per-example difference from {baseline} on the same test examples, its paired-bootstrap 95% "
        "interval, the p-value of a paired permutation test (signs of the differences flipped at random) and, "
        "in brackets, that p-value Holm-adjusted over every comparison in this table (all runs and metrics), "
        "which keeps the chance of any false positive among them under 5%; `*` and the ▲ / ▼ markers follow "
        "the adjusted value. 0.0001 is the resolution of the 9,999 permutations (fine enough for the adjustment)."
    ),
    "methods": (
        "Each run's adaptation side by side: {primary} with its 95% interval, the share of the model's "
        "parameters it trained, what a deployment stores per task (an adapter beside one shared base model, "
        "or a full model copy), training wall time, tokens trained on per second (for a preference method, "
        "both sequences of each pair) and peak resident memory while training, the preference pairs a DPO or "
        "ORPO run trained on (how many, from where), and the change on each other test set against the base "
        "model (negative: forgotten). A DPO run's time, tokens and storage include its SFT stage's."
    ),
    "other_tests": (
        "Other test sets scored zero-shot after the run (`evaluate_also`: the general-knowledge set measures "
        "catastrophic forgetting), each on its task's primary metric. The change against {base} is the mean "
        "per-example difference with its paired-bootstrap 95% interval; `*` marks p < 0.05 (paired permutation test, "
        "Holm-adjusted over every run and test set of the table). "
        "A QLoRA run's change includes the 4-bit quantisation of its base, not only what training changed."
    ),
    "stages": (
        "Sequential fine-tuning: before training (the untrained model, zero-shot) and after each stage (rows), "
        "the score on the test set of that stage and of every earlier one (columns, in training order); a "
        "column that rises above its first row is what a stage taught, one that later falls is what a later "
        "stage made the model forget."
    ),
    "quality_cost": (
        "{primary} against the compute a run spent (training plus generating the test answers) and against "
        "its latency at batch 1 (one request answered alone, median). Filled points are the Pareto front: no "
        "other run is both cheaper and better."
    ),
    "cost": (
        "Measured in each run: trainable parameters (share of the model), what a deployment stores per task "
        "(adapter or full model copy, size on disk), training wall time, throughput and peak memory, prompt "
        "length (what demonstrations and passages cost), generation throughput at the configured batch size "
        "(the whole test set answered in batches), latency at batch 1 (seconds to answer one request alone, "
        "median and 95th percentile over a seeded sample of `generation.latency_sample` test examples), and "
        "peak resident memory of the generation and of the whole run. Each peak is the stretch's own: it "
        "starts from released memory (in brackets: what was resident then) and resets the kernel's peak counter."
    ),
    "curves": (
        "Quality against what each arm learns from, for arms run at several sizes of it (`+exp=data_efficiency`): "
        "training examples (`task.limits.train`: the fine-tuning data, and the pool few-shot draws from), "
        "demonstrations (`context.builder.k`), passages (`context.builder.top_k`); {primary} with its 95% "
        "interval at each point. Where two curves cross, the means change order; the intervals say how sure."
    ),
    "decision": (
        "What each arm measured in a team's units, and the arm these records recommend without constraints: "
        "the best strategy on {primary}, with the arms the test set cannot separate from it (paired permutation "
        "test, Holm-adjusted) as ties. Floors and ceilings are reference points, never recommended. One "
        "knowledge update costs re-training the generator where the arm trains it, and re-embedding and "
        "re-indexing the corpus where it retrieves. `python -m ragft.decide <experiment folder> max_latency_s=... "
        "max_memory_gb=... updates_per_month=... max_update_minutes=...` applies a team's constraints."
    ),
    "retrieval": (
        "Retrieval against the gold passages: `recall_at_k`, the share of gold documents among the passages "
        "the prompt carries; recall@k, MRR and nDCG of the retriever's ranking (to the context's `depth` "
        "documents, chunks counted as their document; an empty ranking scores 0); and what embedding and "
        "indexing the corpus cost."
    ),
    "leakage": (
        "Test examples that duplicate a train input (exact, or word n-gram Jaccard at or above "
        "`leakage.near_threshold`) or whose reference appears in a retrieval passage (verbatim, or that share "
        "of its n-grams in one passage). A leak inflates every run that trains on or retrieves the leaked text."
    ),
}

METRICS = {
    "field_accuracy": "`field_accuracy`: share of the reference's facts stated in the right report section.",
    "protocol_fact_accuracy": (
        "`protocol_fact_accuracy`: the facts that need the domain's own knowledge (the task config's "
        "`protocol_fields`)."
    ),
    "format_compliance": "`format_compliance`: share of outputs with every section, in order.",
    "embedding_similarity": (
        "`embedding_similarity`: cosine similarity of output and reference embeddings (the "
        "`evaluation.embedder`, the same for every run)."
    ),
    "groundedness": (
        "`groundedness`: share of the output's content words found in the passages its prompt carried "
        "(and in its input, unless the task sets `include_input: false`); retrieving runs only."
    ),
    "llm_judge": "`llm_judge`: the judge model's 1-5 grade against the reference, scaled to [0, 1].",
}


def inline_html(text: str) -> Markup:
    """Escape, then render `code` spans."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False)))


def section_markdown(text: str, names: dict[str, str]) -> str:
    """A section's note for report.md: each name a code span (shown as typed, whatever it holds)."""
    return text.format(**{key: md_code(value) for key, value in names.items()})


def section_html(text: str, names: dict[str, str]) -> Markup:
    """A section's note for report.html: escaped, each name in <code> (escaped as it goes in)."""
    return inline_html(text).format(**{key: Markup("<code>{}</code>").format(value) for key, value in names.items()})
