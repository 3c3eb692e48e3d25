"""What ragft's Hydra commands share: offline mode, the `ragft_root` resolver, the command line checked
against ragft's config schema before Hydra composes, errors a user can act on printed as one line
instead of a traceback, and Ctrl-C as one line and exit status 130."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from ragft.errors import ConfigError, RagftError
from ragft.record.run import check_writable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
CONF = Path(__file__).resolve().parent.parent / "conf"
OmegaConf.register_new_resolver("ragft_root", lambda: str(Path(__file__).resolve().parent.parent), replace=True)
log = logging.getLogger("ragft")
T = TypeVar("T")
INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT (128 + 2)
TERMINATED = 143  # and by SIGTERM (128 + 15): a scheduler's time limit, `kill`
# bitsandbytes logs a warning on import when its optional CPU kernels (the `kernels` package) are not
# installed; 4-bit layers then use its portable code path. Said once in the README, not on every run.
QUIET_LOGGERS = ("bitsandbytes.backends.cpu.ops",)
for _name in QUIET_LOGGERS:
    logging.getLogger(_name).setLevel(logging.ERROR)


def command(main: Callable[[], Any], argv: Sequence[str] | None = None) -> None:
    """Run a Hydra command's `main`: the command line checked first, then `main` as `interruptible`."""

    def checked_main() -> None:
        check_command_line(argv)
        main()

    interruptible(checked_main)


class Terminated(KeyboardInterrupt):
    """SIGTERM, ended as Ctrl-C is: the run in its work records nothing."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def interruptible(main: Callable[[], T]) -> T:
    """`main()`, with Ctrl-C or SIGTERM (at any point, Hydra's own start-up included) ending the command
    with one line and exit status 130 (143 for SIGTERM). A run interrupted in its work records nothing;
    its work folder keeps its training checkpoints and answered batches, and the same command resumes."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return main()
    except KeyboardInterrupt as err:
        if in_main_thread:  # a second signal must not interrupt the cleanup
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _close_progress_bars()
        how = "terminated" if isinstance(err, Terminated) else "interrupted"
        print(f"ragft: {how}; the interrupted run was not recorded (the same command resumes it)", file=sys.stderr)
        sys.exit(TERMINATED if isinstance(err, Terminated) else INTERRUPTED)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _close_progress_bars() -> None:
    """End the lines of progress bars still open, so that the last line said is ragft's."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def run_job(job: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run one Hydra job; a RagftError stops a single run with exit status 2, and in a sweep fails only
    this job (Hydra runs the others, then reports the error)."""
    try:
        return job(cfg)
    except RagftError as err:
        log.error("%s", err)
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"ragft: error: {err}", file=sys.stderr)
        sys.exit(2)


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Exit with status 2 and one line naming the key when the command line cannot make a config: a key
    ragft's config does not have (`trainig.epochs=3`, `+training.epoch=3`), a group option that does not
    exist (`arm=lora_rga`), an `exp_name` that is not a folder name, or (for a single run) anything else
    Hydra cannot compose, such as a component setting that does not exist (`retriever.k=3`). Call it
    before the Hydra entry point: Hydra's own error for a misspelt key advises adding it with `+`."""
    from hydra._internal.utils import get_args_parser  # the parser @hydra.main itself uses

    from ragft.config.command_line import check_override_keys

    args, _ = get_args_parser().parse_known_args(sys.argv[1:] if argv is None else list(argv))
    own_conf = not (args.config_dir or args.config_path)  # else groups and configs come from elsewhere
    try:
        check_override_keys(args.overrides, CONF if own_conf else None)
        if own_conf and not (args.help or args.cfg):
            config_name = args.config_name or "config"
            sweeps = args.multirun or _sweeps_by_config(config_name, args.overrides)
            for job in _each_group_option_once(args.overrides) if sweeps else [args.overrides]:
                _check_composes(config_name, job)
    except ConfigError as err:
        print(f"ragft: error: {err}", file=sys.stderr)
        sys.exit(2)


