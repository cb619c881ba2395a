"""Where a library's files are, for derivers: from configuration, else from the log."""

from __future__ import annotations

import os
from pathlib import Path

from eventsvc.errors import TransientError
from eventsvc.events import HashComputed, LibraryOnline, LibraryStale, decode
from eventsvc.log import EventLog
from eventsvc.settings import Library

__all__ = ["LibraryRoots"]


class LibraryRoots:
    """Library id -> root. Configured libraries win (a worker host may mount elsewhere);
    others are learnt from the last LibraryOnline/LibraryStale in the log."""

    def __init__(self, configured: list[Library] | None = None) -> None:
        self.configured: tuple[Library, ...] = tuple(configured or ())
        """The libraries given in configuration (with their enabled flags)."""
        self._roots: dict[str, Path] = {lib.id: lib.root for lib in configured or []}
        self._configured = set(self._roots)

    def __call__(self, library_id: str) -> Path | None:
        return self._roots.get(library_id)

    async def refresh(self, event_log: EventLog) -> None:
        p = event_log.prefix
        async for batch in event_log.read(
            [f"{p}.library.*.LibraryOnline", f"{p}.library.*.LibraryStale"], last_per_subject=True
        ):
            for raw in batch:
                ev = decode(raw.data, raw.headers)
                if (
                    isinstance(ev, (LibraryOnline, LibraryStale))
                    and ev.library_id not in self._configured
                ):
                    self._roots[ev.library_id] = Path(ev.root)

    async def locate(self, event: HashComputed, event_log: EventLog) -> str:
        """The file system path of the location a HashComputed names (bytes-safe).

        An unknown library is looked up in the log once more; still unknown, or a
        HashComputed without a path, is a TransientError (retried, then recorded)."""
        root = self(event.library_id)
        if root is None:
            await self.refresh(event_log)
            root = self(event.library_id)
        rel = event.path_bytes()
        if root is None or rel is None:
            raise TransientError(f"no location known for {event.file_id}")
        return os.fsdecode(os.path.join(os.fsencode(root), rel))
