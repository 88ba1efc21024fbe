"""Self-navigating memory: experiences distilled from rollouts, stored in Qdrant."""
