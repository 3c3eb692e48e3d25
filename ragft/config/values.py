"""The kinds of value ragft's settings take, with their bounds, and what each must be in words.

The config schema (schema.py) and the constructors of components built from `_target_` (checked by
components.py) annotate their settings with these, so both are checked the same way before any work
and both errors say the same thing: "Set it to a whole number > 0."
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Probability = Annotated[float, Ge(0), Le(1)]
Fraction = Annotated[float, Gt(0), Lt(1)]  # a share strictly between none and all
Share = Annotated[float, Ge(0), Lt(1)]  # from none up to, not including, all (a warm-up share, a dropout rate)
Open = dict[str, Any]  # a section whose keys its component checks
FOLDER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # names a folder inside the results: never `..`, never hidden


class Described(typing.NamedTuple):
    """Schema metadata: what a value must be, in words, where its type and bounds do not say it."""

    words: str


def describe(annotation: Any, nullable: bool = False) -> str:
    """What a value of `annotation` must be, in words: 'a whole number > 0, or null'."""
    annotation, optional = unwrap_optional(annotation)
    tail = ", or null" if nullable or optional else ""
    base, bounds = annotation, []
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        bounds = [_bound(m) for m in metadata if _bound(m)]
        if said := [m.words for m in metadata if isinstance(m, Described)]:
            return said[0] + tail
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(base)) + tail
    words = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(base)
    if isinstance(base, type) and issubclass(base, BaseModel):
        words = f"a section with the settings {', '.join(f.alias or n for n, f in base.model_fields.items())}"
    elif words is None:
        words = {list: "a list", dict: "a section of settings"}.get(typing.get_origin(base), "a value")
    return " ".join([words, " and ".join(bounds)]).strip() + tail


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(`X`, True) for `X | None`; a union of several types is `Any`."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (members[0] if len(members) == 1 else Any), len(members) < len(typing.get_args(annotation))
    return annotation, False


def _bound(metadata: Any) -> str:
    for kind, sign, limit in ((Gt, ">", "gt"), (Ge, ">=", "ge"), (Lt, "<", "lt"), (Le, "<=", "le")):
        if isinstance(metadata, kind):
            return f"{sign} {getattr(metadata, limit)}"
    return ""
