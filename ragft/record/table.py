"""The experiment table: one row per recorded run (finished or failed), as runs.csv and runs.parquet."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from filelock import FileLock

from ragft.record.run import read_records


def write_table(exp_dir: Path) -> pd.DataFrame:
    """Gather every run record of the experiment into runs.csv and runs.parquet, each replaced in one
    rename (a reader never sees half a table)."""
    with FileLock(str(exp_dir / ".table.lock")):
        table = pd.DataFrame([record.table_row() for record in read_records(exp_dir)])
        if not table.empty:
            table = table.sort_values(["arm", "run_id"]).reset_index(drop=True)
        for name, write in (("runs.csv", table.to_csv), ("runs.parquet", table.to_parquet)):
            tmp = exp_dir / f".{name}.tmp"
            write(tmp, index=False)
            os.replace(tmp, exp_dir / name)
    return table
