"""Evolver: self-evolving agent training over NATS JetStream and gRPC services."""

__version__ = "0.1.0"
