"""Explorer: runs agents against environments (exploration walks, rollouts)."""