def _each_group_option_once(overrides: Sequence[str]) -> list[list[str]]:
    """Command lines that together choose every option a command-line sweep lists for a config group
    (`arm=lora,rag`) at least once, other sweeps at their first listed value: a sweep of a setting
    (`seed=0,1,2`) changes no key, so one value is checked. Sweeps Hydra computes (glob, range,
    interval) are left to Hydra and each job's own check."""
    from hydra.errors import HydraException

    from ragft.config.command_line import is_group, parse, typed

    try:
        values = []
        for override in parse(overrides):
            if not override.is_sweep_override():
                values.append([override.input_line or ""])
            elif override.is_choice_sweep() and not _computed(override):
                listed = [f"{typed(override)}={v}" for v in override.sweep_string_iterator()]
                values.append(listed if is_group(override, CONF) else listed[:1])
    except HydraException:
        return []
    jobs = [[choices[0] for choices in values]]
    for position, choices in enumerate(values):
        jobs += [[*jobs[0][:position], choice, *jobs[0][position + 1 :]] for choice in choices[1:]]
    return jobs


def _sweeps_by_config(config_name: str, overrides: Sequence[str]) -> bool:
    """Whether a command line that lists values (`context.builder.k=1,3`) without `-m` is a sweep all the
    same, because a config it chooses sets `hydra.mode: MULTIRUN` (`+exp=data_efficiency`)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from ragft.config.command_line import parse

    try:
        listed = any(override.is_sweep_override() for override in parse(overrides))
        jobs = _each_group_option_once(overrides) if listed else []
        if not jobs:
            return False
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name, overrides=jobs[0], return_hydra_config=True)
    except HydraException:
        return False  # the check of the command line as it stands reports it
    return bool(cfg.hydra.mode == RunMode.MULTIRUN)


def _computed(override: Any) -> bool:
    from hydra.core.override_parser.types import Glob

    return isinstance(override.value(), Glob)


def _check_composes(config_name: str, overrides: Sequence[str]) -> None:
    """Compose the config as Hydra will, turning Hydra's error into ragft's one line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException, HydraException

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides))
    except (ConfigCompositionException, HydraException) as err:
        raise _composition_error(err) from None
    try:
        results = Path(str(cfg.paths.results))
    except Exception:  # noqa: BLE001 - an interpolation the job's own check reports with its key
        return
    check_writable(results, "paths.results")  # Hydra writes its log there before the job starts


def _composition_error(err: Exception) -> ConfigError:
    """Hydra's message, several lines long and advising `+` for a key that does not exist, as one line."""
    from ragft.config.command_line import is_optional_setting

    cause = err.__cause__ or err
    key = str(getattr(cause, "full_key", "") or "")
    if key and "not in struct" in str(cause) and is_optional_setting(key):
        return ConfigError(key, "is a setting this config leaves out.", f"Add it with `+{key}=...`.")
    if key and "not in struct" in str(cause):
        section = key.rsplit(".", 1)[0] if "." in key else "the config"
        return ConfigError(key, f"is not a setting of `{section}` (with or without `+`).")
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return ConfigError(key or "command line", "; ".join(lines[:2]) + ".")


def compose_config(overrides: Sequence[str], runnable: bool = False) -> DictConfig:
    """ragft's config with `overrides`, as `python -m ragft.run` composes it (keys checked first).
    `runnable` keeps Hydra's runtime choices (which file of each group was composed), which a run's
    identity is named from, so that `ragft.recipe.run_experiment_arm` can run it in this process."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from ragft.config.command_line import check_override_keys

    check_override_keys(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=runnable)
    except HydraException as err:
        raise ConfigError("command line", f"{err}".replace("\n", " ")) from None
    return keep_runtime_choices(cfg) if runnable else cfg


def keep_runtime_choices(cfg: DictConfig) -> DictConfig:
    """`cfg` (composed with Hydra's node) with only `hydra.runtime.choices` left of that node: the rest
    cannot resolve outside a job (its output folders)."""
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg["hydra"] = {"runtime": {"choices": choices}}
    return cfg
