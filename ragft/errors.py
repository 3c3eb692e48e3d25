"""Errors a user can act on: each says what is wrong, where, and how to fix it."""


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
