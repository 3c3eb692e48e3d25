"""Text normalisation shared by metrics and leakage checks, and token counts."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any


def normalize_answer(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_counts(texts: Sequence[str], tokenizer: Any) -> list[int]:
    """Each text's tokens under `tokenizer` (a Hugging Face tokenizer), special tokens left out."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]]
