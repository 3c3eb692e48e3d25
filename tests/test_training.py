import pytest
import torch
from omegaconf import OmegaConf

from ragft.adapt.sft import IGNORE, RightPadCollator, build_features, load_adapted, response_only_loss, train_adapter
from ragft.errors import ConfigError
from ragft.models import load_generator

PROMPTS = ["Note: mild asthma in a boy of 8.", "Note: severe migraine, woman of 40.", "Note: eczema, 3 y girl."]
ANSWERS = ["TREATMENT: Bronquil 1 puff", "TREATMENT: Neurolexa 25 mg", "TREATMENT: Dermalux cream"]


@pytest.fixture
def generator(smoke_cfg):
    return load_generator(smoke_cfg().generator)


@pytest.fixture
def features(generator):
    return build_features(generator.tokenizer, PROMPTS, ANSWERS, ["a", "b", "c"], max_length=128)


def test_labels_mask_the_prompt_and_keep_the_response_and_end_token(generator, features):
    tokenizer = generator.tokenizer
    for feature, prompt, answer in zip(features, PROMPTS, ANSWERS):
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert feature["labels"][:n_prompt] == [IGNORE] * n_prompt
        assert tokenizer.decode(feature["labels"][n_prompt:]) == answer + tokenizer.eos_token


def test_response_only_loss_equals_the_full_logits_loss(generator, features):
    batch = RightPadCollator(generator.tokenizer.pad_token_id)(features)
    with torch.no_grad():
        reference = generator.model(**batch).loss
        ours = response_only_loss(generator.model, batch, None)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_too_long_training_example_names_the_config_key(generator):
    with pytest.raises(ConfigError, match=r"training.max_length.*'a' has \d+ tokens, more than 4"):
        build_features(generator.tokenizer, PROMPTS[:1], ANSWERS[:1], ["a"], max_length=4)


def test_lora_lowers_the_loss_and_round_trips(smoke_cfg, generator, features):
    cfg = smoke_cfg("arm=lora", "training.max_steps=12", "training.learning_rate=0.01", "training.batch_size=3")
    batch = RightPadCollator(generator.tokenizer.pad_token_id)(features)
    record = train_adapter(generator, cfg.adaptation.method, cfg.training, features)
    history = record.stats["loss_history"]
    assert history[-1] < history[0] - 0.5  # nats; a random 49k-vocabulary model starts near ln(49152) = 10.8
    assert 0 < record.stats["trainable_params"] < record.stats["total_params"]
    assert record.stats["train_tokens"] > 0 and record.stats["adapter_bytes"] > 0
    assert not any(hasattr(m, "lora_A") for m in generator.model.modules()), "base model left wrapped"

    with torch.no_grad():
        base_logits = generator.model(**batch).logits
        adapted = load_adapted(generator, record.adapter_dir, merge=False)
        adapter_logits = adapted.model(**batch).logits
        merged_logits = adapted.model.merge_and_unload()(**batch).logits
    assert not torch.allclose(base_logits, adapter_logits)
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-4, atol=1e-4)


def test_an_identical_adapter_is_reused_not_retrained(smoke_cfg, generator, features):
    cfg = smoke_cfg("arm=lora")
    first = train_adapter(generator, cfg.adaptation.method, cfg.training, features)
    again = train_adapter(generator, cfg.adaptation.method, cfg.training, features)
    assert (
        again.adapter_dir == first.adapter_dir and again.stats["adapter_reused"] and not first.stats["adapter_reused"]
    )
    other = OmegaConf.merge(cfg.training, {"learning_rate": 0.5})
    assert train_adapter(generator, cfg.adaptation.method, other, features).adapter_dir != first.adapter_dir


def test_the_response_only_path_is_used_only_where_it_is_exact(generator):
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    from ragft.adapt.sft import supports_response_only_loss

    lora = get_peft_model(generator.model, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"]))
    assert supports_response_only_loss(lora)
    generator.model = lora.unload()
    prompt = get_peft_model(generator.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert not supports_response_only_loss(prompt)  # virtual tokens shift positions: use the model's loss
    generator.model.config.final_logit_softcapping = 30.0
    assert not supports_response_only_loss(generator.model)  # logits are post-processed
