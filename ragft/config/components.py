"""The settings of components built from `_target_` (retrievers, chunkers, embedders, context builders,
adaptation methods, peft and quantization configs) checked before any work, against the component's
own signature: the schema of a component is its constructor.

Every key must be a parameter of the target (unless it takes `**kwargs`), every parameter without a
default must be set, and every value must fit the parameter's annotation, bounds included: a
constructor that declares `top_k: PositiveInt` is checked here, so `context.builder.top_k=0` stops the
run with one line naming the key instead of a library traceback after the model has loaded.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, cast

from omegaconf import DictConfig, OmegaConf
from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError

from ragft.config.plain import as_dict
from ragft.config.values import PositiveFloat, PositiveInt, Share, describe
from ragft.errors import ConfigError, one_line

HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
RAGFT_KEYS = {  # component -> keys ragft reads itself and takes out before building
    "retriever": ("label",),
    "context.builder": ("max_prompt_tokens",),  # the prompt budget (ragft.context.budget)
}


def buildable(cfg: DictConfig, path: str) -> DictConfig:
    """The component config at `path` without the keys ragft reads itself (`RAGFT_KEYS`), interpolations
    resolved, still at `path` so that errors name its keys in full (`retriever.index`)."""
    settings = as_dict(cfg)  # (a value still `???` stays missing)
    for key in RAGFT_KEYS.get(path, ()):
        settings.pop(key, None)
    nested: dict[str, Any] = settings
    for part in reversed(path.split(".")):
        nested = {part: nested}
    return cast(DictConfig, OmegaConf.select(OmegaConf.create(nested), path))


# What a library target's signature does not say: bounds peft checks only when it builds the adapter
# into the model (after the model has loaded), and a config class that keeps unknown keyword arguments
# (`**kwargs`) instead of refusing them.
BOUNDS: dict[str, dict[str, Any]] = {
    "peft.LoraConfig": {"r": PositiveInt, "lora_alpha": PositiveFloat, "lora_dropout": Share},
    "peft.PrefixTuningConfig": {"num_virtual_tokens": PositiveInt, "encoder_hidden_size": PositiveInt},
    "peft.PromptTuningConfig": {"num_virtual_tokens": PositiveInt},
    "transformers.BitsAndBytesConfig": {"bnb_4bit_quant_type": Literal["nf4", "fp4"]},
}
CLOSED = ("transformers.BitsAndBytesConfig",)  # its **kwargs are no settings


def check_components(settings: Mapping[str, Any]) -> None:
    """Check every `_target_` node of a resolved config (Hydra's own section left out)."""
    for section, value in settings.items():
        if section != "hydra":
            for path, node in _target_nodes(value, str(section)):
                check_component(path, node)


def check_component(path: str, node: Mapping[str, Any]) -> None:
    """One component's settings against its target's signature; a ConfigError naming the first wrong key."""
    target = _locate(path, node["_target_"])
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return
    params = signature.parameters
    takes_any = node["_target_"] not in CLOSED and any(p.kind is p.VAR_KEYWORD for p in params.values())
    hints = {**_hints(target), **BOUNDS.get(node["_target_"], {})}
    for key, value in node.items():
        if key in HYDRA_KEYS or key in RAGFT_KEYS.get(path, ()):
            continue
        if key not in params or params[key].kind is params[key].VAR_KEYWORD:
            if not takes_any:
                raise _unknown(f"{path}.{key}", node["_target_"], list(params))
            continue
        if not _is_component(value) and key in hints:
            check_value(f"{path}.{key}", value, hints[key])
    if not node.get("_partial_"):
        for name, param in params.items():
            required = param.default is inspect.Parameter.empty
            if required and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and name not in node:
                raise ConfigError(f"{path}.{name}", f"must be set: `{node['_target_']}` has no default for it.")


def _target_nodes(value: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted key, node) of every `_target_` node at or below `value`, outermost first."""
    if isinstance(value, Mapping):
        if "_target_" in value:
            yield path, value
        for key, item in value.items():
            yield from _target_nodes(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _target_nodes(item, f"{path}.{index}")


def _is_component(value: Any) -> bool:
    """A nested component (checked on its own) or a list of them (a hybrid retriever's retrievers)."""
    if isinstance(value, list):
        return any(_is_component(item) for item in value)
    return isinstance(value, Mapping) and "_target_" in value


def _locate(path: str, target: str) -> Callable[..., Any]:
    """The object `target` names (`peft.LoraConfig`), imported the way Hydra imports it."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module
        module = ".".join(parts[:split])
        try:
            located: Any = importlib.import_module(module)
            break
        except ModuleNotFoundError as err:
            if err.name is not None and not module.startswith(err.name):  # the module exists; its import failed
                raise _import_failed(path, target, err) from None
        except Exception as err:  # noqa: BLE001 - a module that exists but fails to import
            raise _import_failed(path, target, err) from None
    else:
        raise ConfigError(f"{path}._target_", f"cannot import '{target}': no module '{parts[0]}' is installed.")
    for depth, name in enumerate(parts[split:], start=split):
        if not hasattr(located, name):
            owner = ".".join(parts[:depth])
            close = difflib.get_close_matches(name, [n for n in dir(located) if not n.startswith("_")], n=1)
            fix = f"Did you mean '{owner}.{close[0]}'?" if close else ""
            raise ConfigError(f"{path}._target_", f"cannot import '{target}': '{owner}' has no '{name}'.", fix)
        located = getattr(located, name)
    if not callable(located):
        raise ConfigError(f"{path}._target_", f"'{target}' is not a class or function.")
    return typing.cast(Callable[..., Any], located)


def _import_failed(path: str, target: str, err: BaseException) -> ConfigError:
    reason = one_line(err) or type(err).__name__
    return ConfigError(f"{path}._target_", f"cannot import '{target}': importing it failed ({reason}).")


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    """The parameters' annotations with their bounds (`Annotated`); a parameter whose annotation cannot
    be evaluated here (a name imported only for type checking) is left out."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # noqa: BLE001 - one unresolvable name: evaluate the others one by one
        pass
    module = sys.modules.get(getattr(function, "__module__", ""), None)
    namespace = dict(vars(module)) if module else {}
    hints = {}
    for name, annotation in getattr(function, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
        except Exception:  # noqa: BLE001, S112 - left unchecked, as documented
            continue
    return hints


def check_value(key: str, value: Any, annotation: Any) -> None:
    """`value` at `key` against `annotation` (with its bounds); a ConfigError saying what it must be."""
    try:
        adapter = TypeAdapter(annotation)
    except (PydanticSchemaGenerationError, TypeError, NameError):  # a class pydantic cannot check
        return
    try:
        adapter.validate_python(value)
    except ValidationError:
        raise ConfigError(key, f"{value!r} is not allowed.", f"Set it to {describe(annotation)}.") from None


def _unknown(key: str, target: str, params: list[str]) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    known = [p for p in params if p not in ("self", "args", "kwargs")]
    close = difflib.get_close_matches(name, known, n=1)
    fix = f"Did you mean `{key.rsplit('.', 1)[0]}.{close[0]}`?" if close else f"Its settings are: {', '.join(known)}."
    return ConfigError(key, f"is not a setting of `{target}` (with or without `+`).", fix)
