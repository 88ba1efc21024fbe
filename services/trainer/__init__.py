"""Trainer: the training run (batching, advantages, policy updates, evaluation)."""
