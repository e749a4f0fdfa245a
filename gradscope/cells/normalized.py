"""Placeholder: filled in by the cell work in progress."""
