"""Response and request schemas of /duplicates (msgspec Structs, every field documented).

(No ``from __future__ import annotations`` here: the Annotated metadata is read at runtime.)
"""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from projections.api.schemas import HASH, NEXT, THUMBNAIL_URL, Location

__all__ = [
    "DuplicateGroup",
    "DuplicatePage",
    "NearDuplicateGroup",
    "NearDuplicateMember",
    "NearDuplicatePage",
    "NearPair",
    "NotDuplicateAccepted",
    "NotDuplicateRequest",
]


class DuplicateGroup(msgspec.Struct):
    """Locations sharing one content hash (at least two)."""

    content_hash: Annotated[str, Meta(description=HASH)]
    size: Annotated[int, Meta(description="Size of one copy in bytes.")]
    count: Annotated[int, Meta(description="Number of locations (>= 2).")]
    wasted_bytes: Annotated[int, Meta(description="size * (count - 1): bytes a dedupe frees.")]
    locations: Annotated[list[Location], Meta(description="The locations, by library then path.")]


class DuplicatePage(msgspec.Struct):
    """A page of duplicate groups, by wasted bytes descending then hash."""

    items: Annotated[list[DuplicateGroup], Meta(description="Duplicate groups.")]
    next: Annotated[str | None, Meta(description=NEXT)]


class NearDuplicateMember(msgspec.Struct):
    """One content of a near-duplicate group."""

    content_hash: Annotated[str, Meta(description=HASH)]
    phash: Annotated[str, Meta(description="64-bit perceptual hash (16 hex digits).")]
    size: Annotated[int, Meta(description="Size in bytes.")]
    media_kind: Annotated[Literal["image", "video"], Meta(description="'image' or 'video'.")]
    width: Annotated[int | None, Meta(description="Upright width in pixels; null if unknown.")]
    height: Annotated[int | None, Meta(description="Upright height in pixels; null if unknown.")]
    date_taken: Annotated[
        str | None,
        Meta(description="Earliest date_taken of its locations (counted ones); null if none."),
    ]
    thumbnail: Annotated[
        str | None,
        Meta(description=THUMBNAIL_URL + " 'small'; null until a thumbnail exists."),
    ]
    locations: Annotated[
        list[Location],
        Meta(description="Its live locations (only the library's with `library`), by path."),
    ]


class NearPair(msgspec.Struct):
    """Two members within the distance (an edge of the group)."""

    a: Annotated[str, Meta(description="Content hash of one member (a < b).")]
    b: Annotated[str, Meta(description="Content hash of the other member.")]
    distance: Annotated[int, Meta(description="Hamming distance of their pHashes (0-64).")]
    seconds_apart: Annotated[
        float | None,
        Meta(
            description="|date_taken(a) - date_taken(b)| in seconds, as wall-clock times "
            "(offsets ignored); 0 for re-encodes and copies that kept the metadata, small "
            "for bursts; null when either date is unknown."
        ),
    ]


class NearDuplicateGroup(msgspec.Struct):
    """Contents linked by pairs within the distance (connected components: union-find)."""

    count: Annotated[int, Meta(description="Number of members (>= 2).")]
    members: Annotated[
        list[NearDuplicateMember],
        Meta(description="Members by date_taken (unknown last), then hash."),
    ]
    pairs: Annotated[
        list[NearPair],
        Meta(
            description="Every pair of members within the distance (and window) that was "
            "not marked as not-a-duplicate, by distance then hashes. Members are linked "
            "through these, so two members may be further apart than max_distance."
        ),
    ]


class NearDuplicatePage(msgspec.Struct):
    """A page of near-duplicate groups, by member count descending then first member hash."""

    kind: Annotated[Literal["near"], Meta(description="Always 'near'.")]
    max_distance: Annotated[int, Meta(description="The Hamming distance used (0-16).")]
    window: Annotated[
        float | None, Meta(description="The date_taken window in seconds; null if none.")
    ]
    items: Annotated[list[NearDuplicateGroup], Meta(description="Near-duplicate groups.")]
    next: Annotated[str | None, Meta(description=NEXT)]


class NotDuplicateRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A decision that two contents are not duplicates (or, with undo, that they may be)."""

    a: Annotated[str, Meta(description=HASH)]
    b: Annotated[str, Meta(description=HASH + " Not the same as a.")]
    undo: Annotated[bool, Meta(description="Take back an earlier not-a-duplicate decision.")] = (
        False
    )


class NotDuplicateAccepted(msgspec.Struct):
    """The NotDuplicate event was appended to the log; the read model follows."""

    seq: Annotated[int, Meta(description="Stream sequence of the NotDuplicate event.")]
    duplicate: Annotated[
        bool,
        Meta(description="True if JetStream saw this exact message before (seq is the first)."),
    ]
    a: Annotated[str, Meta(description="The smaller of the two content hashes.")]
    b: Annotated[str, Meta(description="The larger of the two content hashes.")]
    undo: Annotated[bool, Meta(description="Whether this takes a decision back.")]
