"""Configuration: the schemas that check a composed config, and a run's identity (its key and label)."""
