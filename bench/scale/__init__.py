"""Growth curves: listing runs and logging metric steps as a registry grows (issue 21)."""
