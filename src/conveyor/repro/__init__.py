"""repro layer."""
