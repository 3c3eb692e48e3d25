"""ragft: compare prompting, fine-tuning, retrieval and their combinations on one task."""

__version__ = "0.1.0"
