"""A user's own metric, retriever and task, in a folder of their own outside ragft: the metric comes in
through `plugins`, the retriever and the task through `hydra.searchpath`, and a run uses all three."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragft.errors import ConfigError
from ragft.eval.registry import METRICS
from ragft.plugins import load_plugins
from ragft.recipe import run_experiment_arm
from ragft.record.run import read_predictions, read_record
from tests.conftest import compose_config

PLUGIN = '''\
"""My own metric and retriever."""

from ragft.eval.registry import register_metric
from ragft.record.cost import RetrievalCost


@register_metric("my_metric")
def my_metric(prediction):
    """1 where the model answered anything at all."""
    return {"my_metric": float(bool(prediction.output.strip()))}


class ReverseRetriever:
    """Ranks the corpus last passage first, whatever the query: easy to recognise in a run's predictions."""

    def __init__(self, name="reverse"):
        self.name = name
        self.passages = []

    def build(self, passages, train_examples=None):
        self.passages = list(reversed(passages))
        return RetrievalCost(corpus_passages=len(passages))

    def search(self, queries, k):
        return [self.passages[:k] for _ in queries]
'''

RETRIEVER_YAML = """\
# My retriever: the class is found on PYTHONPATH, this file through hydra.searchpath.
_target_: my_plugins.ReverseRetriever
name: my_retriever
label: mine
"""

TASK_YAML = """\
# The clinic's questions, also scored by my metric.
defaults:
  - clinic_qa
  - _self_
metrics:
  my_metric: {}
"""


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder of the user's own, importable (as on PYTHONPATH); its module is forgotten afterwards."""
    folder = tmp_path / "my_project"
    (folder / "conf" / "retriever").mkdir(parents=True)
    (folder / "conf" / "task").mkdir()
    (folder / "my_plugins.py").write_text(PLUGIN)
    (folder / "broken_plugin.py").write_text("import a_package_nobody_installed\n")
    (folder / "conf" / "retriever" / "my_retriever.yaml").write_text(RETRIEVER_YAML)
    (folder / "conf" / "task" / "my_clinic_qa.yaml").write_text(TASK_YAML)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in ("my_plugins", "broken_plugin"):
        sys.modules.pop(name, None)
    METRICS.pop("my_metric", None)


def test_the_default_config_loads_no_plugin():
    assert list(compose_config().plugins) == []
    assert load_plugins([]) == [] and load_plugins(None) == []


def test_a_plugin_registers_its_metric(user_folder):
    (module,) = load_plugins(["my_plugins"])
    assert module.__name__ == "my_plugins" and "my_metric" in METRICS
    load_plugins(["my_plugins"])  # a second load (the next job of a sweep) registers nothing twice


def test_a_plugin_that_cannot_be_found_names_its_entry(user_folder):
    with pytest.raises(ConfigError, match=r"plugins\[1\].*no module named 'not_my_plugins'.*PYTHONPATH"):
        load_plugins(["my_plugins", "not_my_plugins"])


def test_a_plugin_missing_a_dependency_says_which(user_folder):
    with pytest.raises(ModuleNotFoundError, match="a_package_nobody_installed"):
        load_plugins(["broken_plugin"])


def test_plugins_must_be_a_list():
    with pytest.raises(ConfigError, match="`plugins`: must be a list"):
        load_plugins("my_plugins")


def test_a_run_uses_the_users_metric_and_retriever(user_folder, tmp_path):
    cfg = compose_config(
        f"hydra.searchpath=[file://{user_folder / 'conf'}]",
        "+debug=smoke",
        "exp_name=test",
        "plugins=[my_plugins]",
        "task=my_clinic_qa",
        "context=rag",
        "retriever=my_retriever",
        results=tmp_path / "results",
    )
    run_dir = run_experiment_arm(cfg)  # the recipe loads `plugins` first

    record = read_record(run_dir)
    assert record.status == "finished"
    assert record.scores["my_metric"].n == 6
    corpus = [json.loads(line) for line in Path(cfg.task.corpus.path).read_text().splitlines() if line.strip()]
    assert record.cost.retrieval.corpus_passages == len(corpus)
    last_first = [passage[cfg.task.corpus.id_field] for passage in reversed(corpus)]
    for prediction in read_predictions(run_dir):  # every question ranked by ReverseRetriever
        assert prediction["ranking"] == last_first[: cfg.context.builder.depth]
