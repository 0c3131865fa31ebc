"""Eligibility, featurisation, the bandit policy over Vowpal Wabbit, learning, health classes,
the simulator and the MLflow registry."""
