"""Preference tuning (adaptation=dpo, orpo): pairs from the train split only, the objectives training
through TRL, the trained adapter reloaded as served, and the settings refused before any work."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ragft.adapt.features import build_features, feature
from ragft.adapt.methods import PeftAdapter, as_method, peft_config
from ragft.adapt.pairs import OwnAnswers
from ragft.adapt.preference import DPO, ORPO, pair_features
from ragft.adapt.sft import load_adapted, train_adapter
from ragft.errors import ConfigError, DataError
from ragft.models.loading import load_generator
from ragft.types import Example, Prediction, PreferencePair
from tests.conftest import preference_adaptations, read_jsonl, record_of, run_expecting
from tests.test_training import toy_batch

NOTES = ["Note: mild asthma in a boy of 8.", "Note: severe migraine, woman of 40.", "Note: eczema, 3 y girl."]
CHOSEN = ["TREATMENT: Bronquil 1 puff", "TREATMENT: Neurolexa 25 mg", "TREATMENT: Dermalux cream"]
REJECTED = ["I am not sure, please ask a doctor.", "TREATMENT: unknown", "The patient should rest."]
OBJECTIVES = {"dpo": DPO, "orpo": ORPO}


def toy_pairs(tokenizer) -> list[dict]:  # noqa: ANN001
    """Three pairs as token ids, each prompt its note as a plain prompt (the pair logic, not the template)."""
    pairs = [
        PreferencePair(Example(str(i), note, chosen), chosen, rejected)
        for i, (note, chosen, rejected) in enumerate(zip(NOTES, CHOSEN, REJECTED))
    ]

    def fitted(examples):  # noqa: ANN001, ANN202
        inputs, references, ids = ([getattr(e, name) for e in examples] for name in ("input", "reference", "id"))
        return build_features(tokenizer, inputs, references, ids, max_length=128)

    return pair_features(pairs, fitted, tokenizer, max_length=128)


def preference_training(cfg, **overrides):  # noqa: ANN001, ANN003
    training = OmegaConf.create(OmegaConf.to_container(cfg.training, resolve=True))
    return OmegaConf.merge(training, {"batch_size": 3, "warmup_steps": 0, "logging_steps": 1, **overrides})


def sequence_logp(model, pair: dict, response: str) -> torch.Tensor:  # noqa: ANN001
    """Summed log-probability of a pair's response (`chosen_ids` or `rejected_ids`) after its prompt."""
    ids = torch.tensor([pair["prompt_ids"] + pair[response]])
    logits = model(input_ids=ids).logits[0, len(pair["prompt_ids"]) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(pair[response])[:, None]).sum()


def dpo_loss(policy, reference, pairs: list[dict], beta: float) -> float:  # noqa: ANN001
    """The DPO loss (Rafailov et al. 2023, eq. 7), written out here, independent of TRL."""
    with torch.no_grad():
        margins = [
            (sequence_logp(policy, p, "chosen_ids") - sequence_logp(reference, p, "chosen_ids"))
            - (sequence_logp(policy, p, "rejected_ids") - sequence_logp(reference, p, "rejected_ids"))
            for p in pairs
        ]
    return float(torch.stack([-F.logsigmoid(beta * m) for m in margins]).mean())


# --- where pairs come from ---------------------------------------------------------------------------------


def answered(output: str, score: float, example_id: str = "n1") -> Prediction:
    example = Example(example_id, "Note: ...", "PATIENT: 40 y, female")
    return Prediction(example, "", output, scores={"field_accuracy": score})


