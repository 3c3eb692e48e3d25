"""Sentence embeddings for retrieval: the `Embedder` component, and L2-normalised float32 vectors
cached on disk by embedder and texts.

Large corpora are embedded in batches straight into a memory-mapped file, so the corpus need not
fit in memory as text embeddings twice, and progress is shown.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm.auto import tqdm

from ragft.config.values import PositiveInt
from ragft.models.loading import load_embedder
from ragft.models.sources import resolve_source
from ragft.record.cache import build_seconds, cached_dir, content_key

STREAM_ABOVE = 4096  # texts: above this, embed in chunks into a memory-mapped file with a progress bar
STREAM_CHUNK = 1024

# Loaded models by folder, held only as long as some Embedder uses them: the retriever, the few-shot
# selection, the chunker and the evaluation share one model in a run, and a sweep's next job starts clean.
_LOADED: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


class Embedder:
    """A sentence-transformers model named by the `embedder` config, loaded on first use (a run that
    never embeds never loads it). Components that embed receive one at construction
    (`embedder: ${embedder}` in their config)."""

    def __init__(self, source: Any, batch_size: PositiveInt, name: str = "") -> None:
        self.source = source  # a model id / folder, or a `_target_` node that returns one (resolved lazily)
        self.batch_size = batch_size
        self.name = name
        self._model: Any = None

    @property
    def path(self) -> str:
        """The model's folder: its identity in the embeddings, index and fine-tuning caches."""
        return self.model.ragft_path

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded now if no other Embedder of the run holds it)."""
        if self._model is None:
            folder = resolve_source(self.source, "embedder.source")
            self._model = _LOADED.get(folder)
            if self._model is None:
                self._model = load_embedder(DictConfig({"source": folder}))
                _LOADED[folder] = self._model
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def window(self) -> int:
        """The text tokens the model reads of each text (its maximum length less its special tokens);
        the rest of a longer text is cut off."""
        return int(self.model.max_seq_length) - int(self.tokenizer.num_special_tokens_to_add(pair=False))

    def encode(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        """L2-normalised float32 embeddings, computed now."""
        return encode(self.model, texts, self.batch_size, progress)

    def embed(self, texts: Sequence[str], cache: bool = True) -> np.ndarray:
        """L2-normalised float32 embeddings, cached on disk by model and texts unless `cache` is False."""
        return embed_texts(self.model, texts, self.batch_size, cache)

    def embed_timed(self, texts: Sequence[str]) -> tuple[np.ndarray, float | None]:
        """`embed(texts)`, and the seconds computing them takes from a cold cache (see `embed_cached`)."""
        return embed_cached(self.model, texts, self.batch_size)

    def with_source(self, source: str) -> Embedder:
        """An embedder like this one over another model (e.g. this one fine-tuned)."""
        return Embedder(source, self.batch_size, self.name)

    def __repr__(self) -> str:
        return f"Embedder({self.name or self.source!r}, batch_size={self.batch_size})"


def encode(embedder: Any, texts: Sequence[str], batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings, computed now (a progress bar above 256 texts by default)."""
    vectors = embedder.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=len(texts) > 256 if progress is None else progress,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def encode_to_file(embedder: Any, texts: Sequence[str], path: Path, batch_size: int = 64) -> None:
    """Embed `texts` chunk by chunk into a .npy memory map at `path`."""
    dim = encode(embedder, texts[:1], batch_size, progress=False).shape[1]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(texts), dim))
    with tqdm(total=len(texts), desc="embedding corpus", unit="text") as bar:
        for start in range(0, len(texts), STREAM_CHUNK):
            chunk = texts[start : start + STREAM_CHUNK]
            out[start : start + len(chunk)] = encode(embedder, chunk, batch_size, progress=False)
            bar.update(len(chunk))
    out.flush()
    del out


def embed_texts(embedder: Any, texts: Sequence[str], batch_size: int = 64, cache: bool = True) -> np.ndarray:
    """L2-normalised float32 embeddings of a loaded SentenceTransformer; cached on disk under a hash of
    the model's folder and the texts (a large cached set is returned memory-mapped)."""
    return embed_cached(embedder, texts, batch_size)[0] if cache else encode(embedder, texts, batch_size)


def embed_cached(embedder: Any, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, float | None]:
    """`embed_texts`, and the seconds computing the embeddings took when they were computed (now, or by
    the run that cached them; None for embeddings cached before ragft recorded it): the cost of
    re-embedding these texts from a cold cache, never a cache read."""
    key = content_key("embeddings", getattr(embedder, "ragft_path", repr(embedder)), list(texts))

    def build(out: Path) -> None:
        if len(texts) > STREAM_ABOVE:
            encode_to_file(embedder, texts, out / "vectors.npy", batch_size)
        else:
            np.save(out / "vectors.npy", encode(embedder, texts, batch_size))

    path, _ = cached_dir("embeddings", key, build)
    vectors = np.load(path / "vectors.npy", mmap_mode="r" if len(texts) > STREAM_ABOVE else None)
    return vectors, build_seconds(path)
