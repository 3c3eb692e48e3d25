"""A user's own metrics, retrievers and methods, in modules of their own outside ragft.

`plugins: [my_metrics, ...]` in a config names modules imported before a run, so that the decorators in
them (`@register_metric`) have run when the task's metrics are looked up. Classes named by `_target_`
(a retriever, a context builder, an adaptation method) need no entry here: Hydra imports them itself.
Either way the module must be importable: a folder on PYTHONPATH, or the directory the command runs in.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from types import ModuleType

from ragft.errors import ConfigError

log = logging.getLogger(__name__)

_FIX = (
    "Put the folder that holds it on PYTHONPATH (PYTHONPATH=/path/to/folder python -m ragft.run ...), "
    "or run from that folder."
)


def load_plugins(modules: Sequence[str] | None) -> list[ModuleType]:
    """Import each named module, in order; importing a module twice in one process is a no-op."""
    if modules is None:
        return []
    if isinstance(modules, str) or not isinstance(modules, Sequence):
        raise ConfigError("plugins", f"must be a list of module names, not {modules!r}.", "E.g. plugins=[my_metrics].")
    return [_import(name, f"plugins[{i}]") for i, name in enumerate(modules)]


def _import(name: str, key: str) -> ModuleType:
    if not isinstance(name, str) or not name:
        raise ConfigError(key, f"must be a module name such as my_metrics, not {name!r}.")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if not _is_the_plugin(err, name):  # the plugin was found; something it imports is missing
            raise
        raise ConfigError(key, f"no module named '{name}' can be imported.", _FIX) from None
    log.info("plugin %s loaded from %s", name, module.__file__)
    return module


def _is_the_plugin(err: ModuleNotFoundError, name: str) -> bool:
    """Whether the module that could not be found is the plugin (or a package on its dotted path)."""
    return err.name is not None and (name == err.name or name.startswith(err.name + "."))
