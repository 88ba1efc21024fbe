"""Policy training: per-token advantages for attributed groups (pure) and the LoRA GRPO update."""
