"""Score another system's outputs as ragft scores its own arms:

    python -m ragft.score task=medical_reports predictions=vendor_x.jsonl out=results/medical_reports/vendor_x

`predictions` holds one JSON object per line, `{"id": ..., "output": ...}`, for every example of the
task's test split (as the task is configured: `task.limits` apply) and for nothing else. The task's
own metrics (`task.metrics`) score them with the configured evaluation models, as in a run. A line may
also carry `passages`, the texts the system's prompt carried (a list of strings): `groundedness` then
scores it. The retrieval metrics (`recall_at_k`, `ranking`) judge one of ragft's retrievers and are not
scored for outputs from elsewhere.

`out` becomes a run folder: `metrics.json` (the scores' summaries, as a run's record holds them),
`record.json` (a finished run record: the arm is `name=`, by default the predictions file's name
without its extension; the experiment is the folder's parent) and `predictions.jsonl`. So an external
system put in `results/<experiment>/<name>` appears in `python -m ragft.report results/<experiment>`
beside ragft's arms, compared with them on the same test examples. Every other argument is a Hydra
override of ragft's config (`task=clinic_qa`, `task.limits.test=20`, `+debug=smoke`, `seed=1`: the
bootstrap's seed). The predictions file is UTF-8 (a leading byte-order mark is skipped); a malformed
one is an error naming its file and line (exit status 2).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

import ragft.cli  # noqa: F401  (offline mode and the `ragft_root` resolver, as for every ragft command)
from ragft.cli import compose_config, interruptible
from ragft.config.identity import flatten
from ragft.config.plain import as_dict
from ragft.data.files import read_jsonl
from ragft.data.loading import task_from_config
from ragft.errors import ConfigError, DataError, RagftError
from ragft.eval.model import EvaluationModels
from ragft.eval.registry import check_metrics, primary_metric, score_predictions
from ragft.record.cache import content_key, file_digest
from ragft.record.provenance import finished_at, started_now
from ragft.record.run import RECORD_FILE, RunIdentity, RunRecord, RunWriter, Scores
from ragft.types import Example, Prediction

log = logging.getLogger(__name__)
OPTIONS = ("predictions", "out", "name")  # the command's own arguments; the rest are config overrides
EXTERNAL = "external"  # what an external system's identity says of its generator, adaptation and context
METRICS_FILE = "metrics.json"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: score, write the run folder, print where; a RagftError is one line and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return 0
    try:
        options, overrides = split_arguments(args)
        run_dir = score_file(compose_config(overrides), **options)
    except RagftError as err:
        print(f"ragft: error: {err}", file=sys.stderr)
        return 2
    for name, summary in json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8")).items():
        if "/" in name:  # each field alone: in metrics.json, not on the screen
            continue
        print(f"{name}: {summary['mean']:.3f} [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}] (n={summary['n']})")
    print(f"wrote {run_dir}")
    return 0


def split_arguments(args: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """(the command's options, Hydra overrides): `predictions=` and `out=` are required, `name=` optional."""
    options: dict[str, Any] = {}
    overrides = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in OPTIONS:
            options[key] = value
        else:
            overrides.append(arg)
    for required in ("predictions", "out"):
        if not options.get(required):
            raise ConfigError(
                required,
                "must be set.",
                "Usage: python -m ragft.score task=<name> predictions=<file.jsonl> out=<results/experiment/name>.",
            )
    return {
        "predictions": Path(options["predictions"]),
        "out": Path(options["out"]),
        "name": options.get("name") or None,
    }, overrides


def score_file(cfg: DictConfig, predictions: Path, out: Path, name: str | None = None) -> Path:
    """Score the outputs in `predictions` against `cfg`'s task and write the run folder `out`; returns it.
    Everything is read and checked before the first metric runs."""
    from ragft.config.schema import validate
    from ragft.plugins import load_plugins

    load_plugins(cfg.get("plugins"))
    validate(cfg)
    out = out.resolve()
    _check_out(out)
    task = task_from_config(cfg.task)
    test = task.split("test")
    answers = read_outputs(predictions, test, task.name)
    evaluation = EvaluationModels(cfg.evaluation)
    check_metrics(cfg.task.metrics, test[0], evaluation, task)
    started = started_now()
    scores = score_predictions(answers, cfg.task.metrics, seed=cfg.seed, models=evaluation, task=task)
    identity = external_identity(cfg, predictions, out, name or predictions.stem)
    record = RunRecord(identity, "finished", provenance={}, scores=scores)
    writer = RunWriter(out)
    writer.write_text(METRICS_FILE, metrics_json(scores))
    writer.write_predictions(answers)
    record.provenance = {**finished_at(started), "source": EXTERNAL, "predictions": predictions.name}
    writer.commit(record)
    log.info("%s: scored %d outputs of %s into %s", identity.arm, len(answers), predictions, out)
    return out


def read_outputs(path: Path, test: Sequence[Example], task: str) -> list[Prediction]:
    """One prediction per test example, in the test split's order, from the predictions file; a line
    that is not an object with a known `id` and a string `output` (and, if any, a list of string
    `passages`), a repeated id, a test example without a line, or bytes that are not UTF-8 is a DataError
    naming the place (a leading UTF-8 byte-order mark is skipped)."""
    if not path.is_file():
        raise ConfigError("predictions", f"file '{path}' does not exist.", "Point it at a JSONL file of outputs.")
    examples = {e.id: e for e in test}
    found: dict[str, tuple[str, Prediction]] = {}
    for where, line in read_jsonl(path, encoding="utf-8", encoding_key=None):  # None: no setting; UTF-8 only
        example_id = _text(line, "id", path, where, allow_int=True)
        if example_id in found:
            raise DataError(path, f"duplicate id '{example_id}' (first at {found[example_id][0]})", where, "id")
        if example_id not in examples:
            sample = ", ".join(list(examples)[:3])
            problem = f"unknown id '{example_id}': not a test example of task '{task}' (its ids: {sample}, ...)"
            raise DataError(path, problem, where, "id")
        output = _text(line, "output", path, where)
        prediction = Prediction(examples[example_id], "", output, passages=_passages(line, path, where))
        found[example_id] = (where, prediction)
    missing = [i for i in examples if i not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            path, f"no output for {len(missing)} of the {len(examples)} test examples of task '{task}': {shown}"
        )
    return [found[i][1] for i in examples]


def _text(line: dict[str, Any], field: str, path: Path, where: str, allow_int: bool = False) -> str:
    if field not in line:
        raise DataError(path, f"missing (present: {', '.join(sorted(line)) or 'none'})", where, field)
    value = line[field]
    kinds = (str, int) if allow_int else (str,)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise DataError(path, f"expected a string, got {type(value).__name__}", where, field)
    return str(value)


def _passages(line: dict[str, Any], path: Path, where: str) -> tuple[str, ...]:
    passages = line.get("passages", [])
    if not isinstance(passages, list) or not all(isinstance(p, str) for p in passages):
        raise DataError(path, "expected a list of strings (the texts the system's prompt carried)", where, "passages")
    return tuple(passages)


def _check_out(out: Path) -> None:
    """`out` is new, empty or an earlier scoring's run folder (which is replaced), never another folder."""
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / RECORD_FILE).is_file()):
        raise ConfigError(
            "out", f"'{out}' exists and is not a run folder; it would be replaced.", "Choose a new folder."
        )


