"""Benchmarks: each compares Conveyor with the tool a user would otherwise pick, as ratios."""
