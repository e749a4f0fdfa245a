"""Placeholder: being written (modern cells)."""
