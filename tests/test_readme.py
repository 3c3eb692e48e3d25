"""The README's figures come from committed records: its headline table is exactly the one made from
experiments/medical_reports/runs.csv."""

import importlib.util
import re

from tests.conftest import ROOT

BEGIN, END = "<!-- headline: experiments/medical_reports/runs.csv -->", "<!-- /headline -->"


def test_the_readme_headline_table_equals_the_committed_runs_table():
    spec = importlib.util.spec_from_file_location("headline", ROOT / "experiments" / "medical_reports" / "headline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), readme, flags=re.S)
    assert match, f"the README has no table between {BEGIN} and {END}"
    assert match.group(1).strip() == module.headline().strip()
