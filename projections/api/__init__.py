"""The read side's JSON API: a Litestar app answering from the SQLite read model.

:func:`projections.app.create_app` is the whole HTTP app (this API and the web pages)."""

from projections.api.app import create_api

__all__ = ["create_api"]
