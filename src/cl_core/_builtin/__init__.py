"""Core components (``core.*``), registered through the same hooks as plugins."""
