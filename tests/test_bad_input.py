"""The bad-input battery, config half: every command line a careless user might type gets exit status 2,
one line naming the key (what is wrong, how to fix it) and no file in the results folder.

Each case runs the command's steps in this process (tests/conftest.py `attempt`): the command line
checked before Hydra, the composed config validated before any work, the job's error printed as one
line, the report callback after it. Data files: tests/test_bad_data.py; faults: tests/test_faults.py.
"""

from __future__ import annotations

import pytest

from tests.conftest import assert_refused, attempt

RAG = ("context=rag",)
BM25 = ("context=rag", "retriever=bm25")
FT_RETRIEVER = ("context=rag", "retriever=dense_ft")
RAFT = ("arm=lora_raft",)
LORA = ("arm=lora",)
FEW = ("arm=few_shot",)
TOKENS = ("context=rag", "chunking=tokens")

CASES = [  # (case, overrides, what the one line says)
    # --- keys that do not exist, with and without `+` ---
    ("key-top-plus", ("+trainig.epochs=3",), "config `trainig`: is not a top-level setting (with or without `+`). Did you mean `training`?"),
    ("key-top", ("trainig.epochs=3",), "config `trainig`: is not a top-level setting (with or without `+`). Did you mean `training`?"),
    ("key-nested-plus", ("+training.epoch=3",), "config `training.epoch`: is not a setting of `training` (with or without `+`). Did you mean `training.epochs`?"),
    ("key-nested", ("training.epoch=3",), "config `training.epoch`: is not a setting of `training` (with or without `+`). Did you mean `training.epochs`?"),
    ("key-unknown-top", ("+foo=1",), "config `foo`: is not a top-level setting (with or without `+`)."),
    ("key-task", ("+task.foo=1",), "config `task.foo`: is not a setting of `task` (with or without `+`)."),
    ("key-generator", ("+generator.max_contex=9",), "config `generator.max_contex`: is not a setting of `generator` (with or without `+`). Did you mean `generator.max_context`?"),
    ("key-validation", ("+training.validation.patience=2",), "config `training.validation.patience`: is not a setting of `training.validation`"),
    ("key-component-plus", (*FT_RETRIEVER, "+retriever.finetune.epoch=1"), "config `retriever.finetune.epoch`: is not a setting of `ragft.retrieval.finetune.EmbedderFinetune` (with or without `+`). Did you mean `retriever.finetune.epochs`?"),
    ("key-component", (*RAG, "retriever.k=3"), "config `retriever.k`: is not a setting of `retriever` (with or without `+`)."),
    ("key-component-plus-retriever", (*RAG, "+retriever.k=3"), "config `retriever.k`: is not a setting of `ragft.retrieval.DenseRetriever` (with or without `+`)."),
    ("key-peft", (*LORA, "+adaptation.method.rr=3"), "config `adaptation.method.rr`: is not a setting of `peft.LoraConfig` (with or without `+`). Did you mean `adaptation.method.r`?"),
    ("key-builder", (*FEW, "+context.builder.kk=2"), "config `context.builder.kk`: is not a setting of `ragft.context.shots.FewShot` (with or without `+`). Did you mean `context.builder.k`?"),
    ("key-chunker", (*TOKENS, "+chunking.sizes=64"), "config `chunking.sizes`: is not a setting of `ragft.retrieval.chunking.TokenChunker` (with or without `+`). Did you mean `chunking.size`?"),
    ("key-embedder", ("+embedder.batchsize=4",), "config `embedder.batchsize`: is not a setting of `ragft.retrieval.Embedder` (with or without `+`). Did you mean `embedder.batch_size`?"),
    ("key-group-name", ("+adaptation.name=x",), "config `adaptation.name`: is not a setting of `adaptation` (with or without `+`). A group's name is its file name"),
    ("target-attribute", (*LORA, "adaptation.method._target_=peft.LoraConfigg"), "config `adaptation.method._target_`: cannot import 'peft.LoraConfigg': 'peft' has no 'LoraConfigg'. Did you mean 'peft.LoraConfig'?"),
    ("target-module", (*LORA, "adaptation.method._target_=pefty.LoraConfig"), "config `adaptation.method._target_`: cannot import 'pefty.LoraConfig': no module 'pefty' is installed."),
    # --- config group options ---
    ("group-arm", ("arm=lora_rga",), "config `arm`: has no option 'lora_rga' (conf/arm/ has no lora_rga.yaml). Did you mean `arm=lora_rag`?"),
    ("group-exp", ("+exp=medical_report",), "config `exp`: has no option 'medical_report' (conf/exp/ has no medical_report.yaml). Did you mean `+exp=medical_reports`?"),
    ("group-task", ("task=clinicqa",), "config `task`: has no option 'clinicqa'"),
    ("group-quoted", ("arm='lora_rga'",), "config `arm`: has no option 'lora_rga' (conf/arm/ has no lora_rga.yaml)."),
    ("group-retriever", ("retriever=bm52",), "config `retriever`: has no option 'bm52'"),
    ("group-sweep", ("arm=lora,ragg",), "config `arm`: has no option 'ragg'"),
    ("group-package", ("+task@evaluate_also.g=general_qaa",), "config `task@evaluate_also.g`: has no option 'general_qaa' (conf/task/ has no general_qaa.yaml). Did you mean `+task@evaluate_also.g=general_qa`?"),
    ("group-null", ("generator@evaluation.judge=null",), "config `generator@evaluation.judge`: cannot be set to null on the command line. Remove the option with `~generator@evaluation.judge`."),
    # --- numbers: types and ranges ---
    ("training-batch-zero", ("training.batch_size=0",), "config `training.batch_size`: 0 is not allowed. Set it to a whole number > 0."),
    ("training-batch-negative", ("training.batch_size=-1",), "config `training.batch_size`: -1 is not allowed. Set it to a whole number > 0."),
    ("training-batch-fraction", ("training.batch_size=2.5",), "config `training.batch_size`: 2.5 is not allowed. Set it to a whole number > 0."),
    ("learning-rate-zero", (*LORA, "training.learning_rate=0"), "config `training.learning_rate`: 0 is not allowed. Set it to a number > 0, or null."),
    ("learning-rate-negative", (*LORA, "training.learning_rate=-1"), "config `training.learning_rate`: -1 is not allowed."),
    ("learning-rate-null", (*LORA, "training.learning_rate=null"), "config `training.learning_rate`: is null, but the adaptation trains."),
    ("epochs-zero", (*LORA, "training.max_steps=null", "training.epochs=0"), "config `training.epochs`: 0 is not allowed. Set it to a number > 0."),
    ("max-steps-zero", (*LORA, "training.max_steps=0"), "config `training.max_steps`: 0 is not allowed. Set it to a whole number > 0, or null."),
    ("max-steps-fraction", (*LORA, "training.max_steps=1.5"), "config `training.max_steps`: 1.5 is not allowed."),
    ("warmup-negative", ("training.warmup_steps=-1",), "config `training.warmup_steps`: -1 is not allowed. Set it to a whole number >= 0."),
    ("accumulation-zero", ("training.gradient_accumulation_steps=0",), "config `training.gradient_accumulation_steps`: 0 is not allowed."),
    ("weight-decay-negative", ("training.weight_decay=-0.1",), "config `training.weight_decay`: -0.1 is not allowed. Set it to a number >= 0."),
    ("max-length-zero", ("training.max_length=0",), "config `training.max_length`: 0 is not allowed."),
    ("scheduler-unknown", ("training.lr_scheduler=nonsense",), "config `training.lr_scheduler`: 'nonsense' is not allowed. Set it to one of 'linear', 'cosine'"),
    ("flag-not-boolean", ("training.gradient_checkpointing=maybe",), "config `training.gradient_checkpointing`: 'maybe' is not allowed. Set it to true or false."),
    ("holdout-above-one", ("training.validation.holdout=1.5",), "config `training.validation.holdout`: 1.5 is not allowed. Set it to a number > 0 and < 1, or null."),
    ("holdout-zero", ("training.validation.holdout=0",), "config `training.validation.holdout`: 0 is not allowed."),
    ("validation-both", (*LORA, "training.validation.split=validation", "training.validation.holdout=0.1"), "config `training.validation`: set either split or holdout, not both."),
    ("early-stopping-without-data", (*LORA, "training.validation.early_stopping_patience=2"), "config `training.validation`: early_stopping_patience / eval_steps need validation data"),
    ("generation-batch-zero", ("generation.batch_size=0",), "config `generation.batch_size`: 0 is not allowed. Set it to a whole number > 0."),
    ("generation-batch-fraction", ("generation.batch_size=0.5",), "config `generation.batch_size`: 0.5 is not allowed."),
    ("latency-sample-negative", ("generation.latency_sample=-1",), "config `generation.latency_sample`: -1 is not allowed. Set it to a whole number >= 0."),
    ("max-new-tokens-zero", ("task.generation.max_new_tokens=0",), "config `task.generation.max_new_tokens`: 0 is not allowed. Set it to a whole number > 0."),
    ("max-new-tokens-negative", ("task.generation.max_new_tokens=-3",), "config `task.generation.max_new_tokens`: -3 is not allowed."),
    ("limit-zero", ("task.limits.test=0",), "config `task.limits.test`: 0 is not allowed. Set it to a whole number > 0, or null."),
    ("limit-negative", ("task.limits.test=-5",), "config `task.limits.test`: -5 is not allowed. Set it to a whole number > 0, or null."),
    ("limit-fraction", ("task.limits.train=2.5",), "config `task.limits.train`: 2.5 is not allowed."),
    ("limit-unknown-split", ("+task.limits.dev=3",), "config `task.limits.dev`: unknown split; expected one of"),
    ("seed-negative", ("seed=-1",), "config `seed`: -1 is not allowed. Set it to a whole number >= 0."),
    ("seed-text", ("seed=abc",), "config `seed`: 'abc' is not allowed. Set it to a whole number >= 0."),
    ("max-context-zero", ("generator.max_context=0",), "config `generator.max_context`: 0 is not allowed."),
    ("leakage-threshold", ("leakage.near_threshold=2",), "config `leakage.near_threshold`: 2 is not allowed. Set it to a number > 0 and <= 1."),
    ("leakage-ngram", ("leakage.ngram=0",), "config `leakage.ngram`: 0 is not allowed."),
    ("retrieval-eval-ks", ("retrieval_eval.ks=[0]",), "config `retrieval_eval.ks.0`: 0 is not allowed."),
    ("train-mix-size", ("train_mix.size=0",), "config `train_mix.size`: 0 is not allowed."),
    # --- components' settings, checked against their constructors ---
    ("shots-fraction", (*FEW, "context.builder.k=1.5"), "config `context.builder.k`: 1.5 is not allowed. Set it to a whole number > 0"),
    ("shots-zero", (*FEW, "context.builder.k=0"), "config `context.builder.k`: 0 is not allowed."),
    ("shots-above-pool", (*FEW, "context.builder.k=50"), "config `context.builder.k`: asks for 50"),
    ("top-k-zero", (*RAG, "context.builder.top_k=0"), "config `context.builder.top_k`: 0 is not allowed."),
    ("raft-p-gold", (*RAFT, "context.builder.p_gold=2"), "config `context.builder.p_gold`: 2 is not allowed. Set it to a number >= 0 and <= 1."),
    ("raft-distractors", (*RAFT, "context.builder.distractors=-1"), "config `context.builder.distractors`: -1 is not allowed. Set it to a whole number >= 0."),
    ("raft-source", (*RAFT, "context.builder.distractor_source=nearby"), "config `context.builder.distractor_source`: 'nearby' is not allowed. Set it to one of 'retrieved', 'random'."),
    ("bm25-b", (*BM25, "retriever.b=1.5"), "config `retriever.b`: 1.5 is not allowed. Set it to a number >= 0 and <= 1."),
    ("bm25-method", (*BM25, "retriever.method=okapi"), "config `retriever.method`: 'okapi' is not allowed. Set it to one of 'robertson', 'lucene', 'bm25l', 'bm25+', 'atire'."),
    ("finetune-warmup", (*FT_RETRIEVER, "retriever.finetune.warmup_ratio=1"), "config `retriever.finetune.warmup_ratio`: 1 is not allowed. Set it to a number >= 0 and < 1."),
    ("finetune-batch", (*FT_RETRIEVER, "retriever.finetune.batch_size=0"), "config `retriever.finetune.batch_size`: 0 is not allowed."),
    ("embedder-batch", (*RAG, "embedder.batch_size=0"), "config `embedder.batch_size`: 0 is not allowed. Set it to a whole number > 0."),
    ("hybrid-depth", ("context=rag", "retriever=hybrid", "retriever.depth=0"), "config `retriever.depth`: 0 is not allowed."),
    ("chunk-size", (*TOKENS, "chunking.size=0"), "config `chunking.size`: 0 is not allowed. Set it to a whole number > 0."),
    ("chunk-overlap", (*TOKENS, "chunking.overlap=200"), "config `chunking.overlap`: 200 is not below chunking.size (128)."),
    ("chunk-pattern", ("context=rag", "chunking=sections", "chunking.pattern='('"), "config `chunking.pattern`: is not a regular expression"),
    ("lora-rank-zero", (*LORA, "adaptation.method.r=0"), "config `adaptation.method.r`: 0 is not allowed. Set it to a whole number > 0."),
    ("lora-rank-fraction", (*LORA, "adaptation.method.r=1.5"), "config `adaptation.method.r`: 1.5 is not allowed."),
    ("lora-dropout", (*LORA, "adaptation.method.lora_dropout=1.5"), "config `adaptation.method.lora_dropout`: 1.5 is not allowed. Set it to a number >= 0 and < 1."),
    ("lora-alpha", (*LORA, "adaptation.method.lora_alpha=-8"), "config `adaptation.method.lora_alpha`: -8 is not allowed."),
    ("quantization-type", ("adaptation=qlora", "adaptation.quantization.bnb_4bit_quant_type=nf5"), "config `adaptation.quantization.bnb_4bit_quant_type`: 'nf5' is not allowed. Set it to one of 'nf4', 'fp4'."),
    ("quantization-key", ("adaptation=qlora", "+adaptation.quantization.load_in_3bit=true"), "config `adaptation.quantization.load_in_3bit`: is not a setting of `transformers.BitsAndBytesConfig` (with or without `+`). Did you mean `adaptation.quantization.load_in_8bit`?"),
    ("prefix-tokens", ("adaptation=prefix", "adaptation.method.num_virtual_tokens=0"), "config `adaptation.method.num_virtual_tokens`: 0 is not allowed."),
    # --- names that become folders ---
    ("exp-name-parent", ("exp_name=../../x",), "config `exp_name`: '../../x' is not allowed. Set it to a folder name (letters, digits, _ . -; not starting with .)."),
    ("exp-name-nested", ("exp_name=a/b",), "config `exp_name`: 'a/b' is not allowed."),
    ("exp-name-dotdot", ("exp_name=..",), "config `exp_name`: '..' is not allowed. Set it to a folder name (letters, digits, _ . -; not starting with .)."),
    ("exp-name-quoted", ("exp_name='my exp'",), "config `exp_name`: 'my exp' is not allowed."),
    ("retriever-label", (*RAG, "retriever.label=../../evil"), "config `retriever.label`: '../../evil' cannot begin a run folder's name."),
    # --- settings that do not fit together, values left unset or unresolvable ---
    ("retrieves-without-retriever", (*RAG, "~retriever"), "config `retriever`: is null, but the context retrieves passages."),
    ("value-unset", ("generator.source=???",), "config `generator.source`: must be set (it has no default)."),
    ("interpolation", ("training.epochs=${nowhere}",), "config `training.epochs`: cannot be resolved"),
    ("key-left-out", ("task.data.categories=[cardiology]",), "config `task.data.categories`: is a setting this config leaves out. Add it with `+task.data.categories=...`."),
    ("category-unknown", ("+task.data.categories=[astrology]",), "config `task.data.categories`: ['astrology'] not among the categories"),
    ("metric-unknown", ("+task.metrics.bleurt={}",), "config `task.metrics`: unknown metric"),
    ("metric-setting", ("+task.metrics.rouge_l.stem=true",), "config `task.metrics.rouge_l`: got an unexpected keyword argument 'stem'."),
    ("other-task-file", ("+task@evaluate_also.g=general_qa", "evaluate_also.g.data.path=nowhere.jsonl"), "config `evaluate_also.g.data.path`: data file 'nowhere.jsonl' does not exist."),
    ("other-task-encoding", ("+task@evaluate_also.g=general_qa", "evaluate_also.g.data.encoding=nonsense"), "config `evaluate_also.g.data.encoding`: unknown text encoding 'nonsense'."),
    ("template-placeholder", ("task.template.input_format='Note: {nte}'",), "notes.jsonl, line 1, field 'nte': missing, and task.template.input_format names it; did you mean {note}?"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_setting_is_one_located_line_and_writes_nothing(overrides, message, tmp_path):
    assert_refused(attempt(tmp_path / "results", *overrides), message)


def test_the_battery_names_each_case_once():
    """Each case has its own id (the table in the closing note and pytest's ids are keyed by it)."""
    assert len({case for case, *_ in CASES}) == len(CASES) >= 80


def message_table() -> str:
    """Every case with the line the command prints, as a Markdown table (`python -m tests.test_bad_input`)."""
    import tempfile
    from pathlib import Path

    rows = [
        "| case | command line (after `+debug=smoke`) | exit | message (after `ragft: error: `) |",
        "|---|---|---|---|",
    ]
    for case, overrides, _ in CASES:
        with tempfile.TemporaryDirectory() as folder:
            result = attempt(Path(folder) / "results", *overrides)
        line, said = (text.replace("|", "\\|") for text in (" ".join(overrides), result.error))
        rows.append(f"| {case} | `{line}` | {result.code} | {said} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)
    print(message_table())
