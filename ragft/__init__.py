"""ragft: compare prompting, fine-tuning, retrieval and their combinations on one task."""

__version__ = "0.2.0"  # the package's one version: pyproject.toml reads it from here at build time
