"""Text from run records (model outputs, data, config values, run labels) shown as typed: in Markdown, in
code spans and in figures. The HTML report needs none of this (Jinja and pandas escape every value).

Markdown escaping is applied to a whole table cell, heading or line, after ragft has composed it, so a
construct split over two values (a task name ending in `[x` and a label starting with `](...)`) is
caught as well. Characters that cannot form markup where they stand are left alone, so ragft's own
numbers and names read as before in the raw file (`0.250 [0.100, 0.400]`, `lora_rag`, `+0.120*`).
"""

from __future__ import annotations

import html
import re
from typing import Any

NEWLINE = re.compile(r"\r\n|\r|\n")
ALWAYS = re.compile(r"[\\`#]")  # escapes, code spans, a heading's closing run
PAIRED = "*~"  # emphasis / strikethrough: markup only where two of them can pair
LINK = re.compile(r"\]\s*[(\[:]")  # `[t](url)`, `![t](url)`, `[t][ref]`, `[ref]: url`
UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")  # one not inside a word (`lora_rag` cannot emphasise)


def md_text(value: Any) -> str:
    """Markdown that shows `value` as typed in a table cell, heading or paragraph: no link, image, raw
    HTML, emphasis, heading or code span forms, a `|` does not split the cell and a line break is <br>."""
    text = ALWAYS.sub(r"\\\g<0>", str(value))
    for char in PAIRED:
        if text.count(char) > 1:
            text = text.replace(char, "\\" + char)
    text = UNDERSCORE.sub(r"\\_", text)
    if LINK.search(text) or "![" in text:
        text = re.sub(r"[\[\]]", r"\\\g<0>", text)
    text = html.escape(text, quote=False).replace("|", "\\|")
    return NEWLINE.sub("<br>", text)


def md_code(value: Any) -> str:
    """`value` in a Markdown code span (shown as typed: nothing in it is markup): its fence is longer than
    any run of backticks in it, and line breaks become spaces (a heading or cell is one line)."""
    text = NEWLINE.sub(" ", str(value))
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plot_text(value: Any) -> str:
    """A label for a matplotlib figure: `$` escaped, so text with dollar signs neither becomes mathtext
    nor stops the figure with a mathtext parse error."""
    return str(value).replace("$", r"\$")
