"""Adaptation beyond one method: the method experiment's arms, QLoRA's device check, the cost record,
forgetting, multi-task mixes, sequential stages, instruction variants and validation data."""

from collections import Counter
from itertools import product

import pytest
import torch

from ragft import recipe as pipeline
from ragft.adapt.plan import hold_out, instruction_choices, mix, training_stages
from ragft.errors import ConfigError
from ragft.recipe import run_experiment_arm
from ragft.record.run import read_predictions
from tests.conftest import (
    adaptations,
    assert_nothing_written,
    by_arm,
    compose_config,
    record_of,
    run_expecting,
    run_in_process,
    sweep_jobs,
    trained_adaptations,
)


def test_the_methods_experiment_sweeps_every_method_with_and_without_retrieval():
    jobs = [compose_config(*job, with_hydra=True) for job in sweep_jobs("adaptation_methods")]
    chosen = [(job.hydra.runtime.choices.adaptation, job.hydra.runtime.choices.context) for job in jobs]
    assert sorted(chosen) == sorted(product(adaptations(), ["zero_shot", "rag"]))
    needs_4bit = [job.adaptation.get("quantization") is not None for job in jobs]
    assert any(needs_4bit) and needs_4bit == sorted(needs_4bit)  # 4-bit arms last: the rest report first
    assert all("general_qa" in job.evaluate_also for job in jobs)  # forgetting, for every arm
    trained = set(trained_adaptations())
    for job, (method, _) in zip(jobs, chosen):
        if method in trained - {"full"}:
            assert job.adaptation.method._target_.startswith("peft.")
    base_4bit = compose_config("adaptation=base_4bit").adaptation
    assert (
        base_4bit.method is None
        and base_4bit.quantization == compose_config("adaptation=qlora").adaptation.quantization
    )
    assert compose_config("adaptation=dora").adaptation.method.use_dora
    ptuning = compose_config("adaptation=ptuning").adaptation.method
    assert ptuning._target_ == "peft.PrefixTuningConfig" and not ptuning.prefix_projection  # deep prompts


def test_qlora_fails_before_any_work_where_bitsandbytes_cannot_quantise(smoke_cfg, tmp_path, monkeypatch):
    import bitsandbytes.functional

    def unsupported(*args, **kwargs):  # noqa: ANN002, ANN003
        raise RuntimeError("no 4-bit kernel for this device")

    monkeypatch.setattr(bitsandbytes.functional, "quantize_4bit", unsupported)
    cfg = smoke_cfg("adaptation=qlora")
    run_expecting(ConfigError, r"adaptation.quantization.*cannot quantise to 4 bits.*no 4-bit kernel", cfg, tmp_path)


