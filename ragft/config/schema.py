"""The schema of ragft's config: every section ragft defines, with its types and ranges, checked before
a run does any work, so that a misspelt key or a value out of range stops it with one line that names
the key, what is wrong and how to fix it.

Sections whose keys belong to a component built from `_target_` (a retriever, chunker, embedder,
context builder selection, adaptation method, quantization) or read by one (a metric's settings, a
prompt template) are open here: that component checks them when it is built, before any work too.

`validate(cfg)` checks a composed config; `schema_at(key)`, what the schema holds at a key (command_line.py).
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import typing
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

from annotated_types import Gt, Le
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from ragft.config.components import check_components
from ragft.config.plain import as_dict
from ragft.config.values import (
    FOLDER_NAME,
    Described,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    Open,
    PositiveFloat,
    PositiveInt,
    Share,
    describe,
    unwrap_optional,
)
from ragft.errors import ConfigError

MISSING = "???"
RUN_LABEL = re.compile(f"|{FOLDER_NAME}")  # a run label begins a folder's name inside the experiment
LRScheduler = Literal[  # transformers' SchedulerType values (a test keeps this list equal to them)
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
]  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- a task: the run's own, and any other (train_task, train_mix, sequence, evaluate_also) ------------


class SplitBy(_Section):
    """A seeded split of a file without a split field: these shares to validation and test, train the rest."""

    validation: Share = 0.0
    test: Share = 0.0
    seed: NonNegativeInt = 0
    stratify: str | None = None  # `category` or a name of task.data.breakdowns: the shares kept in each group


class TaskData(_Section):
    path: str
    fields: dict[str, str | None]  # example field -> column; the loader names a missing mapping
    splits: dict[str, str | int | list[str | int]] | None = None  # split -> the file's value(s) of it
    split_by: SplitBy | None = None  # where the file has no split field (fields.split: null)
    list_separator: str | None = None  # gold passage ids in one string, joined by this (e.g. ";")
    categories: list[str] | None = None  # keep only these categories
    breakdowns: dict[str, str] | None = None  # report breakdowns besides category: name -> field (knowledge)
    encoding: str = "utf-8"  # text files (JSONL, CSV); a byte-order mark is skipped in every format


class Corpus(_Section):
    path: str
    id_field: str = "id"
    text_field: str = "text"
    document_field: str | None = None  # the document a passage is part of (gold ids name documents); null: itself
    exclude: list[str] | None = None  # document ids taken out of the index
    encoding: str = "utf-8"


class TaskGeneration(_Section):
    max_new_tokens: PositiveInt


class Task(_Section):
    name: str  # the task's identity in records and reports
    dir: str | None = None  # a folder the task's paths are built from (tasks whose data is not shipped)
    data: TaskData
    corpus: Corpus | None = None
    limits: dict[str, PositiveInt | None] = {}  # split -> first n examples; the loader names unknown splits
    template: Open  # PromptTemplate names unknown keys
    generation: TaskGeneration
    truncate: Literal["head", "tail", "middle"] | None = None  # an input over the prompt budget alone: the part kept
    primary_metric: str | None = None
    metrics: dict[str, Open | None]  # the metric registry checks names and settings


# --- models, components and the arm's axes -------------------------------------------------------------


class Generator(_Section):
    name: str  # the model's name in records
    source: Any  # a path, a model id, or a `_target_` that returns one
    max_context: PositiveInt | None = None


class Evaluation(_Section):
    embedder: Open | None = None
    judge: Generator | None = None


class Preference(_Section):
    objective: Open  # ragft.adapt.preference.DPO or ORPO (`_target_`), with its beta
    source: Open  # where the pairs come from (`_target_`: ragft.adapt.pairs.OwnAnswers, RunAnswers, PairsFile)
    training: dict[str, Any] = {}  # training settings for the preference stage, over `training`


class Adaptation(_Section):
    method: Open | None  # a peft config or ragft method (`_target_`); null: nothing trains
    merge_for_inference: StrictBool = False
    learning_rate: PositiveFloat | None = None  # the method's default for training.learning_rate
    quantization: Open | None = None
    answer: Open | None = None  # a fixed answer served instead of the model (`_target_`: adaptation=majority)
    preference: Preference | None = None  # a preference stage (adaptation=dpo, orpo)


class Builder(BaseModel):
    """A context builder: its constructor checks its settings; whole-number sizes are checked here
    too, since a fractional `k` would pass a range check and fail only when contexts are built."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    target: str = Field(alias="_target_")
    k: PositiveInt | None = None
    top_k: PositiveInt | None = None
    depth: PositiveInt | None = None
    max_prompt_tokens: PositiveInt | None = None  # the prompt budget (ragft.context.budget); null: window less answer


