"""Where a library's files are, for derivers and the API: from configuration only.

The log may name a library and its root (``LibraryOnline``/``LibraryStale``), but a root is
never taken from it (only from configuration: a file, CLI roots, or the library
configuration events of :mod:`eventsvc.core.library_config`, whose roots pass the same
checks): anyone able to publish could otherwise point a worker at ``/``. An
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

from eventsvc.core.errors import (
    ChangedSinceHashed,
    LibraryNotConfigured,
    PermanentError,
    TransientError,
)
from eventsvc.core.events import HashComputed
from eventsvc.core.health import load_health
from eventsvc.core.library_config import LibraryCatalog
from eventsvc.core.log import EventLog
from eventsvc.core.safe_open import open_in_root
from eventsvc.core.settings import Library

__all__ = ["LibraryRoots", "Location", "open_unchanged"]

log = logging.getLogger(__name__)


class Location(Protocol):
    """What names a file: FileSeen and HashComputed both do."""

    library_id: str
    file_id: str

    def path_bytes(self) -> bytes | None: ...


def open_unchanged(
    root: Path, rel: bytes, *, library_id: str, size: int, mtime_ns: int,
    follow_symlinks: bool = True,
) -> int:  # fmt: skip
    """The one "file unchanged since hashed" check: a read-only descriptor of ``rel`` opened
    under ``root`` (:func:`~eventsvc.core.safe_open.open_in_root`), still of the ``size``
    and ``mtime_ns`` that were hashed (fstat of that very descriptor), else
    :class:`ChangedSinceHashed`. OSError and UnsafePath pass through; the caller closes
    the descriptor."""
    fd = open_in_root(root, rel, library_id=library_id, follow_symlinks=follow_symlinks)
    try:
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            raise ChangedSinceHashed(f"{library_id}: changed since it was hashed")
    except BaseException:
        os.close(fd)
        raise
    return fd


class LibraryRoots:
    """Library id -> configured root, and the one way derivers open library files."""

    def __init__(
        self, configured: list[Library] | tuple[Library, ...] | None = None, *,
        follow_symlinks: bool = True, catalog: LibraryCatalog | None = None,
    ) -> None:  # fmt: skip
        self.catalog = catalog
        """The library configuration fold (issue 16), kept current by whoever follows it
        (``up``'s scanner): a library it adds is read at once, one it removes no more."""
        self.configured: tuple[Library, ...] = tuple(configured or ())
        """The libraries given in configuration (with their enabled flags)."""
        self.follow_symlinks = follow_symlinks
        self._roots: dict[str, Path] = {lib.id: lib.root for lib in self.configured}
        self.unconfigured: dict[str, int] = {}
        """Library id -> events (log announcements and file events) naming it that were
        ignored because it is not configured here."""

    def _lookup(self, library_id: str) -> Path | None:
        if self.catalog is not None:
            if library_id in self.catalog.removed:
                return None
            conf = self.catalog.libraries.get(library_id)
            if conf is not None:
                return Path(conf.root)
        return self._roots.get(library_id)

    def __call__(self, library_id: str) -> Path | None:
        return self._lookup(library_id)

    def root(self, library_id: str) -> Path:
        """The configured root, else LibraryNotConfigured (reported once per library)."""
        root = self._lookup(library_id)
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
            if self._lookup(library_id) is None and library_id not in self.unconfigured:
                self._note(library_id, health.root)

    def _rel(self, event: Location) -> bytes:
        try:
            rel = event.path_bytes()
        except ValueError as exc:  # a raw_path that is not base64
            raise PermanentError(f"{event.file_id}: unusable path in the event: {exc}") from exc
        if rel is None:
            raise TransientError(f"no location known for {event.file_id}")
        return rel

    def open_fd(self, event: Location) -> int:
        """A read-only descriptor of the file an event names, opened under its configured
        root (see :mod:`eventsvc.core.safe_open`); the caller closes it."""
        root = self.root(event.library_id)
        return open_in_root(
            root, self._rel(event), library_id=event.library_id,
            follow_symlinks=self.follow_symlinks,
        )  # fmt: skip

    def open_unchanged(self, library_id: str, rel: bytes, size: int, mtime_ns: int) -> int:
        """:func:`open_unchanged` under the library's configured root
        (LibraryNotConfigured when it has none here); the caller closes it."""
        return open_unchanged(
            self.root(library_id), rel, library_id=library_id, size=size, mtime_ns=mtime_ns,
            follow_symlinks=self.follow_symlinks,
        )  # fmt: skip

    def open_hashed(self, event: HashComputed, stage: str) -> int:
        """The location a HashComputed names, opened under its configured root and still
        holding the bytes that were hashed (:meth:`open_unchanged`); the caller closes it.
        A vanished or changed file is a PermanentError (a newer event covers it)."""
        label = f"{event.library_id}:{event.path or '?'}"
        self.root(event.library_id)  # LibraryNotConfigured first, as ever
        rel = self._rel(event)
        try:
            return self.open_unchanged(event.library_id, rel, event.size, event.mtime_ns)
        except ChangedSinceHashed:
            # Not the bytes that were hashed: a newer HashComputed will come for them.
            raise ChangedSinceHashed(f"changed since it was hashed: {label}") from None
        except FileNotFoundError as exc:
            raise PermanentError(f"location vanished before {stage}: {label}") from exc
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN):
                raise TransientError(f"I/O error opening {label}: {exc.strerror}") from exc
            raise PermanentError(f"cannot open {label}: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def open(self, event: Location) -> Iterator[int]:
        """:meth:`open_fd` as a context manager that closes the descriptor."""
        fd = self.open_fd(event)
        try:
            yield fd
        finally:
            os.close(fd)
