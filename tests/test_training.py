import json

import pytest
import torch
from omegaconf import OmegaConf

from ragft.adapt.features import IGNORE, build_features
from ragft.adapt.sft import RightPadCollator, response_only_loss, train_adapter
from ragft.errors import ConfigError
from ragft.models.loading import load_generator
from tests.conftest import run_expecting, trained_adaptations

PROMPTS = ["Note: mild asthma in a boy of 8.", "Note: severe migraine, woman of 40.", "Note: eczema, 3 y girl."]
ANSWERS = ["TREATMENT: Bronquil 1 puff", "TREATMENT: Neurolexa 25 mg", "TREATMENT: Dermalux cream"]


def toy_features(tokenizer) -> list[dict]:  # noqa: ANN001
    """The three prompt -> answer pairs as training features."""
    return build_features(tokenizer, PROMPTS, ANSWERS, ["a", "b", "c"], max_length=128)


def toy_batch(tokenizer) -> dict:  # noqa: ANN001
    return RightPadCollator(tokenizer.pad_token_id)(toy_features(tokenizer))


@pytest.fixture
def generator(smoke_cfg):
    return load_generator(smoke_cfg().generator)


@pytest.fixture
def features(generator):
    return toy_features(generator.tokenizer)


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


METHODS = trained_adaptations()


def method_training(cfg, **overrides):  # noqa: ANN001, ANN003
    """The `training` section (its learning rate is the adaptation's own default)."""
    return OmegaConf.merge(cfg.training, overrides)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_lowers_the_loss_and_records_its_cost(smoke_cfg, method):
    cfg = smoke_cfg(f"adaptation={method}", "training.max_steps=12", "training.batch_size=3")
    generator = load_generator(cfg.generator, cfg.adaptation.get("quantization"))
    features = toy_features(generator.tokenizer)
    training = method_training(cfg)
    training.learning_rate *= 10  # a random tiny model needs larger steps than the real one
    record = train_adapter(generator, cfg.adaptation.method, training, features)
    cost = record.cost
    history = cost.loss_history
    assert len(history) == 12 and history[-1] < history[0] - 0.05  # nats, from ~ln(49152) = 10.8
    assert 0 < cost.trainable_params <= cost.total_params
    assert cost.train_tokens > 0 and cost.train_tokens_per_s > 0 and cost.memory.peak_rss_mb > 0
    if method == "full":
        assert cost.trainable_params == cost.total_params and cost.stored == "full model"
        assert cost.adapter_bytes >= 4 * cost.total_params  # a full fp32 copy of the weights
    else:
        assert cost.trainable_params < 0.05 * cost.total_params and cost.stored == "adapter"
        assert cost.adapter_bytes < 0.1 * 4 * cost.total_params


def four_bit_kernel_noise(cfg, batch: dict) -> float:  # noqa: ANN001
    """How far one 4-bit base disagrees with itself across a save, on this machine: bitsandbytes' CPU
    inference path (processors with AVX512-BF16) repacks the weights on the first forward pass, saving
    unpacks them, and the next pass repacks them with different rounding. Zero wherever there is no
    such packing (GPUs, other CPUs)."""
    base = load_generator(cfg.generator, cfg.adaptation.quantization).model
    with torch.no_grad():
        before = base(**batch).logits
        base.state_dict()  # what saving an adapter does to the base beneath it
        return (base(**batch).logits - before).abs().max().item()