def test_own_answers_reject_exactly_the_answers_scoring_below_the_threshold():
    answers = [answered("wrong", 0.25, "a"), answered("nearly", 0.875, "b"), answered("right", 1.0, "c")]
    at_one = OwnAnswers(threshold=1.0).pairs(None, "field_accuracy", lambda: answers)
    assert [(p.example.id, p.rejected, p.rejected_score) for p in at_one] == [
        ("a", "wrong", 0.25),
        ("b", "nearly", 0.875),
    ]
    assert all(p.chosen == p.example.reference for p in at_one)  # the reference is chosen
    assert [p.example.id for p in OwnAnswers(threshold=0.875).pairs(None, "field_accuracy", lambda: answers)] == ["a"]
    copied = [answered("PATIENT: 40 y, female ", 0.5)]  # scored low, but no preference between equal texts
    assert OwnAnswers().pairs(None, "field_accuracy", lambda: copied) == []


@pytest.mark.parametrize("arm", ["dpo", "orpo_rag"])
def test_pairs_come_from_the_train_split_and_no_test_note_reaches_preference_training(smoke_cfg, monkeypatch, arm):
    from ragft.adapt import stages
    from ragft.recipe import run_experiment_arm

    trained_on = []

    def spy(generator, method, training, features, *args, objective=None, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if objective is not None:
            trained_on.append((generator.tokenizer, features))
        return train_adapter(generator, method, training, features, *args, objective=objective, **kwargs)

    monkeypatch.setattr(stages, "train_adapter", spy)
    cfg = smoke_cfg(f"arm={arm}")
    record = record_of(run_experiment_arm(cfg))
    preference = record.cost.training.preference
    train_ids = {r["id"] for r in read_jsonl_split(cfg, "train")}
    test_notes = [r["note"] for r in read_jsonl_split(cfg, "test")]
    ((tokenizer, features),) = trained_on
    assert preference.pair_ids and set(preference.pair_ids) <= train_ids
    assert [f["id"] for f in features] == preference.pair_ids and preference.answers_scored == len(train_ids)
    texts = [tokenizer.decode(f["prompt_ids"] + f["chosen_ids"] + f["rejected_ids"]) for f in features]
    assert not [note for note in test_notes if any(note[:60] in text for text in texts)]
    assert all(f["rejected_ids"] != f["chosen_ids"] for f in features)
    assert preference.objective == arm.split("_")[0] and preference.source == "own answers"
    assert record.cost.training.train_stages == (2 if arm == "dpo" else 1)  # DPO after its SFT stage


def read_jsonl_split(cfg, split: str) -> list[dict]:  # noqa: ANN001
    """The task file's examples of a split, within the run's limits (the first n, as ragft takes them)."""
    rows = [r for r in read_jsonl(Path(cfg.task.data.path)) if r["split"] == split]
    limit = cfg.task.limits.get(split)
    return rows[:limit] if limit else rows


def test_a_threshold_no_answer_scores_below_fails_the_run_saying_so(smoke_cfg, tmp_path):
    from ragft.recipe import run_experiment_arm

    cfg = smoke_cfg("adaptation=dpo", "adaptation.preference.source.threshold=0.0")
    answered = len(read_jsonl_split(cfg, "train"))
    message = rf"threshold.*no answer of the {answered} \(own answers\) scored below 0.0 on field_accuracy"
    with pytest.raises(ConfigError, match=message):
        run_experiment_arm(cfg)


# --- training ------------------------------------------------------------------------------------------------


def test_dpo_steps_lower_the_dpo_loss_from_ln2_on_a_tiny_model(smoke_cfg):
    cfg = smoke_cfg("adaptation=dpo")
    generator = load_generator(cfg.generator)
    pairs = toy_pairs(generator.tokenizer)
    beta = 0.5
    objective = OmegaConf.create({"_target_": "ragft.adapt.preference.DPO", "beta": beta, "after_sft": False})
    training = preference_training(cfg, learning_rate=1e-2, max_steps=8)
    record = train_adapter(generator, cfg.adaptation.method, training, pairs, objective=objective)

    reference = load_generator(cfg.generator).model.eval()
    before = dpo_loss(reference, reference, pairs, beta)
    trained = load_adapted(load_generator(cfg.generator), cfg.adaptation.method, record.adapter_dir, merge=False)
    after = dpo_loss(trained.model, reference, pairs, beta)
    assert before == pytest.approx(math.log(2), abs=1e-6)  # the new adapter starts at the reference
    assert after < math.log(2) - 0.1, after
    history = record.cost.loss_history
    assert history[0] == pytest.approx(math.log(2), abs=1e-3) and len(history) == 8  # TRL's own first loss agrees
    assert record.cost.reward_accuracy is not None and record.cost.train_steps == 8
    assert 0 < record.cost.trainable_params < record.cost.total_params and record.cost.train_tokens > 0


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_a_trained_preference_adapter_reloads_to_identical_logits(smoke_cfg, tmp_path, name):
    """Trained on top of a saved SFT adapter (merged into the base, as DPO trains), reloaded as served:
    the base, the SFT adapter merged, then the preference adapter; the same logits in fp32."""
    from ragft.adapt.arguments import training_arguments

    cfg = smoke_cfg("adaptation=dpo")
    sft_generator = load_generator(cfg.generator)
    sft = train_adapter(
        sft_generator, cfg.adaptation.method, preference_training(cfg, max_steps=2), toy_pairs_as_sft(sft_generator)
    )
    generator = load_generator(cfg.generator)
    method = as_method(instantiate(cfg.adaptation.method, _convert_="all"))
    training = preference_training(cfg, learning_rate=1e-2, max_steps=3)

    def arguments(cls, **extra):  # noqa: ANN001, ANN003, ANN202
        return training_arguments(training, str(tmp_path / "out"), generator.device, arguments=cls, **extra)

    trainer = OBJECTIVES[name](beta=0.5).trainer(
        generator, method, sft.adapter_dir, toy_pairs(generator.tokenizer), arguments
    )
    trainer.train()
    batch = toy_batch(generator.tokenizer)
    batch.pop("labels")
    model = trainer.model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
    method.save(model, tmp_path / "saved")

    with torch.no_grad():
        sft_only = load_adapted(load_generator(cfg.generator), cfg.adaptation.method, sft.adapter_dir, merge=True)
        sft_logits = sft_only.model(**batch).logits
        served = load_adapted(sft_only, cfg.adaptation.method, tmp_path / "saved", merge=False)
        torch.testing.assert_close(served.model(**batch).logits, trained, rtol=0, atol=1e-6)
        assert not torch.allclose(trained, sft_logits, atol=1e-4)  # the preference adapter moved the model
        sft_again = load_adapted(load_generator(cfg.generator), cfg.adaptation.method, sft.adapter_dir, merge=True)
        merged = load_adapted(sft_again, cfg.adaptation.method, tmp_path / "saved", merge=True)
        torch.testing.assert_close(merged.model(**batch).logits, trained, rtol=1e-4, atol=1e-4)


def toy_pairs_as_sft(generator) -> list[dict]:  # noqa: ANN001
    """The toy pairs' prompts and chosen responses as supervised features."""
    return [feature(p["prompt_ids"], p["chosen_ids"]) for p in toy_pairs(generator.tokenizer)]


def test_orpo_trains_from_the_base_and_dpo_after_the_sft_stage():
    assert not ORPO().after_sft and DPO().after_sft
    assert ORPO(after_sft=True).after_sft and not DPO(after_sft=False).after_sft


# --- settings refused before any work --------------------------------------------------------------------------


@pytest.mark.parametrize("name", preference_adaptations())
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+task@sequence.qa=clinic_qa"], r"sequence / train_mix.*preference tuning"),
        (["training.validation.holdout=0.1"], r"training.validation.*preference tuning"),
        (["+adaptation.preference.training.learning_rat=1e-4"], r"adaptation.preference.training.*learning_rat"),
    ],
)
def test_preference_settings_that_cannot_work_fail_before_any_work(smoke_cfg, tmp_path, name, overrides, message):
    run_expecting(ConfigError, message, smoke_cfg(f"adaptation={name}", *overrides), tmp_path)


