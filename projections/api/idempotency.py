"""Client-supplied request ids for the decision endpoints (issue 13, item 10).

Every POST/PATCH/DELETE that records a user's decision (PersonNamed, PersonHidden,
PeopleMerged, FaceReassigned, FaceRejected, NotDuplicate) accepts an optional
``Idempotency-Key`` header. The events it publishes then carry the
``Nats-Msg-Id`` ``<type>:<key>:req:<Idempotency-Key>:<digest of the decision>``, and the
log appends them only if no message on their subject carries that id yet, at any delay
(not only within NATS's duplicate window): a retried request answers ``duplicate: true``
with the sequences of the first one and records nothing. The same key on a different
decision (e.g. an undo) is another request. Without the header every request is new.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from litestar.params import HeaderParameter

from eventsvc.core.events import Event

__all__ = ["IDEMPOTENCY_PATTERN", "IdempotencyKey", "decision_msg_id", "keyed_person_id"]

IDEMPOTENCY_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""Letters, digits and ``._:-``, 1 to 128 characters (a UUID fits)."""

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
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
    """The ``Nats-Msg-Id`` of a decision made under ``key`` (None: the event's own):
    its type, subject key, the request id and a digest of what it decides, so a retry
    of the same request matches and another request under the same key does not."""
    if key is None:
        return None
    what = event.model_dump_json(exclude={"occurred_at", "causation"})
    digest = hashlib.blake2b(what.encode(), digest_size=6).hexdigest()
    return f"{event.type}:{event.key}:req:{key}:{digest}"  # type: ignore[attr-defined]


def keyed_person_id(face_id: str, key: str) -> str:
    """The new person of a split made under ``key``: the same on a retry."""
    digest = hashlib.blake2b(f"{face_id}\0{key}".encode(), digest_size=8).hexdigest()
    return f"p-{digest}"