def moved(model, scale: float, seed: int, names: set[str] | None = None):  # noqa: ANN001, ANN201
    """`model` with every trainable weight (or those `names`) moved by `scale` standard normals: a
    stand-in for training."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad if names is None else name in names:
                parameter.add_(scale * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("method", METHODS)
def test_saved_training_reloads_to_identical_outputs(smoke_cfg, tmp_path, method):
    """Bit for bit in fp32. On a 4-bit base, within twice the base's own disagreement across a save
    (`four_bit_kernel_noise`), a tolerance an adapter moved by a tenth of the training step exceeds."""
    from hydra.utils import instantiate

    from ragft.adapt.methods import as_method

    cfg = smoke_cfg(f"adaptation={method}")
    quantization = cfg.adaptation.get("quantization")
    generator = load_generator(cfg.generator, quantization)
    batch = toy_batch(generator.tokenizer)
    adaptation = as_method(instantiate(cfg.adaptation.method, _convert_="all"))
    model = moved(adaptation.prepare(generator.model, None), scale=0.05, seed=1).eval()
    trained_names = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    with torch.no_grad():
        trained = model(**batch).logits
    adaptation.save(model, tmp_path / "saved")
    tolerance = 2 * four_bit_kernel_noise(cfg, batch) if quantization is not None else 0.0

    base = load_generator(cfg.generator, quantization).model
    with torch.no_grad():
        base_logits = base(**batch).logits
        reloaded = adaptation.load(base, tmp_path / "saved", merge=False).eval()
        torch.testing.assert_close(reloaded(**batch).logits, trained, rtol=0, atol=tolerance)
        assert not torch.allclose(trained[:, -base_logits.shape[1] :], base_logits)
        if quantization is not None:  # the tolerance cannot hide a wrongly reloaded adapter
            nudged = moved(reloaded, scale=0.005, seed=2, names=trained_names)
            assert (nudged(**batch).logits - trained).abs().max().item() > tolerance
        if method in ("lora", "dora", "ia3"):  # merged for serving: the same function of the input
            merged = adaptation.load(load_generator(cfg.generator).model, tmp_path / "saved", merge=True)
            assert not hasattr(merged, "peft_config")
            torch.testing.assert_close(merged(**batch).logits, trained, rtol=1e-4, atol=1e-4)


def _with_moved_virtual_tokens(cfg, seed: int):  # noqa: ANN001
    """The tiny generator with the method's virtual tokens, every trainable weight moved (training's stand-in)."""
    from hydra.utils import instantiate

    from ragft.adapt.methods import as_method

    generator = load_generator(cfg.generator)
    model = as_method(instantiate(cfg.adaptation.method, _convert_="all")).prepare(generator.model, None)
    generator.model = moved(model, scale=1.0, seed=seed).eval()
    return generator


@pytest.mark.parametrize("method", ["prefix", "ptuning", "prompt"])
def test_virtual_tokens_reach_every_generated_token(smoke_cfg, method):
    from ragft.models.generation import encode, generate

    cfg = smoke_cfg(f"adaptation={method}")
    generator = _with_moved_virtual_tokens(cfg, seed=0)
    encoded = encode(generator, PROMPTS)
    answers = [g.text for g in generate(generator, encoded, ["a", "b", "c"], max_new_tokens=6)]
    expected = []  # the slow reference: the whole sequence through peft's forward pass for every new token
    for prompt in encoded:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            for _ in range(6):
                logits = generator.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
                ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
        expected.append(generator.tokenizer.decode(ids[0, len(prompt) :], skip_special_tokens=True).strip())
    assert answers == expected
    if method != "prompt":  # other prefixes, other answers (the tiny model's soft prompt sways no argmax)
        other = _with_moved_virtual_tokens(cfg, seed=1)
        assert [g.text for g in generate(other, encoded, ["a", "b", "c"], max_new_tokens=6)] != answers


def test_methods_without_weights_to_merge_into_say_so_before_any_work(smoke_cfg, tmp_path):
    for method, reason in (("prompt", "virtual tokens"), ("qlora", "4-bit base")):
        cfg = smoke_cfg(f"adaptation={method}", "adaptation.merge_for_inference=true")
        run_expecting(ConfigError, rf"adaptation.merge_for_inference.*{reason}", cfg, tmp_path)


def test_training_settings_that_cannot_work_together_fail_before_any_work(smoke_cfg, tmp_path):
    patience = smoke_cfg("adaptation=lora", "training.validation.early_stopping_patience=2")
    run_expecting(ConfigError, r"training.validation.*need validation data", patience, tmp_path)
    both = smoke_cfg("adaptation=lora", "training.validation.split=validation", "training.validation.holdout=0.1")
    run_expecting(ConfigError, r"training.validation.*either split or holdout", both, tmp_path)
    prefix = smoke_cfg(
        "adaptation=prefix", "training.validation.holdout=0.2", "training.validation.early_stopping_patience=1"
    )
    run_expecting(ConfigError, r"prefix_projection.*cannot resume.*ptuning", prefix, tmp_path)


def test_early_stopping_stops_when_the_validation_loss_stalls(smoke_cfg, generator, features):
    cfg = smoke_cfg(
        "arm=lora",
        "training.max_steps=10",
        "training.learning_rate=1e-30",  # moves no fp32 weight: the validation loss cannot improve
        "training.batch_size=3",
        "training.validation.eval_steps=1",
        "training.validation.early_stopping_patience=2",
    )
    record = train_adapter(generator, cfg.adaptation.method, cfg.training, features, validation=features[:2])
    cost = record.cost
    assert cost.stopped_early and cost.train_steps == 3  # the first evaluation, then 2 without gain
    assert len(cost.eval_loss_history) == 3 and cost.best_eval_loss == min(cost.eval_loss_history)
    assert cost.validation_examples == 2


def test_an_identical_adapter_is_reused_not_retrained(smoke_cfg, generator, features):
    cfg = smoke_cfg("arm=lora")
    first = train_adapter(generator, cfg.adaptation.method, cfg.training, features)
    again = train_adapter(generator, cfg.adaptation.method, cfg.training, features)
    assert again.adapter_dir == first.adapter_dir and again.cost.adapter_reused and not first.cost.adapter_reused
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


# --- training memory: cuts that change no number, and the checkpointing option --------------------------


def test_response_only_loss_has_the_full_logits_gradients(smoke_cfg):
    from peft import LoraConfig, get_peft_model

    generator = load_generator(smoke_cfg().generator)
    model = get_peft_model(generator.model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]))
    batch = toy_batch(generator.tokenizer)
    gradients = []
    for loss_of in (lambda: model(**batch).loss, lambda: response_only_loss(model, batch, None)):
        model.zero_grad()
        loss_of().backward()
        gradients.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    for reference, ours in zip(*gradients):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


def test_masked_dropout_is_torch_dropout_keeping_a_quarter_of_the_bytes():
    from ragft.adapt.sft import MaskedDropout

    x = torch.randn(16, 40, requires_grad=True)
    upstream = torch.randn(16, 40)
    results = []
    for dropout in (torch.nn.Dropout(0.05), MaskedDropout(0.05)):
        saved: list[int] = []

        def pack(tensor, saved=saved):  # noqa: ANN001, ANN202
            saved.append(tensor.untyped_storage().nbytes())
            return tensor

        torch.manual_seed(0)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = dropout(x)
        (grad,) = torch.autograd.grad(out, x, upstream)
        results.append((out.detach(), grad, sum(saved)))
    (reference, reference_grad, reference_bytes), (ours, our_grad, our_bytes) = results
    # the same draws, scale and products: elementwise, so equal bit for bit on any processor
    assert torch.equal(ours, reference) and torch.equal(our_grad, reference_grad)
    assert our_bytes * 4 == reference_bytes


def _trained_losses(cfg, tmp_path, name: str, torch_dropout: bool = False) -> tuple[list[float], object]:  # noqa: ANN001
    """The loss history of a LoRA training on the toy pairs (ragft's training function, no cache), and
    the trained model."""
    from unittest import mock

    from ragft.adapt import sft

    generator = load_generator(cfg.generator)
    swap = (lambda model: 0) if torch_dropout else sft.with_masked_dropout
    with mock.patch.object(sft, "with_masked_dropout", swap):
        sft._train(
            generator,
            cfg.adaptation.method,
            cfg.training,
            toy_features(generator.tokenizer),
            None,
            None,
            tmp_path / name,
        )
    history = json.loads((tmp_path / name / "train_stats.json").read_text())["loss_history"]
    return history, generator.model


def test_training_with_one_byte_dropout_masks_learns_exactly_what_torch_dropout_does(smoke_cfg, tmp_path):
    from ragft.adapt.sft import MaskedDropout

    cfg = smoke_cfg("adaptation=lora", "training.max_steps=4", "training.batch_size=3")
    ours, model = _trained_losses(cfg, tmp_path, "masked")
    reference, _ = _trained_losses(cfg, tmp_path, "torch", torch_dropout=True)
    assert ours == pytest.approx(reference, rel=1e-6)
    dropouts = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_dropout" in name]
    assert dropouts and all(isinstance(m, MaskedDropout) for m in dropouts)


def test_gradient_checkpointing_reaches_the_trainer_and_changes_no_loss(smoke_cfg, tmp_path):
    from ragft.adapt.arguments import training_arguments

    plain = smoke_cfg("adaptation=lora", "training.max_steps=3", "training.batch_size=3")
    checkpointed = smoke_cfg(
        "adaptation=lora", "training.max_steps=3", "training.batch_size=3", "training.gradient_checkpointing=true"
    )
    assert training_arguments(checkpointed.training, str(tmp_path), torch.device("cpu")).activation_checkpointing
    assert not training_arguments(plain.training, str(tmp_path), torch.device("cpu")).activation_checkpointing
    reference, _ = _trained_losses(plain, tmp_path, "plain")
    ours, model = _trained_losses(checkpointed, tmp_path, "checkpointed")
    layers = [
        m for m in model.modules() if hasattr(m, "gradient_checkpointing") and type(m).__name__.endswith("DecoderLayer")
    ]
    assert layers and all(layer.gradient_checkpointing for layer in layers)
    assert ours == pytest.approx(reference, rel=1e-5)  # recomputed activations: the same numbers


def test_gradient_checkpointing_with_prefix_tuning_fails_before_any_work(smoke_cfg, tmp_path):
    for method in ("prefix", "ptuning"):
        cfg = smoke_cfg(f"adaptation={method}", "training.gradient_checkpointing=true")
        run_expecting(ConfigError, r"training.gradient_checkpointing.*prefix tuning", cfg, tmp_path)


def test_return_freed_memory_maps_large_allocations_when_set_and_keys_its_own_adapter(smoke_cfg, generator, features):
    """It changes no weight but the memory a training records, so an adapter trained with it is never
    reused by a run without it (nor the other way round), and the run key differs."""
    from unittest import mock

    from ragft.adapt import sft
    from ragft.config.identity import run_key

    cfg = smoke_cfg("arm=lora", "training.max_steps=1", "training.return_freed_memory=true")
    default = OmegaConf.merge(cfg.training, {"return_freed_memory": False})
    with mock.patch.object(sft, "map_large_allocations") as mapped:
        first = train_adapter(generator, cfg.adaptation.method, cfg.training, features)
        assert mapped.call_count == 1
        again = train_adapter(generator, cfg.adaptation.method, default, features)
        assert not again.cost.adapter_reused and again.adapter_dir != first.adapter_dir
        assert mapped.call_count == 1
    assert run_key(cfg) != run_key(smoke_cfg("arm=lora", "training.max_steps=1"))


@pytest.mark.parametrize(
    ("validation", "save_every"),
    [
        ((), 4),
        (("training.validation.split=validation",), 4),
        (
            (
                "training.validation.split=validation",
                "training.validation.eval_steps=2",
                "training.validation.early_stopping_patience=2",
            ),
            2,
        ),
    ],
    ids=["plain", "validated", "early-stopping"],
)
def test_a_resumable_training_saves_its_whole_state_every_checkpoint_steps(validation, save_every, smoke_cfg, tmp_path):
    """Every n steps, or at every evaluation where early stopping needs them; optimizer and RNG included."""
    from ragft.adapt.arguments import training_arguments

    cfg = smoke_cfg("adaptation=lora", "training.checkpoint_steps=4", *validation)
    args = training_arguments(cfg.training, str(tmp_path), torch.device("cpu"), bool(validation), checkpoints=True)
    assert (args.save_strategy, args.save_steps, args.save_only_model) == ("steps", save_every, False)
    assert training_arguments(cfg.training, str(tmp_path), torch.device("cpu")).save_strategy == "no"


def test_resuming_starts_from_the_newest_whole_checkpoint_and_sums_the_attempts(tmp_path):
    from ragft.adapt.checkpoints import PROGRESS_FILE, STATE_FILE, TrainingProgress, last_checkpoint

    for step, whole in ((2, True), (4, True), (6, False)):  # checkpoint-6: killed while it was written
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if whole:
            (folder / STATE_FILE).write_text(json.dumps({"global_step": step}))
            (folder / PROGRESS_FILE).write_text(json.dumps({"train_s": 10.0 * step, "loss_sum": 3.0 * step}))
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4" and last_checkpoint(tmp_path / "none") is None
    progress = TrainingProgress.load(last_checkpoint(tmp_path))
    assert (progress.step, progress.earlier_s, progress.earlier_loss_sum) == (4, 40.0, 12.0)
    train_s, loss = progress.total(attempt_loss=2.0, global_step=8)  # steps 5-8 at a mean loss of 2
    assert train_s >= 40.0 and loss == pytest.approx((12.0 + 2.0 * 4) / 8)
