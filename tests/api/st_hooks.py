"""Schemathesis hooks: the rules between parameters that the OpenAPI document states in
words (JSON Schema cannot for query parameters), taught to the generator.

Only cases generated as valid ("positive") are touched, so negative cases stay negative.
The pytest test applies :func:`repair` itself; for the command line::

    SCHEMATHESIS_HOOKS=tests.api.st_hooks schemathesis run URL/schema/openapi.json --checks all
"""

from __future__ import annotations

import tempfile
from typing import Any

import schemathesis

from projections.api.filters import taken_bound
from projections.api.params import (
    BBOX_PATTERN,
    CURSOR_PATTERN,
    FACE_PATTERN,
    HASH_PATTERN,
    NEAR_PATTERN,
    PERSON_PATTERN,
    full,
)

__all__ = ["repair"]

_CURSOR, _NEAR, _BBOX = full(CURSOR_PATTERN), full(NEAR_PATTERN), full(BBOX_PATTERN)
# A made-up but well-formed id for a path parameter that a link filled with a null.
_IDS = {
    "content_hash": (full(HASH_PATTERN), "0" * 64),
    "person_id": (full(PERSON_PATTERN), "p-" + "0" * 16),
    "face_id": (full(FACE_PATTERN), "0" * 64 + "-000000-0"),
}


def _other(h: str) -> str:
    return h[:-1] + ("1" if h[-1] != "1" else "2")


def _query(q: dict[str, Any]) -> None:
    # Cursors are opaque tokens handed out by the server; a made-up one is refused.
    cursor = q.get("cursor")
    if isinstance(cursor, str) and _CURSOR.fullmatch(cursor):
        del q["cursor"]
    # model_version names the vectors of one model; only those present exist.
    q.pop("model_version", None)
    # near needs radius_km and radius_km needs near.
    near = q.get("near")
    if isinstance(near, str) and _NEAR.fullmatch(near):
        if q.get("radius_km") is None:
            q["radius_km"] = 10.0
    elif "radius_km" in q and near is None:
        del q["radius_km"]
    # taken_to not before taken_from.
    lo, hi = q.get("taken_from"), q.get("taken_to")
    if isinstance(lo, str) and isinstance(hi, str):
        if taken_bound("taken_to", hi, upper=True) <= taken_bound("taken_from", lo, upper=False):
            del q["taken_to"]
    # bbox: min_lat not above max_lat.
    bbox = q.get("bbox")
    if isinstance(bbox, str) and _BBOX.fullmatch(bbox):
        a, b, c, d = bbox.split(",")
        if float(a) > float(c):
            q["bbox"] = ",".join((c, b, a, d))
    # /duplicates: max_distance and window only with kind=near.
    if ("max_distance" in q or "window" in q) and q.get("kind", "exact") == "exact":
        if q.get("max_distance") is not None or q.get("window") is not None:
            q["kind"] = "near"
    # DELETE /duplicates/not-duplicate: two different contents.
    if isinstance(q.get("a"), str) and q.get("a") == q.get("b"):
        q["b"] = _other(q["a"])


def repair(case: Any) -> None:
    """Make a case generated as valid obey the rules between parameters."""
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive:
        return
    if case.query:
        _query(case.query)
    for name, value in list((case.path_parameters or {}).items()):
        known = _IDS.get(name)
        if known is not None and not (isinstance(value, str) and known[0].fullmatch(value)):
            case.path_parameters[name] = known[1]
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("root"), str):
        # POST /libraries: a valid root is an existing directory (checked on the host)
        body["root"] = tempfile.mkdtemp(prefix="st-library-")
    if isinstance(body, dict):
        if isinstance(body.get("a"), str) and body.get("a") == body.get("b"):
            body["b"] = _other(body["a"])
        people = body.get("people")
        target = (case.path_parameters or {}).get("person_id")
        if isinstance(people, list) and target in people:
            body["people"] = [p for p in people if p != target] or [_other(target)]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    repair(case)
