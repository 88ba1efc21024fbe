"""Memory: self-navigating (experiences in Qdrant, retrieval)."""
