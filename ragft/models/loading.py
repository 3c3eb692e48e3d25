"""Loading generators, embedders and cross-encoders onto the best available device."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from ragft.errors import ConfigError
from ragft.models.sources import resolve_source

log = logging.getLogger(__name__)

# --- loading ----------------------------------------------------------------------------------


def best_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the accelerator has it; fp32 on CPU (CPU bf16 matmuls are orders of magnitude slower)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass
class Generator:
    model: Any
    tokenizer: Any
    name: str
    path: str
    max_context: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def release(self) -> None:
        """Drop the model's weights and hand their memory back (a model trained in place, once what it
        learned is saved and will be served from a fresh load)."""
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_generator(cfg: DictConfig, quantization: DictConfig | None = None) -> Generator:
    """Load the `generator` config's causal LM and tokenizer, offline, on the best device; with
    `quantization` (a BitsAndBytesConfig node, QLoRA) the weights are quantised to 4 bits as they load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragft.models.quantization import quantization_config, require_4bit_support

    path = resolve_source(cfg.source, "generator.source")
    device = best_device()
    dtype = compute_dtype(device)
    placement: dict[str, Any] = {}
    if quantization is not None:
        require_4bit_support(device)
        placement = {"quantization_config": quantization_config(quantization, dtype), "device_map": {"": str(device)}}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype, **placement)
    except OSError as err:
        raise _offline_error(path, err) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if not placement:
        # transformers wraps `to` with functools.wraps, whose typeshed type does not bind `self`
        model.to(device)  # type: ignore[arg-type]
    model.eval()
    return Generator(model=model, tokenizer=tokenizer, name=cfg.name, path=path, max_context=window(cfg, model.config))


def generator_tokenizer(cfg: DictConfig) -> tuple[Any, int]:
    """The `generator` config's tokenizer and window in tokens, read from its folder without its weights."""
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_source(cfg.source, "generator.source")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except OSError as err:
        raise _offline_error(path, err) from None
    return tokenizer, window(cfg, config)


def window(cfg: DictConfig, model_config: Any) -> int:
    """The tokens the generator reads: `generator.max_context` where set, else its config's positions."""
    return int(cfg.get("max_context") or getattr(model_config, "max_position_embeddings", 2048))


def _offline_error(path: str, err: OSError) -> ConfigError:
    return ConfigError(
        "generator.source",
        f"cannot load '{path}' offline ({err.__class__.__name__}).",
        "Use a local folder or a model already in the Hugging Face cache.",
    )


def load_embedder(cfg: DictConfig) -> Any:
    """Load the `embedder` config's sentence-transformers model, offline."""
    from sentence_transformers import SentenceTransformer

    path = resolve_source(cfg.source, "embedder.source")
    try:
        model = SentenceTransformer(path, device=str(best_device()), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(
            "embedder.source",
            f"cannot load '{path}' offline ({err}).",
            "Use a local sentence-transformers folder or a model already in the cache.",
        ) from None
    # torch types Module.__setattr__ for tensors and submodules only; any other value is stored as an attribute
    model.ragft_path = path  # type: ignore[assignment]
    return model


def load_cross_encoder(cfg: Any) -> Any:
    """Load the reranker config's sentence-transformers CrossEncoder, offline, on the best device."""
    from sentence_transformers import CrossEncoder

    path = resolve_source(cfg["source"], "retriever.reranker.source")
    try:
        model = CrossEncoder(path, device=str(best_device()), local_files_only=True, max_length=cfg.get("max_length"))
    except (OSError, ValueError) as err:
        raise ConfigError(
            "retriever.reranker.source",
            f"cannot load the cross-encoder '{path}' offline ({err}).",
            "Use a local sentence-transformers CrossEncoder folder or a model already in the cache.",
        ) from None
    model.ragft_path = path
    return model
