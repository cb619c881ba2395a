"""What the OpenAPI document declares about parameters and bodies, in one place.

Each pattern here is the exact set of values a handler accepts: Litestar enforces it
on the way in (with ``re.search``, so a trailing newline still slips past ``$``) and the
handler checks it again with :func:`strict` (``re.fullmatch``). The patterns are written
so Python and ECMA-262 (JSON Schema) read them the same way: ``[0-9]``, never ``\\d``.

Rules between parameters that JSON Schema cannot state for query parameters (``near``
needs ``radius_km``, ``taken_to`` not before ``taken_from``...) are written in the
parameter descriptions and answer 400 naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType

from projections.api.errors import bad_parameter

__all__ = [
    "BBOX_PATTERN",
    "BODY_SCHEMAS",
    "CURSOR_PATTERN",
    "FACE_PATTERN",
    "HASH_PATTERN",
    "LAT",
    "LOGIN_BODY",
    "LON",
    "MERGE_BODY",
    "NAMES_SOMETHING",
    "NEAR_PATTERN",
    "NOT_BLANK",
    "NOT_DUPLICATE_BODY",
    "PERSON_PATCH_BODY",
    "PERSON_PATTERN",
    "REASSIGN_BODY",
    "SERVABLE_PATTERN",
    "WHEN_PATTERN",
    "AnyOfOperation",
    "binary_operation",
    "body_operation",
    "decode_body",
    "full",
    "strict",
]

HASH_PATTERN = "^[0-9a-f]{64}$"
PERSON_PATTERN = "^p-[0-9a-f]{16}$"
FACE_PATTERN = "^[0-9a-f]{64}-[0-9a-f]{6}-[0-9]{1,4}$"
CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"
"""base64url without padding: what :func:`projections.api.paging.encode_cursor` hands out."""
SERVABLE_PATTERN = (
    "^(?:index\\.m3u8|init\\.mp4|seg_[0-9]{5}\\.(?:m4s|ts)|poster\\.jpg|preview\\.mp4)$"
)

LAT = "-?(?:90(?:\\.0+)?|[1-8]?[0-9](?:\\.[0-9]+)?)"
"""A latitude in decimal degrees, -90..90."""
LON = "-?(?:180(?:\\.0+)?|(?:1[0-7][0-9]|[1-9]?[0-9])(?:\\.[0-9]+)?)"
"""A longitude in decimal degrees, -180..180."""
BBOX_PATTERN = f"^{LAT},{LON},{LAT},{LON}$"
NEAR_PATTERN = f"^{LAT},{LON}$"

_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_DAY = (
    "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
)
_TIME = "(?:[T ](?:[01][0-9]|2[0-3])(?::[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{1,6})?)?)?)?"
WHEN_PATTERN = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY}){_TIME}$"
"""An existing calendar date, optionally with a wall-clock time: no offset."""

NOT_BLANK = (
    "[^\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
    "\\u001c-\\u001f\\u0085]"
)
"""Holds a character that is not white space (for Python's str.strip and ECMA alike)."""
NAMES_SOMETHING = "[^* ]"
"""Holds a character other than '*' and space (a camera/lens filter naming something)."""


def full(pattern: str) -> re.Pattern[str]:
    """The declared pattern compiled for :func:`re.fullmatch` (anchors dropped)."""
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


_COMPILED: dict[str, re.Pattern[str]] = {}


def strict(name: str, value: str, pattern: str, why: str) -> str:
    """``value`` if it matches the whole ``pattern`` (no trailing newline); else a 400."""
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = full(pattern)
    if compiled.fullmatch(value) is None:
        raise bad_parameter(name, why)
    return value


# ------------------------------------------------------------------ operations


def _binary(media_types: Sequence[str]) -> dict[str, OpenAPIMediaType]:
    return {
        t: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, content_media_type=t))
        for t in media_types
    }


def binary_operation(
    media_types: Sequence[str], statuses: Sequence[str] = ("200", "206")
) -> type[Operation]:
    """An Operation class whose ``statuses`` responses carry ``media_types`` bytes
    (Litestar documents one media type per handler, and JSON for ``Response[Any]``)."""

    @dataclass
    class BinaryOperation(Operation):
        def __post_init__(self) -> None:
            for status in statuses:
                found = (self.responses or {}).get(status)
                if isinstance(found, OpenAPIResponse):
                    found.content = _binary(media_types)

    return BinaryOperation