def test_preference_tuning_needs_an_adapter_with_weights():
    from peft import LoraConfig, PromptTuningConfig

    assert peft_config(PeftAdapter(LoraConfig(task_type="CAUSAL_LM"))).peft_type == "LORA"
    with pytest.raises(ConfigError, match=r"adaptation.method.*peft adapter with weights"):
        peft_config(PeftAdapter(PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)))


# --- pairs from a user's file and from a run's records, end to end -----------------------------------------


def test_a_users_pairs_file_trains_on_its_pairs(smoke_cfg, tmp_path):
    from ragft.recipe import run_experiment_arm

    cfg = smoke_cfg("arm=orpo")
    train = read_jsonl_split(cfg, "train")[:3]
    lines = [{"note_id": r["id"], "bad": "REFERRAL: none"} for r in train]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    source = [
        "pairs@adaptation.preference.source=pairs_file",
        f"adaptation.preference.source.path={tmp_path / 'pairs.jsonl'}",
    ]
    fields = "adaptation.preference.source.fields={id: note_id, rejected: bad}"
    record = record_of(run_experiment_arm(smoke_cfg("arm=orpo", *source, fields)))
    preference = record.cost.training.preference
    assert (preference.source, preference.pairs, preference.answers_scored) == ("file pairs.jsonl", 3, None)
    assert preference.pair_ids == [r["id"] for r in train]


