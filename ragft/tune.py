"""Tuning on validation, never on test: each arm's own settings searched with Optuna (a seeded TPE
sampler) under the same trial budget for every arm, the objective its task's primary metric on the
validation split, the study stored in the experiment folder (`tuning.db`, SQLite), the best trial's
settings applied to the arm's run on test and recorded with it (`tune.chosen`).

A job with `tune.trials > 0` (every job of `+exp=medical_reports_tuned`: each arm at seeds 0, 1, 2) first
makes sure its arm's study has tried the arm's configured settings (where the space holds them; they win
ties) and `tune.trials` distinct drawn settings (a setting the sampler proposes again is answered from the
study, neither run nor counted; a smaller space is tried whole) — the first of the arm's jobs runs them,
the others reuse them (a file lock keeps concurrent jobs from running them twice) — then runs on test with
the chosen settings. Each trial is an ordinary run with `tune.split=validation`, recorded in
`<experiment>_tuning/`, so a killed study resumes and its trials' artefacts are cached like any run's.

`tune.space` maps an arm's label to its settings: a list is a choice, `{low, high, log}` a range
(whole numbers where both bounds are), any other mapping a choice between named config nodes (e.g.
`context.builder.selection: {similar: {_target_: ...}, random: {_target_: ...}}`: the node is applied,
its name recorded). An arm without a space is run as configured.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf, open_dict

from ragft.config.command_line import is_optional_setting
from ragft.config.identity import choices, result_config, run_label, without_seeds
from ragft.config.plain import as_dict
from ragft.errors import ConfigError, RagftError
from ragft.eval.registry import METRICS, primary_metric
from ragft.recipe import run_experiment_arm
from ragft.record.cache import content_key
from ragft.record.run import read_record

log = logging.getLogger(__name__)
STUDY_FILE = "tuning.db"
TRIAL_SPLIT = "validation"


def run_arm(cfg: DictConfig) -> Path | float:
    """The job of `python -m ragft.run`: the arm run as configured, after tuning where `tune.trials` asks
    for it; a trial's job returns its objective (the primary metric on the split it scored)."""
    if cfg.tune.trials and cfg.tune.split is None:
        cfg = with_tuned_settings(cfg)
    run_dir = run_experiment_arm(cfg)
    return objective_of(run_dir) if cfg.tune.split is not None else run_dir


def with_tuned_settings(cfg: DictConfig) -> DictConfig:
    """`cfg` with the best settings of its arm's study (run first where it has tried fewer than
    `tune.trials` settings); `cfg` unchanged for an arm without a search space."""
    label = run_label(cfg, choices(cfg))
    space = _space(cfg, label)
    if not space:
        log.info(
            "%s: not tuned (tune.space has no entry for it; it has: %s)", label, ", ".join(cfg.tune.space) or "none"
        )
        return cfg
    import optuna

    folder = Path(cfg.paths.results) / cfg.exp_name
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f".tune-{label}.lock")):
        study = optuna.create_study(
            study_name=study_name(cfg, label),
            storage=f"sqlite:///{folder / STUDY_FILE}",
            load_if_exists=True,
            direction="maximize" if _higher_is_better(cfg) else "minimize",
            sampler=optuna.samplers.TPESampler(seed=int(cfg.tune.seed)),
        )
        _try_settings(study, cfg, space, label)
        best = _best(study, cfg.tune.trials, label, f"{cfg.exp_name}_tuning")
    log.info(
        "%s: tuned settings %s (validation %s %.3f; %d drawn setting(s) tried%s)",
        label,
        best.params,
        cfg.task.get("primary_metric"),
        best.value,
        min(len(_tried(study)), cfg.tune.trials),
        ", and the configured ones" if _configured_trials(study) else "",
    )
    return applied(cfg, _values(space, best.params), chosen=best.params)


# The sampler may propose a setting it has tried (likely in a small space of choices): that trial
# is answered from the study, not run, and does not count. It gives up after this many in a row.
MAX_REPEATS = 200


