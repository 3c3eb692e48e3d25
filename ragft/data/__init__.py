"""Task data: loading examples and corpora from JSONL, CSV, Parquet or a saved dataset, text normalisation, and leakage checks."""
