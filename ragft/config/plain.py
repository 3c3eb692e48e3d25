"""Config nodes as plain Python data. OmegaConf's `to_container` is typed to return any container or
value it may produce; a section is a mapping with string keys, and these helpers say so in one place."""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf


def as_dict(cfg: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """A config section as a plain dict, interpolations resolved (unless `resolve` is False); a value
    still `???` stays `???` (the component that reads it reports it)."""
    container = OmegaConf.to_container(cfg, resolve=resolve)
    assert isinstance(container, dict), "a DictConfig converts to a dict"
    return cast(dict[str, Any], container)  # the stub allows any key type; config keys are strings


def as_plain(value: Any) -> Any:
    """A config node (section or list) as plain data, interpolations resolved; any other value as it is."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
