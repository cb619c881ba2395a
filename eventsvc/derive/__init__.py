"""Derivers: durable consumers that turn events into derived events."""
