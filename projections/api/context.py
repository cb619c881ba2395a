"""What every request handler needs: settings, the event log (if any), extra status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar.datastructures import State

try:  # litestar >= 2.23: say explicitly that ``ctx`` is injected by name
    from litestar.di import NamedDependency
except ImportError:  # pragma: no cover - older litestar infers it
    NamedDependency = None  # type: ignore[assignment,misc]

from eventsvc.core.errors import LogUnavailable
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Settings

__all__ = ["ApiContext", "Ctx", "provide_context"]


@dataclass
class ApiContext:
    settings: Settings
    event_log: EventLog | None = None
    nats_error: str | None = None
    """Why there is no event log (not configured, not reachable yet, no JetStream)."""
    extra_status: Callable[[], dict[str, Any]] | None = None
    owns_log: bool = False
    """True when the app connected the log itself and so closes it on shutdown."""
    roots: LibraryRoots | None = None
    """The libraries configured on this host: the only roots originals are read from."""

    def require_log(self) -> EventLog:
        """The event log, connected; else LogUnavailable saying why (which the app's
        exception handler answers with 503: :mod:`projections.api.errors`)."""
        if self.event_log is None or not self.event_log.connected:
            raise LogUnavailable(self.nats_error or "NATS connection lost")
        return self.event_log


def provide_context(state: State) -> ApiContext:
    return state.ctx  # type: ignore[no-any-return]


Ctx = NamedDependency[ApiContext] if NamedDependency is not None else ApiContext
"""How handlers declare the ``ctx`` dependency."""