class Context(_Section):
    retrieves: StrictBool = False  # puts retrieved passages in prompts: the run uses retriever and chunking
    builder: Builder


# --- run-wide sections ----------------------------------------------------------------------------------


class Validation(_Section):
    split: str | None = None
    holdout: Fraction | None = None
    eval_steps: PositiveInt | None = None
    early_stopping_patience: PositiveInt | None = None


class Training(_Section):
    learning_rate: PositiveFloat | None
    batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt = 1
    epochs: PositiveFloat
    max_steps: PositiveInt | None = None
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeInt = 0
    lr_scheduler: LRScheduler = "linear"
    max_length: PositiveInt
    gradient_checkpointing: StrictBool = False  # recompute activations in the backward pass: less memory, more time
    return_freed_memory: StrictBool = False  # glibc: large allocations mapped on their own, returned when freed
    logging_steps: PositiveInt = 5
    checkpoint_steps: PositiveInt | None = None  # the training state saved every n steps, for resuming
    seed: NonNegativeInt
    instruction_mix: StrictBool = False
    validation: Validation = Validation()


class TrainMix(_Section):
    tasks: dict[str, Task] = {}
    weights: dict[str, PositiveFloat] = {}
    size: PositiveInt | None = None


class Paths(_Section):
    root: str
    corpora: str
    results: str


class Leakage(_Section):
    ngram: PositiveInt
    near_threshold: Annotated[float, Gt(0), Le(1)]
    min_reference_words: NonNegativeInt
    fail: StrictBool


class RetrievalEval(_Section):
    split: str
    depth: PositiveInt
    ks: list[PositiveInt]


class Generation(_Section):
    batch_size: PositiveInt
    max_padding: NonNegativeFloat | None = 0.2  # a batch's padding, as a share of its prompt tokens; null: any
    max_batch_tokens: PositiveInt | None = None  # a batch's padded prompt tokens (rows x longest); null: any
    latency_sample: NonNegativeInt = 8  # examples answered alone to measure latency at batch 1; 0: none


class Tune(_Section):
    trials: NonNegativeInt = 0
    space: dict[str, dict[str, Any]] = {}  # ragft/tune.py checks each setting and its range
    split: str | None = None
    seed: NonNegativeInt = 0
    chosen: dict[str, Any] = {}


class Tracking(_Section):
    """Where runs are logged besides their records (tracking=mlflow: conf/tracking/mlflow.yaml)."""

    tracking_uri: str  # an MLflow tracking URI: sqlite:///<file>, http(s)://<server>, databricks, ...
    experiment_name: str
    artifact_location: str | None = None  # null: beside a local database, else the server's choice


class RunConfig(_Section):
    """The whole config of a run, as `conf/config.yaml` composes it."""

    task: Task
    generator: Generator
    embedder: Open  # the embedder component (`_target_`), used through `${embedder}` interpolations
    retriever: Open | None = None  # null: no retriever (a run whose context retrieves needs one)
    chunking: Open | None = None
    adaptation: Adaptation
    context: Context
    evaluation: Evaluation = Evaluation()
    exp_name: Annotated[
        str, Field(pattern=f"^{FOLDER_NAME}$"), Described("a folder name (letters, digits, _ . -; not starting with .)")
    ]
    seed: NonNegativeInt
    plugins: list[str] = []
    paths: Paths
    leakage: Leakage
    retrieval_eval: RetrievalEval
    generation: Generation
    tune: Tune = Tune()
    training: Training
    evaluate_also: dict[str, Task] = {}
    train_mix: TrainMix = TrainMix()
    sequence: dict[str, Task] = {}
    train_task: Task | None = None  # the adapter's training data, where it is not the run's task
    withdrawn: list[str] | None = None  # documents an experiment takes out of the index (conf/exp/withdrawal.yaml)
    tracking: Tracking | None = None  # null: runs are logged to their records only


# --- checks ----------------------------------------------------------------------------------------------


def validate(cfg: DictConfig) -> None:
    """Check `cfg` against the schema, and the settings that must agree with each other; raise a
    ConfigError naming the first key that is wrong."""
    settings = _resolved(cfg)
    if missing := next(_missing_values(settings), None):
        raise ConfigError(missing, "must be set (it has no default).", f"Set it on the command line: {missing}=...")
    try:
        run = RunConfig.model_validate(settings)
    except ValidationError as err:
        raise _config_error(err.errors()[0]) from None
    check_components(settings)
    _check_consistency(run)


