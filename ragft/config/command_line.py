"""The command line checked before Hydra composes it: the keys that overrides set against the schema
(Hydra would stop a misspelt `trainig.epochs=3` with its own message, which advises adding the key
with `+`, and accept `+trainig.epochs=3`), the options chosen for config groups against the files in
`conf`, and `exp_name`, which names the folder Hydra writes its log to before a job starts."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ragft.config.schema import describe_place, schema_at
from ragft.errors import ConfigError


def check_override_keys(overrides: Sequence[str], conf: Path | None = None) -> None:
    """Check the command line before Hydra composes: the keys that overrides set (`training.epochs=3`,
    `+trainig.epochs=3`) against the schema, the options chosen for config groups (`arm=lora`) against
    the files in `conf`, and `exp_name`, which names the folder Hydra writes its log to before a job
    starts. Hydra's own settings and deletions are Hydra's to check, and an override Hydra cannot parse
    is left for Hydra to report."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return
    searchpath = any(o.key_or_group == "hydra.searchpath" for o in parsed)  # more groups than conf holds
    for override in parsed:
        if override.is_hydra_override() or override.is_delete():
            continue
        key = override.key_or_group
        if conf is not None and (conf / key).is_dir():
            if not searchpath:
                _check_group_options(conf, (override.input_line or key).partition("=")[0], key, _values(override))
        elif override.package is None and "." in key:  # a dotted key is a setting, never a group
            schema_at(key.split("."))
        elif key == "exp_name":
            for value in _values(override):
                _check_value(key, value)


def is_optional_setting(key: str) -> bool:
    """Whether `key` is a setting of the schema itself (not of a component's open section): one a config
    may leave out, which the command line then adds with `+`."""
    try:
        return not schema_at(key.split(".")).open
    except ConfigError:
        return False


def _values(override: Any) -> list[str]:
    """The value(s) an override sets, each of a sweep (`arm=lora,rag`) on its own."""
    if override.is_sweep_override():
        return [str(value) for value in override.sweep_string_iterator()]
    return [override.get_value_element_as_str()]


def _check_group_options(conf: Path, typed: str, group: str, options: Sequence[str]) -> None:
    """Each option chosen for a config group (`typed=option`, typed as `+task@evaluate_also.qa`) is a
    file of the group."""
    known = sorted(p.relative_to(conf / group).with_suffix("").as_posix() for p in (conf / group).rglob("*.yaml"))
    name = typed.lstrip("+~")
    for option in options:
        if option == "null":  # Hydra takes no null for a group on the command line
            raise ConfigError(name, "cannot be set to null on the command line.", f"Remove the option with `~{name}`.")
        if option not in known:
            close = difflib.get_close_matches(option, known, n=1)
            fix = f"Did you mean `{typed}={close[0]}`?" if close else f"Its options are: {', '.join(known)}."
            raise ConfigError(name, f"has no option '{option}' (conf/{group}/ has no {option}.yaml).", fix)


def _check_value(key: str, value: Any) -> None:
    """`value` at `key` against the schema, before anything composes."""
    place = schema_at(key.split("."))
    try:
        TypeAdapter(place.annotation).validate_python(value)
    except ValidationError:
        raise ConfigError(key, f"{value!r} is not allowed.", f"Set it to {describe_place(place)}.") from None
