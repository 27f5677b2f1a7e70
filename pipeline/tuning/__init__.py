"""Hyperparameter studies: the search space, the exact budget, the workers and what a study found."""
