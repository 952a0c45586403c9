"""PMML evaluation: Conveyor's NumPy evaluator against the JVM bridges (pypmml, jpmml_evaluator)."""
