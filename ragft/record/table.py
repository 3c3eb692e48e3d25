"""The experiment table: one row per recorded run (finished or failed), as runs.csv and runs.parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from filelock import FileLock

from ragft.record.run import read_records, replace_files, run_dirs


def write_table(exp_dir: Path) -> pd.DataFrame:
    """Gather every readable run record of the experiment into runs.csv and runs.parquet, each replaced
    in one rename (a reader never sees half a table). Without a run folder nothing is written; where
    no record can be read any more, an earlier table is removed rather than left listing them."""
    if not any(True for _ in run_dirs(exp_dir)):
        return pd.DataFrame()
    tables = ("runs.csv", "runs.parquet")
    with FileLock(str(exp_dir / ".table.lock")):
        table = pd.DataFrame([record.table_row() for record in read_records(exp_dir)])
        if table.empty:
            for name in tables:
                (exp_dir / name).unlink(missing_ok=True)
            return table
        table = table.sort_values(["arm", "run_id"]).reset_index(drop=True)
        replace_files(
            {
                exp_dir / "runs.csv": lambda tmp: table.to_csv(tmp, index=False),
                exp_dir / "runs.parquet": lambda tmp: table.to_parquet(tmp, index=False),
            }
        )
    return table