def external_identity(cfg: DictConfig, predictions: Path, out: Path, arm: str) -> RunIdentity:
    """The identity of a scored predictions file: labelled `arm`, in the experiment named by `out`'s
    parent, keyed by the file's content, the task (its data by content) and the evaluation settings."""
    task = as_dict(cfg.task)
    for section in ("data", "corpus"):
        if task.get(section) and Path(task[section]["path"]).is_file():
            task[section]["path"] = f"sha256:{file_digest(task[section]['path'])}"
    settings = {
        "predictions": f"sha256:{file_digest(predictions)}",
        "task": task,
        "evaluation": as_dict(cfg.evaluation),
    }
    group_key = content_key(settings)
    return RunIdentity(
        exp=out.parent.name,
        arm=arm,
        key=content_key(group_key, cfg.seed),
        group_key=group_key,
        task=cfg.task.name,
        primary_metric=primary_metric(cfg.task),
        generator=EXTERNAL,
        adaptation=EXTERNAL,
        context=EXTERNAL,
        retriever=None,
        seed=cfg.seed,
        settings=flatten({**settings, "seed": cfg.seed}),
    )


def metrics_json(scores: Scores) -> str:
    """The scores' summaries (mean, interval, n, direction, group) as `record.json` holds them."""
    return json.dumps({name: asdict(summary) for name, summary in scores.items()}, indent=2, allow_nan=True) + "\n"


if __name__ == "__main__":
    sys.exit(interruptible(main))
