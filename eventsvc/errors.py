"""The error tree of eventsvc. Foreign errors are translated at the boundary.

EventsvcError
 ├── ConfigError          bad settings or library configuration
 ├── ServerError          the embedded nats-server did not start or answer
 ├── LogError             JetStream failed
 │    ├── LogUnavailable  no server, or a server without JetStream
 │    └── PublishError    a publish was not acknowledged
 ├── DecodeError          bytes on a subject are not an event we know
 ├── DerivationError      a deriver could not derive
 │    ├── PermanentError  record a DerivationFailed and move on
 │    └── TransientError  retry with back-off, up to max_deliver
 └── ReadModelError       the SQLite read model is missing or unusable
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "DerivationError",
    "EventsvcError",
    "LogError",
    "LogUnavailable",
    "PermanentError",
    "PublishError",
    "ReadModelError",
    "ServerError",
    "TransientError",
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


class ReadModelError(EventsvcError):
    pass
