"""The one upcasting place: old schema versions of event bodies, made current.

``UPCASTERS[(type, version)]`` turns a body of that version into one of version + 1
(plain dicts, before validation); :func:`eventsvc.core.events.decode` chains them. One
entry per schema change; a version without its upcaster does not decode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["UPCASTERS", "Upcaster", "derivation_failed_1_to_2", "hash_computed_1_to_2"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

HASH_V1_ONLY = ("phash", "dhash", "width", "height", "decode_error")
"""HashComputed v1 fields that v2 no longer has."""


def hash_computed_1_to_2(body: dict[str, Any]) -> dict[str, Any]:
    """HashComputed v2 is content identity only. v1 had room for perceptual hashes,
    dimensions and a decode error, which the hasher filled only before the media deriver
    existed (commit 0e01b45, 2026-11-22); since then they come from the media deriver's
    ``ThumbnailReady`` (and a failed decode from its ``DerivationFailed``), which it
    derives for every content in the log, those hashed before it existed included. The
    v1 values are dropped."""
    out = {k: v for k, v in body.items() if k not in HASH_V1_ONLY}
    out["v"] = 2
    return out


MEDIA_OPERATIONS = ("exif", "thumbnail")
"""What the media stage does; DerivationFailed v1 recorded them as its stage."""


def derivation_failed_1_to_2(body: dict[str, Any]) -> dict[str, Any]:
    """DerivationFailed v2 says which stage failed (``stage``, always the stage's name) and
    what it was doing (``operation``). In v1 ``stage`` was the stage's name except for the
    media stage, which wrote its operation there (``exif``, ``thumbnail``): those become
    ``stage="media"`` with that operation; any other v1 stage is its own operation. The
    subject (a media failure is always about a content) and the message id (keyed by the
    operation) stay those v1 gave."""
    out = dict(body)
    stage = out.get("stage")
    out["operation"] = stage
    if stage in MEDIA_OPERATIONS:
        out["stage"] = "media"
    out["v"] = 2
    return out


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("HashComputed", 1): hash_computed_1_to_2,
    ("DerivationFailed", 1): derivation_failed_1_to_2,
}
