import pandas as pd

from ragft.report.render import cell, markdown_table


def test_model_text_cannot_break_the_table_or_inject_html():
    text = "a | b\n<script>alert(1)</script>"
    assert cell(text) == "a \\| b<br>&lt;script&gt;alert(1)&lt;/script&gt;"


def test_markdown_table_has_a_header_a_rule_and_one_line_per_row():
    frame = pd.DataFrame({"score": ["0.5", "0.7"]}, index=["zero_shot", "rag"])
    assert markdown_table(frame, "run").splitlines() == [
        "| run | score |",
        "|---|---|",
        "| zero_shot | 0.5 |",
        "| rag | 0.7 |",
    ]
    assert markdown_table(pd.DataFrame()) == "_(none)_"
