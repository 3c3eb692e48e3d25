"""Text from the run records shows as typed in both renderings of the report.

One toy experiment per kind of hostile text (a Markdown link, an image, raw HTML, a table pipe,
emphasis) carries that text in every place the report prints something recorded: data (example ids,
inputs, references, outputs, categories, breakdown names and values, leak pairs), config (values and
keys of the settings, task, generator, retriever, embedder and metric names, the category field, stage
and other test set names, the experiment's folder), run labels (also as the baseline), failure messages
and unreadable run folders. Each place has its own marker, so a test names the place that leaks.
report.md is rendered to HTML with markdown-it (CommonMark + tables + strikethrough) and must show each
marker, with no link, image, tag or emphasis made of it and no cell split by its pipe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragft.record.run import PREDICTIONS_FILE, RECORD_FILE
from ragft.report.escape import md_code, md_text
from ragft.report.render import CATEGORY_SETTING, build_report, write_report
from tests.fake_runs import write_experiment, write_failed_run, write_run

KINDS: dict[str, Callable[[str], str]] = {
    "link": lambda m: f"[{m}](http:evil)",
    "image": lambda m: f"![{m}](http:evil.png)",
    "html": lambda m: f"<img src=x title={m}><script>{m}",
    "pipe": lambda m: f"{m}-left|{m}-right",
    "emphasis": lambda m: f"**{m}** _{m}_ # {m}",
}
PLACES = [
    "experiment name",
    "task name",
    "generator name",
    "retriever name",
    "embedder name",
    "run label",
    "config key",
    "config value",
    "category field",
    "metric name",
    "example id",
    "input",
    "reference",
    "output",
    "category",
    "breakdown name",
    "breakdown value",
    "stage name",
    "other test set",
    "leakage check",
    "leak pair",
    "failure message",
    "unreadable folder",
    "unreadable reason",
]


def marker(place: str, kind: str) -> str:
    """A token unique to the place and kind (no one is a part of another)."""
    return f"Q{PLACES.index(place):02d}{kind[:3]}Z"


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def edit_predictions(run_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = run_dir / PREDICTIONS_FILE
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        change(row)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def task_score(task: str, metric: str) -> dict[str, Any]:
    summary = {"mean": 0.5, "ci_low": 0.25, "ci_high": 0.75, "n": 4}
    return {"task": task, "metric": metric, "summary": summary, "per_example": {"e1": 0.5}}


def hostile_experiment(root: Path, kind: str) -> tuple[Path, dict[str, str]]:
    """Every place holding `kind`'s hostile text with its own marker; the report's baseline is the run
    whose label is hostile."""
    text = {place: KINDS[kind](marker(place, kind)) for place in PLACES}
    exp = root / text["experiment name"]
    scores = [float(i % 3 == 0) for i in range(12)]
    shared = {CATEGORY_SETTING: text["category field"], "task.prompt": "plain"}
    first = write_run(
        exp,
        "zero_shot",
        scores,
        output=text["output"],
        task=text["task name"],
        settings={**shared, "task.prompt": text["config value"], text["config key"]: 1},
    )
    label = write_run(
        exp, text["run label"], [1.0] * 12, task=text["task name"], settings={**shared, text["config key"]: 2}
    )
    rag = write_run(exp, "rag", scores, task=text["task name"], settings=shared)
    write_failed_run(exp, "lora", message=text["failure message"])
    unreadable = exp / text["unreadable folder"]
    unreadable.mkdir()
    (unreadable / RECORD_FILE).write_text(json.dumps({"schema_version": text["unreadable reason"]}), encoding="utf-8")

    def finished(record: dict[str, Any]) -> None:
        record["identity"]["primary_metric"] = text["metric name"]
        record["scores"] = {text["metric name"]: record["scores"]["exact_match"]}

    def first_record(record: dict[str, Any]) -> None:
        record["identity"]["generator"] = text["generator name"]
        record["stages"] = [
            {"stage": None, "train_s": 0.0, "scores": {}},
            {"stage": text["stage name"], "train_s": 1.0, "scores": {text["stage name"]: task_score("t", "m")}},
        ]
        record["other_tests"] = {text["other test set"]: task_score(text["other test set"], "m")}
        check = record["leakage"].pop("train_test")
        check["examples"][0]["test"] = text["leak pair"]
        record["leakage"][text["leakage check"]] = check

    def retrieving(record: dict[str, Any]) -> None:
        record["identity"]["retriever"] = text["retriever name"]
        record["identity"]["embedder"] = text["embedder name"]

    def prediction(row: dict[str, Any]) -> None:
        row["scores"] = {text["metric name"]: row["scores"]["exact_match"]}
        row["category"] = text["category"] if row["category"] == "odd" else "even"
        knowledge = row["breakdowns"]["knowledge"]
        row["breakdowns"] = {text["breakdown name"]: text["breakdown value"] if knowledge == "seen" else "unseen"}
        if row["id"] == "e0":
            row.update(id=text["example id"], input=text["input"], reference=text["reference"])

    for run_dir in (first, label, rag):
        edit_json(run_dir / RECORD_FILE, finished)
        edit_predictions(run_dir, prediction)
    edit_json(first / RECORD_FILE, first_record)
    edit_json(rag / RECORD_FILE, retrieving)
    return exp, text


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, str]]:
    """kind -> the report of its hostile experiment: raw Markdown, Markdown rendered to HTML, and HTML."""
    built: dict[str, dict[str, str]] = {}

    def get(kind: str) -> dict[str, str]:
        if kind not in built:
            exp, text = hostile_experiment(tmp_path_factory.mktemp(kind), kind)
            md_path, html_path = write_report(exp, baseline=text["run label"])[:2]
            markdown = md_path.read_text(encoding="utf-8")
            built[kind] = {"md": markdown, "md_html": render_markdown(markdown), "html": html_path.read_text()}
        return built[kind]

    return get


def render_markdown(markdown: str) -> str:
    """report.md as a Markdown viewer shows it: CommonMark with raw HTML, GFM tables and strikethrough."""
    import markdown_it  # a dev dependency (pyproject.toml)

    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def made_of(kind: str, m: str, page: str) -> list[str]:
    """The markup `kind`'s hostile text with marker `m` became in rendered HTML (none when shown as typed)."""
    patterns = {
        "link": [rf"<a\b[^>]*>{m}</a>"],
        "image": [rf"<img\b[^>]*alt=\"{m}\""],
        "html": [rf"<img src=\"?x\"?\s+title=\"?{m}", rf"<script>{m}"],
        "pipe": [],
        "emphasis": [rf"<(strong|em|h\d)>{m}"],
    }
    found = [match.group(0) for pattern in patterns[kind] for match in re.finditer(pattern, page)]
    if kind == "pipe" and f"{m}-left|{m}-right" not in page:
        found.append(f"{m}-left|{m}-right split")
    return found


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("place", PLACES)
def test_markdown_report_shows_recorded_text_as_typed(reports, place, kind):
    page = reports(kind)["md_html"]
    m = marker(place, kind)
    assert m in page, f"{place} is not in report.md"
    assert made_of(kind, m, page) == []


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("place", PLACES)
def test_html_report_shows_recorded_text_as_typed(reports, place, kind):
    page = reports(kind)["html"]
    m = marker(place, kind)
    assert m in page, f"{place} is not in report.html"
    assert made_of(kind, m, page) == []
    assert "<script" not in page and "<img src=x" not in page and 'href="http:evil' not in page


