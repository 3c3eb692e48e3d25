"""Context builders: the prompt template and what a prompt carries besides the input (nothing, demonstrations, retrieved passages)."""
