"""The read side: everything that reads events (projector, read model, API)."""
