"""Runs logged to a tracking service besides their records: `tracking=mlflow` (ragft/tracking/mlflow.py).

A Hydra callback, registered by the tracking preset (conf/tracking/), reads the job's run record after
the report callback has run; nothing in ragft imports this package, and ragft runs without its library.
"""