def _check_consistency(run: RunConfig) -> None:
    """Settings that are valid alone but not together."""
    label = (run.retriever or {}).get("label")
    if label is not None and not RUN_LABEL.fullmatch(str(label)):  # it begins run folders' names
        raise ConfigError(
            "retriever.label", f"{label!r} cannot begin a run folder's name.", "Use letters, digits and _ . - only."
        )
    if run.context.retrieves and run.retriever is None:
        raise ConfigError(
            "retriever", "is null, but the context retrieves passages.", "Choose one, e.g. retriever=dense_flat."
        )
    if run.context.retrieves and run.task.corpus is None:
        raise ConfigError(
            "task.corpus", "is null, but the context retrieves passages from it.", "Set the task's corpus."
        )
    if run.tracking is not None and importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "tracking", "is mlflow, but mlflow is not installed.", "Install it: pip install 'ragft[mlflow]'."
        )
    if run.adaptation.method is not None and run.training.learning_rate is None:
        raise ConfigError(
            "training.learning_rate",
            "is null, but the adaptation trains.",
            "Set training.learning_rate or adaptation.learning_rate (e.g. 1.0e-4).",
        )


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data, interpolations resolved (Hydra's own `hydra` section left out); a value
    still `???` stays as it is, an interpolation that cannot resolve is a ConfigError."""
    keys: list[Any] = [key for key in cfg if key != "hydra"]  # masked_copy takes any key type; its stub says str
    try:
        return as_dict(OmegaConf.masked_copy(cfg, keys))
    except OmegaConfBaseException as err:
        problem = str(err).splitlines()[0]
        raise ConfigError(str(err.full_key or "?"), f"cannot be resolved: {problem}.") from None


def _missing_values(settings: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Keys still `???` outside the open sections (where the component's builder reports them)."""
    if isinstance(settings, dict):
        for key, value in settings.items():
            yield from _missing_values(value, (*path, str(key)))
    elif settings == MISSING and not schema_at(list(path)).open:
        yield ".".join(path)


# --- the schema at a key ---------------------------------------------------------------------------------


class _Place(typing.NamedTuple):
    annotation: Any  # the schema's type at the key
    nullable: bool
    open: bool  # inside a section its component checks: any key may follow


def schema_at(path: Sequence[str | int]) -> _Place:
    """The schema's type at a dotted key; a ConfigError where the key is not a setting."""
    annotation: Any = RunConfig
    nullable = opened = False
    for depth, part in enumerate(path):
        annotation, nullable = unwrap_optional(annotation)
        if opened or annotation is Any:
            return _Place(Any, True, True)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _field(annotation, str(part))
            if field is None:
                if annotation.model_config.get("extra") == "allow":
                    return _Place(Any, True, True)
                raise _unknown_key(list(path[: depth + 1]), annotation)
            annotation = _annotated(field.annotation, field.metadata)
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
            opened = annotation is Any
        else:
            return _Place(Any, True, True)  # inside a value Hydra will refuse to descend into
    annotation, nullable = unwrap_optional(annotation)
    return _Place(annotation, nullable, opened)


def _annotated(annotation: Any, metadata: list[Any]) -> Any:
    """`annotation` carrying a field's bounds and descriptions again (pydantic keeps them apart)."""
    return Annotated[(annotation,) + tuple(metadata)] if metadata else annotation


def _field(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


# --- messages --------------------------------------------------------------------------------------------


def _unknown_key(path: Sequence[str | int], model: type[BaseModel]) -> ConfigError:
    key, parent = ".".join(map(str, path)), ".".join(map(str, path[:-1]))
    known = _keys_of(model)
    close = difflib.get_close_matches(str(path[-1]), known, n=1)
    where = f"a setting of `{parent}`" if parent else "a top-level setting"
    if path[-1] == "name" and parent in ("adaptation", "context"):
        fix = "A group's name is its file name, which Hydra records: remove the `name:` key."
    elif close:
        fix = f"Did you mean `{'.'.join([*map(str, path[:-1]), close[0]])}`?"
    else:
        fix = f"Its settings are: {', '.join(known)}."
    return ConfigError(key, f"is not {where} (with or without `+`).", fix)


def _config_error(error: Any) -> ConfigError:
    """One pydantic error as ragft's ConfigError: the key, the value given, what it must be."""
    path, kind = list(error["loc"]), error["type"]
    if kind == "extra_forbidden":
        return _unknown_key(path, schema_at(path[:-1]).annotation)
    key = ".".join(map(str, path))
    expected = describe_place(schema_at(path))
    if kind == "missing":
        return ConfigError(key, "is missing.", f"Set it to {expected}.")
    return ConfigError(key, f"{error['input']!r} is not allowed.", f"Set it to {expected}.")


def describe_place(place: _Place) -> str:
    return describe(place.annotation, place.nullable)