def body_operation(name: str) -> type[Operation]:
    """An Operation class whose JSON request body is ``BODY_SCHEMAS[name]``: for handlers
    that read their body with :func:`decode_body`."""

    schema = BODY_SCHEMAS[name]

    @dataclass
    class BodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=schema)}, required=True
            )

    return BodyOperation


T = TypeVar("T")


async def decode_body(request: Request[Any, Any, Any], kind: type[T]) -> T:
    """The JSON body as ``kind``, strictly: ``0`` or ``"true"`` is no boolean (Litestar's
    own conversion of ``data`` is lax), unknown fields are refused; else a 400."""
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except msgspec.ValidationError as exc:
        raise bad_parameter("body", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise bad_parameter("body", f"not a JSON document ({exc})") from exc


# ------------------------------------------------------------------ request bodies
# Written out because the msgspec Structs cannot say: no other fields
# (forbid_unknown_fields is not in Litestar's schema), patterns, and rules between fields.

_STRING, _BOOL = OpenAPIType.STRING, OpenAPIType.BOOLEAN


def _object(props: dict[str, Schema], required: Sequence[str] = (), **more: Any) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT, properties=props, required=list(required),
        additional_properties=False, **more,
    )  # fmt: skip


_HASH = Schema(type=_STRING, pattern=HASH_PATTERN, description="A content hash (BLAKE3 hex).")
_PERSON = Schema(type=_STRING, pattern=PERSON_PATTERN, description="A person id.")

NOT_DUPLICATE_BODY = _object(
    {"a": _HASH, "b": _HASH, "undo": Schema(type=_BOOL, default=False,
                                           description="Take back an earlier decision.")},
    ["a", "b"],
    description="The pair (b not the same content as a), and undo.",
)  # fmt: skip
PERSON_PATCH_BODY = _object(
    {
        "name": Schema(
            one_of=[Schema(type=_STRING, max_length=200), Schema(type=OpenAPIType.NULL)],
            description="A name, at most 200 characters (null or '' clears it).",
        ),
        "hidden": Schema(type=_BOOL, description="Hide or show."),
    },
    min_properties=1,
    description="What to change (name and/or hidden); fields left out stay as they are.",
)
MERGE_BODY = _object(
    {"people": Schema(type=OpenAPIType.ARRAY, items=_PERSON, min_items=1,
                      description="Person ids merged into the one in the path (not itself).")},
    ["people"],
)  # fmt: skip
REASSIGN_BODY = Schema(
    one_of=[
        _object(
            {"person_id": _PERSON,
             "new_person": Schema(type=_BOOL, const=False, description="false or left out.")},
            ["person_id"],
        ),
        _object(
            {"person_id": Schema(type=OpenAPIType.NULL, description="null or left out."),
             "new_person": Schema(type=_BOOL, const=True,
                                  description="Split: the face starts a new person.")},
            ["new_person"],
        ),
    ],
    description="Either person_id (the face belongs to that person) or new_person=true.",
)  # fmt: skip
LOGIN_BODY = _object(
    {"token": Schema(type=_STRING, min_length=1, max_length=4096, description="An API token.")},
    ["token"],
    description="The token to open a browser session with.",
)


@dataclass
class AnyOfOperation(Operation):
    """The 200 body is one of several shapes that may overlap (an empty page fits
    each): ``anyOf``, where Litestar writes ``oneOf`` for a union return type."""

    def __post_init__(self) -> None:
        found = (self.responses or {}).get("200")
        for media in (getattr(found, "content", None) or {}).values():
            schema = media.schema
            if isinstance(schema, Schema) and schema.one_of:
                schema.any_of, schema.one_of = schema.one_of, None


BODY_SCHEMAS = {
    "NotDuplicateRequest": NOT_DUPLICATE_BODY,
    "PersonPatch": PERSON_PATCH_BODY,
    "MergeRequest": MERGE_BODY,
    "ReassignRequest": REASSIGN_BODY,
    "Login": LOGIN_BODY,
}
"""Request bodies by name, written inline (Litestar replaces configured components)."""