def test_pairs_from_a_finished_runs_answers_on_the_train_split(smoke_cfg):
    from ragft.recipe import run_experiment_arm

    answered = run_experiment_arm(smoke_cfg("arm=zero_shot", "tune.split=train"))
    scores = [r["scores"]["field_accuracy"] for r in read_jsonl(answered / "predictions.jsonl")]
    source = ["pairs@adaptation.preference.source=run_answers", "adaptation.preference.source.threshold=0.5"]
    record = record_of(
        run_experiment_arm(smoke_cfg("arm=dpo", *source, f"adaptation.preference.source.run={answered}"))
    )
    preference = record.cost.training.preference
    assert preference.pairs == sum(score < 0.5 for score in scores) and preference.answers_scored is None
    assert preference.source == f"answers of run {answered.name}" and preference.threshold == 0.5
    tested = run_experiment_arm(smoke_cfg("arm=zero_shot"))  # answered the test split: refused, located
    with pytest.raises(DataError, match=r"predictions.jsonl, line 1.*test example.*tune.split=train"):
        run_experiment_arm(smoke_cfg("arm=dpo", source[0], f"adaptation.preference.source.run={tested}"))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_an_interrupted_preference_training_resumes_from_its_last_checkpoint(smoke_cfg, tmp_path, name):
    """The first attempt stops after step 2 (its checkpoint kept, as a killed run leaves it); the next one
    resumes there and records the whole training's steps and its resume step."""
    from ragft.adapt.sft import _train

    cfg = smoke_cfg(f"adaptation={name}")
    objective = OmegaConf.create({"_target_": OBJECTIVES[name].__module__ + "." + name.upper(), "after_sft": False})
    checkpoints = tmp_path / "checkpoints"
    for steps, out in ((2, tmp_path / "first"), (4, tmp_path / "second")):
        generator = load_generator(cfg.generator)
        training = preference_training(cfg, max_steps=steps, checkpoint_steps=2)
        out.mkdir()
        _train(
            generator,
            cfg.adaptation.method,
            training,
            toy_pairs(generator.tokenizer),
            None,
            None,
            out,
            checkpoints,
            objective,
        )
    assert sorted(checkpoints.glob("checkpoint-*")) == [checkpoints / "checkpoint-4"]  # the last one kept
    assert (checkpoints / "checkpoint-4" / "ragft_progress.json").is_file()
    stats = json.loads((tmp_path / "second" / "train_stats.json").read_text())
    assert (stats["train_steps"], stats["resumed_from_step"], len(stats["loss_history"])) == (4, 2, 4)  # every step
