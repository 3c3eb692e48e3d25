"""Errors a user can act on: each says what is wrong, where, and how to fix it."""

from __future__ import annotations

import re
from typing import Any


class RagftError(Exception):
    """Base class for errors caused by configuration or data, not by a bug in ragft."""


class ConfigError(RagftError):
    """A config value is invalid; the message names the config key."""

    def __init__(self, key: str, problem: str, fix: str = "") -> None:
        self.key = key
        super().__init__(f"config `{key}`: {problem}" + (f" {fix}" if fix else ""))


class DataError(RagftError):
    """A data file is malformed; the message names the file, the place in it (line or row) and the field."""

    def __init__(self, path: object, problem: str, where: str | None = None, field: str | None = None) -> None:
        located = f"{path}" + (f", {where}" if where else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{located}: {problem}")


def one_line(text: object) -> str:
    """`text` on one line: an error message from a library, a file's content, for a one-line report."""
    return " ".join(str(text).split())


def build(config: Any, config_key: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, letting ragft's own errors through (Hydra wraps whatever a constructor
    raises), reporting a value the user must still set (`???`) as a ConfigError, and a value a
    constructor refuses (its ValueError or TypeError: peft's `r` must be positive) as a ConfigError
    naming the component's key."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig) and (missing := sorted(OmegaConf.missing_keys(config))):
        # a node inside a config reports full paths already; a stand-alone node, paths below it
        key = missing[0] if missing[0].startswith(f"{config_key}.") else f"{config_key}.{missing[0]}"
        raise ConfigError(key, "must be set (it has no default).")
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, RagftError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        if isinstance(err.__cause__, (ValueError, TypeError)):
            located = re.search(r"full_key: (\S+)", str(err))
            key = located.group(1) if located else config_key
            key = key if key.startswith(config_key) else f"{config_key}.{key}"
            raise ConfigError(key, one_line(err.__cause__) + ".") from None
        raise
