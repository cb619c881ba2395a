"""Where a library's files are, for derivers and the API: from configuration only.

The log may name a library and its root (``LibraryOnline``/``LibraryStale``), but a root is
never taken from it: anyone able to publish could otherwise point a worker at ``/``. An
event naming a library that is not configured on this host fails with
:class:`~eventsvc.core.errors.LibraryNotConfigured` (transient: retried, then recorded as a
``DerivationFailed`` with that reason); a library the log knows but this host does not is
logged once and counted in :attr:`LibraryRoots.unconfigured`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from eventsvc.core.errors import LibraryNotConfigured, PermanentError, TransientError
from eventsvc.core.events import HashComputed
from eventsvc.core.health import load_health
from eventsvc.core.log import EventLog
from eventsvc.core.safe_open import open_in_root
from eventsvc.core.settings import Library

__all__ = ["LibraryRoots", "Location"]

log = logging.getLogger(__name__)


class Location(Protocol):
    """What names a file: FileSeen and HashComputed both do."""

    library_id: str
    file_id: str

    def path_bytes(self) -> bytes | None: ...


class LibraryRoots:
    """Library id -> configured root, and the one way derivers open library files."""

    def __init__(
        self, configured: list[Library] | tuple[Library, ...] | None = None, *,
        follow_symlinks: bool = True,
    ) -> None:  # fmt: skip
        self.configured: tuple[Library, ...] = tuple(configured or ())
        """The libraries given in configuration (with their enabled flags)."""
        self.follow_symlinks = follow_symlinks
        self._roots: dict[str, Path] = {lib.id: lib.root for lib in self.configured}
        self.unconfigured: dict[str, int] = {}
        """Library id -> events (log announcements and file events) naming it that were
        ignored because it is not configured here."""

    def __call__(self, library_id: str) -> Path | None:
        return self._roots.get(library_id)

    def root(self, library_id: str) -> Path:
        """The configured root, else LibraryNotConfigured (reported once per library)."""
        root = self._roots.get(library_id)
        if root is None:
            self._note(library_id, None)
            raise LibraryNotConfigured(library_id)
        return root

    def _note(self, library_id: str, logged_root: str | None) -> None:
        first = library_id not in self.unconfigured
        self.unconfigured[library_id] = self.unconfigured.get(library_id, 0) + 1
        if first:
            where = f" (the log says its root is {logged_root!r}; ignored)" if logged_root else ""
            log.warning(
                "library %s is not configured on this host%s: its files are not read here; "
                "configure it (--config / EVENTSVC_LIBRARIES_FILE) where it should be",
                library_id, where,
            )  # fmt: skip

    async def refresh(self, event_log: EventLog) -> None:
        """Look at the libraries the log announces: those not configured here are
        reported (never used). Roots always come from configuration."""
        for library_id, health in (await load_health(event_log)).items():
            if library_id not in self._roots and library_id not in self.unconfigured:
                self._note(library_id, health.root)

    def open_fd(self, event: Location) -> int:
        """A read-only descriptor of the file an event names, opened under its configured
        root (see :mod:`eventsvc.core.safe_open`); the caller closes it."""
        root = self.root(event.library_id)
        try:
            rel = event.path_bytes()
        except ValueError as exc:  # a raw_path that is not base64
            raise PermanentError(f"{event.file_id}: unusable path in the event: {exc}") from exc
        if rel is None:
            raise TransientError(f"no location known for {event.file_id}")
        return open_in_root(
            root, rel, library_id=event.library_id, follow_symlinks=self.follow_symlinks
        )

    def open_hashed(self, event: HashComputed, stage: str) -> int:
        """:meth:`open_fd` of the location a HashComputed names, still holding the bytes that
        were hashed (size and mtime, from fstat of the descriptor); the caller closes it.
        A vanished or changed file is a PermanentError (a newer event covers it)."""
        label = f"{event.library_id}:{event.path or '?'}"
        try:
            fd = self.open_fd(event)
        except FileNotFoundError as exc:
            raise PermanentError(f"location vanished before {stage}: {label}") from exc
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN):
                raise TransientError(f"I/O error opening {label}: {exc.strerror}") from exc
            raise PermanentError(f"cannot open {label}: {exc.strerror or exc}") from exc
        try:
            st = os.fstat(fd)
            if (st.st_size, st.st_mtime_ns) != (event.size, event.mtime_ns):
                # Not the bytes that were hashed: a newer HashComputed will come for them.
                raise PermanentError(f"changed since it was hashed: {label}")
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def open(self, event: Location) -> Iterator[int]:
        """:meth:`open_fd` as a context manager that closes the descriptor."""
        fd = self.open_fd(event)
        try:
            yield fd
        finally:
            os.close(fd)
