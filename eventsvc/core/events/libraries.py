"""Library configuration as events (issue 16): which roots are libraries, with which
name, excludes and enabled flag. Published by the API (``POST/PATCH/DELETE /libraries``)
and by the start-up reconcile of a TOML file / CLI roots; folded by every component
(:mod:`eventsvc.core.library_config`). Subjects are keyed by the library id, never a path.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from eventsvc.core.events.base import Event

__all__ = ["LibraryAdded", "LibraryRemoved", "LibraryUpdated"]


class _LibraryConfig(Event):
    aggregate: ClassVar[str] = "library"
    key_fields: ClassVar[tuple[str, ...]] = ("library_id",)
    msg_id_fields: ClassVar[tuple[str, ...]] = ("key", "occurred_at")
    library_id: str


class LibraryAdded(_LibraryConfig):
    """A root becomes a library (or a removed library comes back)."""

    type: Literal["LibraryAdded"] = "LibraryAdded"
    v: Literal[1] = 1
    name: str
    root: str
    """Absolute root directory; folders refuse a relative one, one inside (or around)
    another library, and the data dir."""
    excludes: tuple[str, ...] = ()
    """The library's own excludes (added to the global ones)."""
    enabled: bool = True


class LibraryUpdated(_LibraryConfig):
    """A change of name, excludes or enabled flag (None: unchanged)."""

    type: Literal["LibraryUpdated"] = "LibraryUpdated"
    v: Literal[1] = 1
    name: str | None = None
    excludes: tuple[str, ...] | None = None
    enabled: bool | None = None


class LibraryRemoved(_LibraryConfig):
    """The library is no longer one: its locations are hidden, it is not scanned."""

    type: Literal["LibraryRemoved"] = "LibraryRemoved"
    v: Literal[1] = 1