def _try_settings(study: Any, cfg: DictConfig, space: Mapping[str, Any], label: str) -> None:
    """The arm's configured settings first (where its space holds them: a search never ends below the
    configuration it started from), then trials until the study has drawn `tune.trials` distinct
    settings, or all its space holds where that is fewer: every arm gets the same number of draws."""
    configured = _configured(cfg, space)
    if configured is not None and not any(t.params == configured for t in _finished(study)):
        log.info("%s: trying its configured settings %s on %s", label, configured, TRIAL_SPLIT)
        study.enqueue_trial(configured, user_attrs={CONFIGURED: True})
        study.optimize(lambda trial: _trial(cfg, space, trial), n_trials=1, catch=TRIAL_FAILURES)
    target = min(cfg.tune.trials, _size(space) - len(_configured_trials(study)))
    tried = len(_tried(study))
    if tried >= target:
        return
    log.info("%s: tuning on %s, %d more setting(s) to try", label, TRIAL_SPLIT, target - tried)
    repeats = 0
    while tried < target and repeats < MAX_REPEATS:
        study.optimize(lambda trial: _trial(cfg, space, trial), n_trials=1, catch=TRIAL_FAILURES)
        before, tried = tried, len(_tried(study))
        repeats = repeats + 1 if tried == before else 0
    if repeats >= MAX_REPEATS:
        log.warning("%s: the sampler proposed only tried settings %d times in a row; stopped", label, MAX_REPEATS)


def _finished(study: Any) -> list[Any]:
    """The study's trials that ended, scored or failed, by number (a killed trial's stays RUNNING and is
    run again)."""
    import optuna

    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return sorted((t for t in study.trials if t.state in ended), key=lambda t: t.number)


CONFIGURED = "configured"  # the user attribute of the trial of the arm's configured settings


def _configured_trials(study: Any) -> list[Any]:
    """The study's finished trial of the arm's configured settings (none where its space does not hold them)."""
    return [t for t in _finished(study) if t.user_attrs.get(CONFIGURED)]


def _configured(cfg: DictConfig, space: Mapping[str, Any]) -> dict[str, Any] | None:
    """The arm's configured settings as its study names them; None where one lies outside the space
    (a named node stands for the configured one when it sets nothing the configured node does not)."""
    named: dict[str, Any] = {}
    for key, spec in space.items():
        value = OmegaConf.select(cfg, key, default=None)
        if _named(spec):
            node = as_dict(value, resolve=False) if isinstance(value, DictConfig) else {}
            value = next((name for name, option in spec.items() if option.items() <= node.items()), None)
            if value is None:
                return None
        elif isinstance(spec, list):
            if value not in spec:
                return None
        elif not (isinstance(value, (int, float)) and spec["low"] <= value <= spec["high"]):
            return None
        named[key] = value
    return named


def _tried(study: Any) -> list[Any]:
    """The settings the study has drawn, each as its first finished trial, by number: each counts against
    the budget, a failure too (the configured settings' trial is not drawn, and a draw of them is not new)."""
    finished = _finished(study)  # one read of the study's storage
    seen = {repr(sorted(t.params.items())) for t in finished if t.user_attrs.get(CONFIGURED)}
    tried = []
    for trial in (t for t in finished if not t.user_attrs.get(CONFIGURED)):
        key = repr(sorted(trial.params.items()))
        if key not in seen:
            seen.add(key)
            tried.append(trial)
    return tried


def _size(space: Mapping[str, Any]) -> float:
    """How many distinct settings the space holds (infinite with a range of real numbers)."""
    size = 1.0
    for spec in space.values():
        if _ranged(spec):
            whole = isinstance(spec["low"], int) and isinstance(spec["high"], int)
            size *= spec["high"] - spec["low"] + 1 if whole else float("inf")
        else:
            size *= len(spec)
    return size


def _best(study: Any, budget: int, label: str, trials_folder: str) -> Any:
    """The best scored setting among the configured one and the first `budget` drawn (a study extended by
    a larger budget elsewhere does not give this one more tries)."""
    import optuna

    candidates = _configured_trials(study) + _tried(study)[:budget]
    scored = [t for t in candidates if t.state == optuna.trial.TrialState.COMPLETE]
    if not scored:
        raise ConfigError(
            "tune", f"every trial of {label} failed, nothing to choose from.", f"Their runs are in {trials_folder}/."
        )
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(scored, key=lambda t: (sign * t.value, bool(t.user_attrs.get(CONFIGURED)), -t.number))


def study_name(cfg: DictConfig, label: str) -> str:
    """The study of one configuration: its arm's label and a hash of its settings but the seeds and the
    trial count (the tuning settings that count: `tune.seed` and the arm's own space), so a sweep over
    another setting (`training.epochs=2,10`) tunes each configuration apart, the seeds of one
    configuration share its study, and a larger `tune.trials` extends it."""
    settings = without_seeds(result_config(cfg))
    settings["tune"] = {"seed": cfg.tune.seed, "space": settings.get("tune", {}).get("space", {}).get(label)}
    return f"{label}-{content_key(settings)}"


