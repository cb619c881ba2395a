"""The base of every event: subjects, keys and message ids from class-level declarations.

An event class declares, instead of code:

- ``aggregate``: the second subject token (``file``, ``content``, ``library``, ``person``,
  ``face``, ``pair``, ``stage``);
- ``key_fields``: the fields whose values, joined with ``-``, make the aggregate key (the
  third token; never a path);
- ``key_choice`` (instead of ``key_fields``, for an event about whichever aggregate it
  has): ``(field, aggregate)`` pairs, the first field with a value gives key and aggregate;
- ``variant_field``: a field whose value (a model version) becomes a fifth token;
- ``msg_id_fields``: the parts of the deterministic ``Nats-Msg-Id`` after the type,
  joined with ``:`` (``key`` is the aggregate key, a datetime is written in ISO form),
  followed by ``:v<N>`` for a fact of a deriver version above 1.

:func:`Event.subject` and :func:`Event.default_msg_id` are the one implementation.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "HDR_CAUSATION",
    "HDR_TYPE",
    "HDR_VERSION",
    "Event",
    "now",
    "subject_token",
]

HDR_TYPE = "Eventsvc-Type"
HDR_VERSION = "Eventsvc-Version"
HDR_CAUSATION = "Eventsvc-Causation"


def now() -> datetime:
    return datetime.now(UTC)


_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_-]")


def subject_token(text: str) -> str:
    """``text`` made safe as one subject token (no dots, wildcards or spaces)."""
    return _TOKEN_BAD.sub("_", text)[:128] or "_"


def _part(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


class Event(BaseModel):
    """Base of every event. Subclasses set ``type`` and ``v`` as literals and declare
    their subject and message id (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aggregate: ClassVar[str] = "file"
    key_fields: ClassVar[tuple[str, ...]] = ()
    key_choice: ClassVar[tuple[tuple[str, str], ...]] = ()
    variant_field: ClassVar[str | None] = None
    """A field whose value (a model version) becomes a fifth subject token."""
    msg_id_fields: ClassVar[tuple[str, ...]] = ("key", "causation")
    """Derived events dedupe on their cause (and, for a versioned fact, on the deriver's
    version: a re-derivation is a new fact)."""
    once: ClassVar[bool] = False
    """Derived once per subject: published with Nats-Expected-Last-Subject-Sequence 0."""
    occurred_at: datetime = Field(default_factory=now)
    causation: int | None = None
    """Stream sequence of the event this one was derived from (None for observations)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.key_fields and cls.key_choice:
            raise TypeError(f"{cls.__name__}: declare key_fields or key_choice, not both")

    @property
    def fact_version(self) -> int:
        """The version of the deriver that made this once-only fact (1 for events that
        carry none: every event written before deriver versions existed)."""
        return int(self.__dict__.get("deriver_version", 1))  # getattr of a missing one is slow

    def _chosen(self) -> tuple[str, str]:
        """(aggregate, key) of a ``key_choice`` event: the first field with a value."""
        for name, aggregate in self.key_choice:
            value = getattr(self, name)
            if value:
                return aggregate, str(value)
        raise ValueError(f"{type(self).__name__} has none of its key fields")

    @property
    def aggregate_name(self) -> str:
        """The aggregate (second subject token) of this event."""
        return self._chosen()[0] if self.key_choice else self.aggregate

    @property
    def key(self) -> str:
        """The aggregate key that goes into the subject (never a path)."""
        if self.key_choice:
            return self._chosen()[1]
        if not self.key_fields:
            raise NotImplementedError(f"{type(self).__name__} declares no key_fields")
        return "-".join(str(getattr(self, name)) for name in self.key_fields)

    def subject(self, prefix: str = "photos") -> str:
        base = f"{prefix}.{self.aggregate_name}.{self.key}.{self.type}"  # type: ignore[attr-defined]
        if self.variant_field is None:
            return base
        return f"{base}.{subject_token(str(getattr(self, self.variant_field)))}"

    def default_msg_id(self) -> str:
        """Deterministic ``Nats-Msg-Id`` from ``msg_id_fields``."""
        parts = [self.type, *(_part(getattr(self, n)) for n in self.msg_id_fields)]  # type: ignore[attr-defined]
        return ":".join(parts) + self._version_suffix()

    def _version_suffix(self) -> str:
        version = self.fact_version
        return f":v{version}" if version > 1 else ""

    @classmethod
    def subject_pattern(cls, prefix: str = "photos") -> str:
        """The subject with placeholders, e.g. ``photos.content.<content_hash>.HashComputed``
        (the catalog in :mod:`eventsvc.core.events` lists one per type)."""
        etype = cls.model_fields["type"].default
        if cls.key_choice:
            return " | ".join(f"{prefix}.{a}.<{f}>.{etype}" for f, a in cls.key_choice)
        key = "-".join(f"<{f}>" for f in cls.key_fields)
        tail = f".<{cls.variant_field}>" if cls.variant_field else ""
        return f"{prefix}.{cls.aggregate}.{key}.{etype}{tail}"
