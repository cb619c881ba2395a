"""The read side over HTTP: a Litestar app answering from the SQLite read model."""

from projections.api.app import create_app

__all__ = ["create_app"]