def applied(cfg: DictConfig, settings: Mapping[str, Any], chosen: Mapping[str, Any] | None = None) -> DictConfig:
    """A copy of `cfg` with `settings` (dotted keys) set; `chosen` (the settings as the study names them)
    recorded under `tune.chosen`."""
    copy = deepcopy(cfg)
    with open_dict(copy):
        for key, value in settings.items():
            before = OmegaConf.select(copy, key)
            if isinstance(value, dict) and isinstance(before, DictConfig) and "label" in before:
                value = {"label": before.label, **value}  # a swapped component keeps the arm's name
            OmegaConf.update(copy, key, value, merge=False)
        if chosen is not None:
            copy.tune.chosen = dict(chosen)
    return copy


# A trial that fails (settings that cannot work: a prompt too long, memory run out) is recorded and
# counted against the budget; the study goes on.
TRIAL_FAILURES = (RagftError, RuntimeError)


def objective_of(run_dir: Path) -> float:
    """A run's primary metric (its mean over the examples it scored)."""
    record = read_record(run_dir)
    if record.status != "finished":
        raise ConfigError("tune", f"the trial run {run_dir.name} failed: {record.failure}")
    return record.scores[record.identity.primary_metric].mean


def _trial(cfg: DictConfig, space: Mapping[str, Any], trial: Any) -> float:
    """One trial: the arm on the validation split with the trial's settings, recorded apart from the
    experiment's own runs."""
    settings = {key: _suggest(trial, key, spec) for key, spec in space.items()}
    earlier = next((t for t in _finished(trial.study) if t.params == settings), None)
    if earlier is not None:  # tried already: answered from the study, not counted
        trial.set_user_attr("repeat_of", earlier.number)
        if earlier.value is None:
            raise ConfigError("tune", f"these settings failed in trial {earlier.number}.")
        return float(earlier.value)
    trial_cfg = applied(cfg, _values(space, settings))
    with open_dict(trial_cfg):
        trial_cfg.tune.split, trial_cfg.tune.trials = TRIAL_SPLIT, 0
        trial_cfg.seed = trial_cfg.tune.seed  # every trial at one seed, whichever of the arm's jobs runs them
        trial_cfg.exp_name = f"{cfg.exp_name}_tuning"
    return objective_of(run_experiment_arm(trial_cfg))


def _suggest(trial: Any, key: str, spec: Any) -> Any:
    if isinstance(spec, list):
        return trial.suggest_categorical(key, spec)
    if _named(spec):  # the study holds the node's name
        return trial.suggest_categorical(key, list(spec))
    low, high, logarithmic = spec["low"], spec["high"], bool(spec.get("log", False))
    if isinstance(low, int) and isinstance(high, int):
        return trial.suggest_int(key, low, high, log=logarithmic)
    return trial.suggest_float(key, float(low), float(high), log=logarithmic)


def _values(space: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings to apply: a named node's node, any other setting's value."""
    return {key: space[key][value] if _named(space[key]) else value for key, value in settings.items()}


def _space(cfg: DictConfig, label: str) -> dict[str, Any]:
    """The arm's search space, each setting checked: a key the config has, choices, a range or named
    nodes (kept unresolved: `${seed}` in a node is the seed of the run it is applied to)."""
    node = cfg.tune.space.get(label)
    space = {str(k): v for k, v in as_dict(node, resolve=False).items()} if node is not None else {}
    for key, spec in space.items():
        where = f"tune.space.{label}.{key}"
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT and not is_optional_setting(key):
            raise ConfigError(where, f"`{key}` is not a setting of this arm's config.")
        choices = isinstance(spec, list) and spec
        ranged = _ranged(spec) and spec["low"] < spec["high"]
        if not (choices or ranged or _named(spec)):
            raise ConfigError(
                where,
                f"{spec!r} is not a search space.",
                "Use a list of choices, {low, high, log}, or named config nodes {name: {...}, ...}.",
            )
    return space


def _ranged(spec: Any) -> bool:
    return isinstance(spec, dict) and {"low", "high"} <= set(spec) and set(spec) <= {"low", "high", "log"}


def _named(spec: Any) -> bool:
    """Named config nodes: {name: {...}, ...}, one of which a trial applies."""
    return (
        isinstance(spec, dict) and bool(spec) and not _ranged(spec) and all(isinstance(v, dict) for v in spec.values())
    )


_ABSENT = object()


def _higher_is_better(cfg: DictConfig) -> bool:
    """Whether the task's primary metric is better higher (the metric registry knows)."""
    metric = METRICS.get(primary_metric(cfg.task))
    return metric.higher_is_better if metric else True
