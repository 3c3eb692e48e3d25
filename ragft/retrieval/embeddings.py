"""Sentence embeddings for retrieval: L2-normalised float32, cached on disk by embedder and texts.

Large corpora are embedded in batches straight into a memory-mapped file, so the corpus need not
fit in memory as text embeddings twice, and progress is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ragft.record.cache import cached_dir, content_key

STREAM_ABOVE = 4096  # texts: above this, embed in chunks into a memory-mapped file with a progress bar
STREAM_CHUNK = 1024


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
    """L2-normalised float32 embeddings; cached on disk under a hash of the embedder and the texts (a
    large cached set is returned memory-mapped)."""
    if not cache:
        return encode(embedder, texts, batch_size)
    key = content_key("embeddings", getattr(embedder, "ragft_path", repr(embedder)), list(texts))

    def build(out: Path) -> None:
        if len(texts) > STREAM_ABOVE:
            encode_to_file(embedder, texts, out / "vectors.npy", batch_size)
        else:
            np.save(out / "vectors.npy", encode(embedder, texts, batch_size))

    path, _ = cached_dir("embeddings", key, build)
    return np.load(path / "vectors.npy", mmap_mode="r" if len(texts) > STREAM_ABOVE else None)
