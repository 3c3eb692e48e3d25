"""The command line checked before Hydra composes it: the keys that overrides set against the schema
(Hydra would stop a misspelt `trainig.epochs=3` with its own message, which advises adding the key
with `+`, and accept `+trainig.epochs=3`), the options chosen for config groups against the files in
`conf`, and `exp_name`, which names the folder Hydra writes its log to before a job starts."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragft.config.components import check_value
from ragft.config.schema import schema_at
from ragft.errors import ConfigError


def check_override_keys(overrides: Sequence[str], conf: Path | None = None) -> None:
    """Check the command line before Hydra composes: the keys that overrides set (`training.epochs=3`,
    `+trainig.epochs=3`) against the schema, the options chosen for config groups (`arm=lora`) against
    the files in `conf` (None: groups come from elsewhere, not checked), and `exp_name`, which names the
    folder Hydra writes its log to before a job starts. Hydra's own settings and deletions are Hydra's
    to check, and an override Hydra cannot parse is left for Hydra to report."""
    parsed = parse(overrides)
    searchpath = any(o.key_or_group == "hydra.searchpath" for o in parsed)  # more groups than conf holds
    for override in parsed:
        if override.is_hydra_override() or override.is_delete():
            continue
        key = override.key_or_group
        if is_group(override, conf):
            if conf is not None and not searchpath:
                _check_group_options(conf, typed(override), key, override)
        elif override.package is None and "." in key:  # a dotted key is a setting, never a group
            schema_at(key.split("."))
        elif key == "exp_name":
            for value in plain_values(override):
                check_value(key, value, schema_at([key]).annotation)


def parse(overrides: Sequence[str]) -> list[Any]:
    """Hydra's parsed overrides; none where Hydra cannot parse them (it reports that itself)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return list(OverridesParser.create().parse_overrides(list(overrides)))
    except HydraException:
        return []


def is_group(override: Any, conf: Path | None) -> bool:
    """Whether an override chooses a config group's option (`arm=lora`, `+task@evaluate_also.qa=...`)."""
    return conf is not None and (conf / override.key_or_group).is_dir()


def typed(override: Any) -> str:
    """The override's left-hand side as the user typed it (`+task@evaluate_also.qa`)."""
    return (override.input_line or override.key_or_group).partition("=")[0]


def plain_values(override: Any) -> list[Any]:
    """The values an override sets, unquoted, each value of a list sweep (`arm=lora,rag`) on its own;
    none for a value Hydra computes (an interpolation, a glob, range or interval sweep)."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    values = list(value.list) if isinstance(value, ChoiceSweep) else [] if override.is_sweep_override() else [value]
    return [v for v in values if not (isinstance(v, str) and "${" in v)]


def is_optional_setting(key: str) -> bool:
    """Whether `key` is a setting of the schema itself (not of a component's open section): one a config
    may leave out, which the command line then adds with `+`."""
    try:
        return not schema_at(key.split(".")).open
    except ConfigError:
        return False


def _check_group_options(conf: Path, typed: str, group: str, override: Any) -> None:
    """Each option chosen for a config group (`typed=option`) is a file of the group; a glob matches one."""
    from hydra.core.override_parser.types import Glob

    known = sorted(p.relative_to(conf / group).with_suffix("").as_posix() for p in (conf / group).rglob("*.yaml"))
    name = typed.lstrip("+~")
    if isinstance(override.value(), Glob):
        if not override.value().filter(known):
            raise ConfigError(name, "the glob matches no option.", f"Its options are: {', '.join(known)}.")
        return
    for option in plain_values(override):
        if option is None or option == "null":  # Hydra takes no null for a group on the command line
            raise ConfigError(name, "cannot be set to null on the command line.", f"Remove the option with `~{name}`.")
        if str(option) not in known:
            close = difflib.get_close_matches(str(option), known, n=1)
            fix = f"Did you mean `{typed}={close[0]}`?" if close else f"Its options are: {', '.join(known)}."
            raise ConfigError(name, f"has no option '{option}' (conf/{group}/ has no {option}.yaml).", fix)
