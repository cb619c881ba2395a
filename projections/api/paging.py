"""Opaque keyset cursors: base64url of compact JSON, validated on the way back in."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from projections.api.errors import bad_parameter
from projections.api.params import CURSOR_PATTERN, strict

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The payload of a cursor this API handed out; 400 naming ``cursor`` otherwise."""
    strict("cursor", cursor, CURSOR_PATTERN, "not a cursor handed out by this API")
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise bad_parameter("cursor", "not a cursor handed out by this API") from exc
    if not isinstance(data, dict):
        raise bad_parameter("cursor", "not a cursor handed out by this API")
    return data
