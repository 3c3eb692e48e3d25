"""Compare every metric column of two runs.csv tables, arm by arm (costs, leakage and identity left out):
python experiments/medical_reports/checks/compare_metrics.py NEW.csv [OLD.csv]"""

import sys

import numpy as np
import pandas as pd

old = pd.read_csv(sys.argv[2] if len(sys.argv) > 2 else "experiments/medical_reports/runs.csv").set_index("arm")
new = pd.read_csv(sys.argv[1]).set_index("arm")
IDENTITY = set(
    [
        "exp",
        "run_id",
        "task",
        "generator",
        "adaptation",
        "context",
        "retriever",
        "embedder",
        "seed",
        "status",
        "started",
        "finished",
        "wall_s",
        "git_sha",
        "python",
        "device",
        "key",
        "group_key",
        "primary_metric",
    ]
)
columns = [c for c in old.columns if not c.startswith(("cost_", "leak_", "also_")) and c not in IDENTITY]
differ = []
for arm in old.index:
    for column in columns:
        a = old.at[arm, column]
        b = new.at[arm, column] if column in new.columns else np.nan
        if not (pd.isna(a) and pd.isna(b)) and a != b:
            differ.append(column)
            print(f"differs: {arm} {column} {a!r} -> {b!r} ({b - a:+.1e})")
print(f"{len(old.index)} arms x {len(columns)} metric columns; {len(differ)} differ, in {sorted(set(differ))}")
