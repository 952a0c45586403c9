"""The implementations of the built-in stream apps (the catalogue says which is which)."""
