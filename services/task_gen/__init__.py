"""Task generator: self-questioning (environment registry, task synthesis, verified pool)."""
