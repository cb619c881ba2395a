"""Tags and favourites: the user's own words about a content (issue 16).

A tag is a name on a content (many per content), normalised like a person's name
(:func:`tag_name`: surrounding white space dropped; a blank name is none) and compared
case-insensitively (:func:`tag_key`, as person names compare in the read model).
Person names bind as tags on their own (the read model derives them from faces); these
events carry only what a user said.
All four are decisions on the content's subject, keyed by the content hash (never a
path); their message id adds the tag and the moment, and the API passes one keyed by
the request where the client sent an ``Idempotency-Key``.
"""

from __future__ import annotations

import unicodedata
from typing import ClassVar, Literal

from pydantic import field_validator

from eventsvc.core.events.base import Event

__all__ = [
    "MAX_TAG_LENGTH",
    "Favorited",
    "TagAdded",
    "TagRemoved",
    "Unfavorited",
    "has_control",
    "tag_key",
    "tag_name",
]

MAX_TAG_LENGTH = 200
"""The longest tag, in characters (as a person's name)."""


def tag_name(name: str) -> str | None:
    """A tag as stored: normalised as a person's name is (``PATCH /people``): white space
    around it dropped; None for a blank name."""
    return name.strip() or None


def has_control(name: str) -> bool:
    """Whether ``name`` holds a control character: a tag is part of a message id (a NATS
    header), where a line break must never go."""
    return any(unicodedata.category(ch) == "Cc" for ch in name)


def tag_key(name: str) -> str:
    """What two tags are compared by: the normalised name, case-folded."""
    return (tag_name(name) or "").casefold()


class _ContentDecision(Event):
    aggregate: ClassVar[str] = "content"
    key_fields: ClassVar[tuple[str, ...]] = ("content_hash",)
    msg_id_fields: ClassVar[tuple[str, ...]] = ("key", "occurred_at")
    content_hash: str


class _TagDecision(_ContentDecision):
    msg_id_fields: ClassVar[tuple[str, ...]] = ("key", "tag", "occurred_at")
    tag: str

    @field_validator("tag")
    @classmethod
    def _normalised(cls, value: str) -> str:
        name = tag_name(value)
        if name is None:
            raise ValueError("a tag must not be blank")
        if len(name) > MAX_TAG_LENGTH:
            raise ValueError(f"a tag has at most {MAX_TAG_LENGTH} characters")
        if has_control(name):
            raise ValueError("a tag has no control characters (line breaks, tabs, ...)")
        return name


class TagAdded(_TagDecision):
    """A user tagged a content (a tag it already has, in any case, takes this spelling)."""

    type: Literal["TagAdded"] = "TagAdded"
    v: Literal[1] = 1


class TagRemoved(_TagDecision):
    """A user took a tag off a content (compared case-insensitively)."""

    type: Literal["TagRemoved"] = "TagRemoved"
    v: Literal[1] = 1


class Favorited(_ContentDecision):
    type: Literal["Favorited"] = "Favorited"
    v: Literal[1] = 1


class Unfavorited(_ContentDecision):
    type: Literal["Unfavorited"] = "Unfavorited"
    v: Literal[1] = 1
