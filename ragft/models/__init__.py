"""Models: where they come from (packaged, local, tiny test models), loading them, and generating answers."""
