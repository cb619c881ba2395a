"""The error tree of eventsvc. Foreign errors are translated at the boundary.

EventsvcError
 ├── ConfigError          bad settings or library configuration
 ├── ServerError          the embedded nats-server did not start or answer
 ├── LogError             JetStream failed
 │    ├── LogUnavailable  no server, or a server without JetStream
 │    │    └── LogClosed  the connection was closed (or is draining): stop consuming
 │    └── PublishError    a publish was not acknowledged
 ├── DecodeError          bytes on a subject are not an event we know
 ├── DerivationError      a deriver could not derive
 │    ├── PermanentError  record a DerivationFailed and move on
 │    │    ├── UnsafePath  refused: outside its configured root, a symlink where
 │    │    │               none may be followed, a loop, not a regular file
 │    │    └── ChangedSinceHashed  the file at a location is no longer the bytes
 │    │                    that were hashed (size or mtime differ)
 │    └── TransientError  retry with back-off, up to max_deliver
 │         ├── OutOfSpace  the disk (or JetStream's storage) is full: the stage pauses
 │         │               and resumes by itself, never a DerivationFailed
 │         └── LibraryNotConfigured  an event names a library this host has no
 │                                   configured root for
 ├── InferenceError       an inference back-end (CLIP, faces) failed
 │    ├── ModelUnavailable  no model to load (offline, no local files): the stage
 │    │                     pauses and says why; nothing else stops
 │    ├── BackendUnavailable  the back-end did not answer (timeout, 5xx): transient
 │    └── BadInput          this one input cannot be encoded: permanent for it
 └── ReadModelError       the SQLite read model is missing or unusable
"""

from __future__ import annotations

import errno

__all__ = [
    "BackendUnavailable",
    "BadInput",
    "ChangedSinceHashed",
    "ConfigError",
    "DecodeError",
    "DerivationError",
    "EventsvcError",
    "InferenceError",
    "LibraryNotConfigured",
    "LogClosed",
    "LogError",
    "LogUnavailable",
    "ModelUnavailable",
    "OutOfSpace",
    "PermanentError",
    "PublishError",
    "ReadModelError",
    "ServerError",
    "TransientError",
    "UnsafePath",
    "out_of_space",
]


class EventsvcError(Exception):
    """Base of every error eventsvc raises on purpose."""


class ConfigError(EventsvcError):
    pass


class ServerError(EventsvcError):
    pass


class LogError(EventsvcError):
    pass


class LogUnavailable(LogError):
    pass


class LogClosed(LogUnavailable):
    pass


class PublishError(LogError):
    pass


class DecodeError(EventsvcError):
    pass


class DerivationError(EventsvcError):
    pass


class PermanentError(DerivationError):
    pass


class TransientError(DerivationError):
    pass


class OutOfSpace(TransientError):
    """No room left: ENOSPC/EDQUOT, SQLite's "database or disk is full", JetStream's
    "insufficient resources". Says nothing about the input: wait, never record."""


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_WORDS = (
    "no space left on device",
    "disk quota exceeded",
    "database or disk is full",
    "insufficient resources",
    "insufficient storage",
    "resource limits exceeded",
)


def out_of_space(exc: BaseException) -> str | None:
    """Why ``exc`` (or an error it was raised from) is a full disk or a full JetStream
    store; None when it is something else."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OutOfSpace):
            return str(cur)
        if isinstance(cur, OSError) and cur.errno in _FULL_ERRNOS:
            return f"{cur.strerror or 'no space left'} ({errno.errorcode.get(cur.errno or 0)})"
        text = str(cur).lower()
        if any(w in text for w in _FULL_WORDS):
            return str(cur)[:300]
        cur = cur.__cause__ or cur.__context__
    return None


class UnsafePath(PermanentError):
    """A file access refused by the trust boundary. The message names the library and the
    library-relative path, never where a symlink pointed."""

    def __init__(self, library_id: str, rel: str, why: str, kind: str) -> None:
        super().__init__(f"{library_id}:{rel}: {why}")
        self.library_id = library_id
        self.rel = rel
        self.why = why
        self.kind = kind
        """escape, loop, symlink (following disabled), not_regular, absolute"""


class ChangedSinceHashed(PermanentError):
    """A location no longer holds the bytes that were hashed (its size or mtime differ):
    a newer HashComputed covers it."""


class LibraryNotConfigured(TransientError):
    """An event names a library without a configured root on this host (its root in the
    log is never used)."""

    def __init__(self, library_id: str) -> None:
        super().__init__(f"library {library_id} is not configured on this host")
        self.library_id = library_id


class ReadModelError(EventsvcError):
    pass


class InferenceError(EventsvcError):
    pass


class ModelUnavailable(InferenceError):
    pass


class BackendUnavailable(InferenceError):
    pass


class BadInput(InferenceError):
    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index
