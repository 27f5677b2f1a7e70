"""MLflow: what a run records, and where the store is and how its failures surface."""
