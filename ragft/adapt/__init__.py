"""Adaptation of the generator: supervised fine-tuning with any peft method, cached by content."""
