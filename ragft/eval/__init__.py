"""Evaluation: the metric registry, text and retrieval metrics, metrics that run a model, statistics,
and scoring a generator on a task's test set. Importing the package registers every built-in metric."""

from ragft.eval import model, ranking, text  # noqa: F401  (each registers its metrics)
