"""Model serving benchmark: conveyor serve against MLflow, BentoML and a bare floor."""
