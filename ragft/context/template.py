"""Prompts: a task's template with named fields, and the context builders that decide what a prompt
carries besides the input (nothing, demonstration examples, or retrieved passages)."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from ragft.errors import ConfigError
from ragft.types import Context, Example


@dataclass(frozen=True)
class PromptTemplate:
    """The task's prompt, from `task.template`: `{input}` and `{passages}` are the named fields, and
    `input_format` may name any other field of the example's record (`{question}`, `{patient_age}`),
    which the loader then reads from every example (ragft.data.loading.template_fields)."""

    instruction: str
    input_format: str = "{input}"
    passages_format: str = "Reference documents:\n{passages}"
    passage_format: str = "[{id}] {text}"
    system: str | None = None
    instruction_variants: tuple[str, ...] = ()  # other phrasings of the instruction (training.instruction_mix)

    PLACEHOLDERS = {"passages_format": {"passages"}, "passage_format": {"id", "text"}}

    def __post_init__(self) -> None:
        for name, allowed in self.PLACEHOLDERS.items():
            used = {field for _, field, _, _ in string.Formatter().parse(getattr(self, name)) if field is not None}
            if used - allowed:
                raise ConfigError(
                    f"task.template.{name}",
                    f"unknown placeholder(s) {sorted(used - allowed)}.",
                    f"Available: {sorted(allowed)}.",
                )

    @classmethod
    def from_config(cls, template: Mapping[str, Any]) -> PromptTemplate:
        unknown = set(template) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(
                "task.template",
                f"unknown key(s) {sorted(unknown)}.",
                f"Expected some of {sorted(f.name for f in fields(cls))}.",
            )
        settings = dict(template)
        settings["instruction_variants"] = tuple(settings.get("instruction_variants") or ())
        return cls(**settings)

    @property
    def instructions(self) -> tuple[str, ...]:
        """The template library: the instruction and its variants."""
        return (self.instruction, *self.instruction_variants)

    def with_instruction(self, instruction: str) -> PromptTemplate:
        return replace(self, instruction=instruction)

    def user_message(self, example: Example, context: Context, with_instruction: bool = True) -> str:
        parts = [self.instruction] if with_instruction else []
        if context.passages:
            body = "\n".join(self.passage_format.format(id=p.id, text=p.text) for p in context.passages)
            parts.append(self.passages_format.format(passages=body))
        parts.append(self.input_format.format_map({**example.fields, "input": example.input}))
        return "\n\n".join(parts)

    def messages(self, example: Example, context: Context) -> list[dict[str, str]]:
        """Chat messages: system, one user/assistant turn per shot, then the example's turn.

        The instruction is stated once, in the first user turn: repeating it in every shot would only
        lengthen the prompt.
        """
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for i, shot in enumerate(context.shots):
            messages.append({"role": "user", "content": self.user_message(shot, Context(), with_instruction=i == 0)})
            messages.append({"role": "assistant", "content": shot.reference})
        last = self.user_message(example, context, with_instruction=not context.shots)
        messages.append({"role": "user", "content": last})
        return messages

    def render(self, example: Example, context: Context, tokenizer: Any) -> str:
        """The prompt text, through the tokenizer's chat template where it has one."""
        return chat_prompt(self.messages(example, context), tokenizer)

    def render_all(self, examples: Sequence[Example], contexts: Sequence[Context], tokenizer: Any) -> list[str]:
        """One prompt per example, each with its own context."""
        return [self.render(e, c, tokenizer) for e, c in zip(examples, contexts, strict=True)]


def chat_prompt(messages: Sequence[Mapping[str, str]], tokenizer: Any) -> str:
    """Messages as prompt text, through the tokenizer's chat template where it has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"
