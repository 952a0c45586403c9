"""Composed tasks: the batch half of pipelines as code (DSL, graph, executions)."""