def test_qlora_without_bitsandbytes_says_how_to_install_it(smoke_cfg, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", None)  # import fails
    run_expecting(
        ConfigError, r"QLoRA needs bitsandbytes.*pip install bitsandbytes", smoke_cfg("adaptation=qlora"), tmp_path
    )


def test_qlora_trains_adapters_on_a_4bit_base(smoke_cfg):
    run_dir = run_experiment_arm(smoke_cfg("adaptation=qlora"))
    config = (run_dir / "config.yaml").read_text()
    cost = record_of(run_dir).cost
    assert "load_in_4bit: true" in config and cost.training.stored == "adapter" and cost.trainable_params > 0
    # the 4-bit base counts the weights it packs, not its packed bytes
    assert cost.training.total_params == pytest.approx(cost.base_total_params + cost.trainable_params, rel=1e-6)


def test_the_cost_record_has_every_field_with_sane_values(smoke_cfg, clinic):
    record = record_of(run_experiment_arm(smoke_cfg("adaptation=lora", "+task@evaluate_also.general_qa=general_qa")))
    cost, training, generation = record.cost, record.cost.training, record.cost.generation
    assert 0 < cost.trainable_params < 0.05 * training.total_params
    assert training.total_params == cost.base_total_params + cost.trainable_params
    assert training.stored == "adapter" and 0 < training.adapter_bytes < 4 * cost.base_total_params
    assert training.train_s > 0 and training.train_tokens > 0 and training.train_tokens_per_s > 0
    assert training.memory.peak_rss_mb > 100 and generation.memory.peak_rss_mb > 100
    # the run's peak covers the peaks measured inside it, though each of those reset the kernel's counter
    assert cost.memory.peak_rss_mb >= max(training.memory.peak_rss_mb, generation.memory.peak_rss_mb)
    assert generation.prompt_tokens_mean > 10 and generation.throughput_tokens_per_s > 0
    assert generation.throughput_examples_per_s > 0 and generation.examples == generation.latency_sample == 6
    assert 0 < generation.latency_batch1_p50_s <= generation.latency_batch1_p95_s
    assert set(cost.stage_s) >= {"load_generator", "train", "generate", "latency", "score", "evaluate_also"}
    if torch.cuda.is_available():
        assert cost.memory.peak_cuda_mb > 0 and training.memory.peak_cuda_mb > 0

    also = record.other_tests["general_qa"]
    n_general = len(clinic.split(clinic.general_qa, "test"))
    assert also.metric == "contains_reference" and also.summary.n == n_general and len(also.per_example) == n_general


def test_the_methods_report_puts_quality_cost_and_forgetting_side_by_side(tmp_path):
    exp_dir = run_in_process("adaptation_methods", tmp_path, "adaptation=none,full,lora,prompt", "context=zero_shot")
    report = (exp_dir / "report.md").read_text()
    methods = report.split("## Methods side by side")[1].split("## Quality")[0]
    rows = {line.split("|")[1].strip(): line for line in methods.splitlines() if line.startswith("| ")}
    assert {"zero_shot", "full", "lora", "prompt"} <= set(rows)
    assert "| 100% |" in rows["full"] and "full model" in rows["full"]
    assert "adapter" in rows["lora"] and "general_qa change" in methods
    assert "## Other test sets: forgetting" in report


def test_sequential_stages_train_in_order_and_score_every_earlier_stage(tmp_path):
    exp_dir = run_in_process("sequential", tmp_path, "adaptation=none,lora")
    lora = by_arm(exp_dir)["lora"]
    stages = lora.stages
    assert [s.stage for s in stages] == [None, "clinic_qa", "reports", "gastro_reports"]  # None: untrained
    assert [list(s.scores) for s in stages] == [
        ["clinic_qa", "reports", "gastro_reports"],
        ["clinic_qa"],
        ["clinic_qa", "reports"],
        ["clinic_qa", "reports", "gastro_reports"],
    ]
    sequence = compose_config("+exp=sequential", "+debug=smoke").sequence
    assert stages[2].scores["reports"].summary.n == sequence.reports.limits.test
    assert stages[1].scores["clinic_qa"].metric == "contains_reference"
    training = lora.cost.training
    assert training.train_stages == 3 and training.train_s == pytest.approx(sum(s.train_s for s in stages))
    lora_dir = exp_dir / lora.identity.run_id
    assert {p["category"] for p in read_predictions(lora_dir)} == {"gastroenterology"}
    report = (exp_dir / "report.md").read_text()
    assert "## Sequential fine-tuning" in report and "before training" in report and "after 3: gastro_reports" in report


def test_multitask_mixes_tasks_by_weight_and_scores_each(tmp_path):
    runs = by_arm(run_in_process("multitask", tmp_path))
    jobs = [compose_config(*job, with_hydra=True) for job in sweep_jobs("multitask", "+debug=smoke")]
    labels = {job.hydra.runtime.choices.arm.rsplit("/", 1)[-1]: job for job in jobs}  # a preset's file name
    assert set(runs) == set(labels) and len(labels) == len(jobs)
    for label, cfg in labels.items():
        if cfg.adaptation.method is not None:  # a mix has its size; the task alone its train limit
            assert runs[label].cost.training.train_examples == (cfg.train_mix.size or cfg.task.limits.train), label
            assert set(runs[label].other_tests) == set(cfg.evaluate_also) == {"clinic_qa", "general_qa"}


def test_training_stages_follow_the_config():
    plain = training_stages(compose_config("adaptation=lora"))
    assert [s.name for s in plain] == ["medical_reports"] and plain[0].sources[0].spec.name == "medical_reports"
    mixed = training_stages(compose_config("+exp=multitask", "arm=multitask/lora_qa_heavy"))
    assert [(s.name, s.weight) for s in mixed[0].sources] == [("medical_reports", 1.0), ("clinic_qa", 3.0)]
    sequential = training_stages(compose_config("+exp=sequential", "adaptation=lora"))
    assert [s.name for s in sequential] == ["clinic_qa", "reports", "gastro_reports"]
    assert [s.test_task.spec.name for s in sequential] == ["clinic_qa", "medical_reports", "gastro_reports"]
    readme = compose_config(  # the README's multi-task command
        "adaptation=lora",
        "+task@train_mix.tasks.medical_reports=medical_reports",
        "+task@train_mix.tasks.clinic_qa=clinic_qa",
        "+train_mix.weights.clinic_qa=3",
        "train_mix.size=96",
    )
    (own,) = training_stages(readme)
    assert [(s.name, s.weight) for s in own.sources] == [("medical_reports", 1.0), ("clinic_qa", 3.0)]
    assert own.size == 96 and own.test_task.name == "medical_reports"
    staged_mix = training_stages(compose_config("+exp=sequential", "+train_mix.size=96"))
    assert [s.size for s in staged_mix] == [None, None, 96]  # the mix size sizes the run's own stage only


def test_training_data_a_stage_cannot_use_fails_before_any_work(smoke_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "execute", lambda *args: pytest.fail("work started before the error"))
    cfg = smoke_cfg("+exp=sequential", "adaptation=lora", "training.validation.split=dev")
    run_expecting(ConfigError, r"training.validation.split.*task 'clinic_qa' has no 'dev' examples", cfg, tmp_path)
    cfg = smoke_cfg("adaptation=lora", "training.validation.holdout=0.99")
    run_expecting(ConfigError, r"training.validation.holdout.*leaves no training example", cfg, tmp_path)


def test_mixing_weights_that_name_no_mixed_task_fail_before_any_work(smoke_cfg, tmp_path):
    cfg = smoke_cfg("+exp=multitask", "arm=multitask/lora_reports_and_qa", "+train_mix.weights.pubmedqa=1")
    run_expecting(ConfigError, r"train_mix.weights.*not in train_mix.tasks: \['pubmedqa'\]", cfg, tmp_path)


def test_mix_follows_the_weights_and_repeats_a_short_task():
    parts = {"a": [f"a{i}" for i in range(10)], "b": [f"b{i}" for i in range(4)]}
    mixed = mix(parts, {"a": 1, "b": 3}, size=20, seed=0)
    counts = Counter(item[0] for item in mixed)
    assert counts == {"a": 5, "b": 15}
    three = mix({"a": parts["a"], "b": parts["b"], "c": ["c"] * 5}, {"a": 1, "b": 1, "c": 1}, size=100, seed=0)
    assert len(three) == 100  # shares rounded to add up to the size
    assert len(mix({"a": parts["a"]}, {"a": 1}, size=4, seed=0)) == 4
    assert max(Counter(x for x in mixed if x.startswith("b")).values()) == 4  # 15 of 4: each 3-4 times
    assert mixed != sorted(mixed)  # shuffled
    assert mix(parts, {"a": 1, "b": 3}, size=20, seed=0) == mixed  # seeded
    assert len(mix(parts, {"a": 1, "b": 1}, size=None, seed=0)) == 14  # default size: all examples


def test_hold_out_and_instruction_choices():
    train, validation = hold_out(list(range(20)), 0.1, seed=0)
    assert len(validation) == 2 and sorted(train + validation) == list(range(20))
    with pytest.raises(ConfigError, match="training.validation.holdout"):
        hold_out([1, 2], 1.5, seed=0)
    assert Counter(instruction_choices(9, 3, seed=0)) == {0: 3, 1: 3, 2: 3}


def test_instruction_mix_trains_on_every_phrasing_of_the_template(smoke_cfg):
    from ragft.models.loading import load_generator

    cfg = smoke_cfg("adaptation=lora", "training.instruction_mix=true")
    arm = pipeline.prepare(cfg)
    assert len(arm.template.instructions) > 1
    tokenizer = load_generator(cfg.generator).tokenizer
    features, _ = arm.adaptation.features(arm.task.split("train"), cfg.task, arm.task, tokenizer)
    prompts = [tokenizer.decode(f["input_ids"]) for f in features]
    for instruction in arm.template.instructions:
        assert any(instruction.splitlines()[0] in p for p in prompts)


def test_validation_split_and_early_stopping_through_a_run(smoke_cfg):
    cfg = smoke_cfg(
        "adaptation=lora",
        "training.validation.split=validation",
        "training.validation.eval_steps=1",
        "training.validation.early_stopping_patience=1",
        "training.learning_rate=1e-30",  # moves no fp32 weight: the loss cannot improve, stop after 1 + 1 evaluations
        "training.max_steps=5",
        "task.limits.validation=4",
    )
    training = record_of(run_experiment_arm(cfg)).cost.training
    assert training.validation_examples == 4 and len(training.eval_loss_history) == 2
    assert training.stopped_early and training.train_steps == 2


def test_an_unknown_category_filter_names_the_known_ones(smoke_cfg, tmp_path):
    cfg = smoke_cfg("+task.data.categories=[cardiology,astrology]")
    run_expecting(ConfigError, r"task.data.categories.*\['astrology'\].*Choose from", cfg, tmp_path)
    assert_nothing_written(tmp_path / "results")


def test_training_examples_past_max_length_are_fitted_and_recorded(smoke_cfg):
    cfg = smoke_cfg("arm=lora_rag", "training.max_length=200", "+task.truncate=middle", "training.max_steps=1")
    cost = record_of(run_experiment_arm(cfg)).cost
    fit = cost.training.prompt_fit
    assert fit.budget_tokens == 200 and fit.prompts_fitted > 0
    assert fit.passages_dropped + fit.passages_trimmed + fit.inputs_truncated > 0
    assert cost.flat()["train_prompts_fitted"] == fit.prompts_fitted  # a column of the experiment's table
