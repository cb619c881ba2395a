"""Client-supplied request ids for the decision endpoints (issue 13, item 10).

Every POST/PATCH/DELETE that records a user's decision (PersonNamed, PersonHidden,
PeopleMerged, FaceReassigned, FaceRejected, NotDuplicate) accepts an optional
``Idempotency-Key`` header. The events it publishes then carry the
``Nats-Msg-Id`` ``<type>:<key>:req:<Idempotency-Key>``, and the log appends them only if
no message on their subject carries that id yet, at any delay (not only within NATS's
duplicate window): a retried request answers ``duplicate: true`` with the sequences of
the first one and records nothing. Without the header every request is a new decision.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from litestar.params import Parameter

from eventsvc.events import Event

__all__ = ["IDEMPOTENCY_PATTERN", "IdempotencyKey", "decision_msg_id", "keyed_person_id"]

IDEMPOTENCY_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""Letters, digits and ``._:-``, 1 to 128 characters (a UUID fits)."""

IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        required=False,
        pattern=IDEMPOTENCY_PATTERN,
        min_length=1,
        max_length=128,
        description="A client-chosen id of this request (e.g. a UUID): a retry with the "
        "same key records nothing new, however late it comes, and answers duplicate=true "
        "with the first request's sequences.",
    ),
]


def decision_msg_id(event: Event, key: str | None) -> str | None:
    """The ``Nats-Msg-Id`` of a decision made under ``key`` (None: the event's own)."""
    if key is None:
        return None
    return f"{event.type}:{event.key}:req:{key}"  # type: ignore[attr-defined]


def keyed_person_id(face_id: str, key: str) -> str:
    """The new person of a split made under ``key``: the same on a retry."""
    digest = hashlib.blake2b(f"{face_id}\0{key}".encode(), digest_size=8).hexdigest()
    return f"p-{digest}"