@pytest.mark.parametrize("kind", list(KINDS))
def test_markdown_tables_keep_their_columns(reports, kind):
    """Every row of every table in report.md has as many cells as its header (a pipe splits none)."""
    rows = [line for line in reports(kind)["md"].splitlines() if line.startswith("|")]
    cells = [len(re.split(r"(?<!\\)\|", line)) for line in rows]
    header_at = [i for i, line in enumerate(rows) if i + 1 < len(rows) and rows[i + 1].startswith("|---")]
    assert header_at
    for start in header_at:
        end = next((i for i in header_at if i > start), len(rows))
        body = [c for i, c in enumerate(cells[start:end]) if i != 1]
        assert set(body) == {cells[start]}, rows[start]


def test_ragfts_own_numbers_and_names_read_as_before(tmp_path):
    """A normal report's labels and figures are written into report.md unchanged."""
    exp = write_experiment(tmp_path)
    report = build_report([exp])
    markdown = write_report(exp)[0].read_text(encoding="utf-8")
    for name in ("leaderboard", "versus", "cost", "retrieval"):
        table = report.tables[name]
        for label, row in table.iterrows():
            line = "| " + " | ".join(str(v) for v in [label, *row.tolist()]) + " |"
            assert line in markdown, f"{name}: {line}"
    assert "`exact_match`" in markdown and "(`zero_shot`)" in markdown


@pytest.mark.parametrize(
    "text",
    ["0.250 [0.100, 0.400] ▲", "+0.650* [+0.1, +0.2] p=0.001 (Holm 0.003)", "lora_rag", "task.data.fields.category"],
)
def test_plain_text_is_left_alone(text):
    assert md_text(text) == text


@pytest.mark.parametrize("text", ["a`b", "``", "`start", "end`", " padded ", "[x](http:evil) <b>|</b>", "two\nlines"])
def test_a_name_in_a_code_span_shows_exactly(text):
    page = render_markdown(f"name {md_code(text)} here")
    expected = text.replace("\n", " ").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert f"<code>{expected}</code>" in page.replace("&quot;", '"')
