"""`eventsvc events --catalog`: every subject and event type with one example each.

Generated from the event declarations (``eventsvc.core.events.EVENT_TYPES``, each
class's subject/message-id declarations and its pydantic fields): an example is built
from the fields a type declares (values by field name, else by field type), validated by
the model itself, and shown with the subject, ``Nats-Msg-Id`` and headers the
publisher would use. ``docs/events.md`` is this output; a test keeps it in sync.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from eventsvc.core.events import CURRENT_VERSION, EVENT_TYPES, Event, catalog, encode
from eventsvc.core.events.wire import headers_for

__all__ = ["catalog_entries", "catalog_json", "catalog_markdown", "example_event"]

_HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_HASH_B = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
_FACE_ID = f"{_HASH}-3f1a2b-0"

# example values by field name (a field not named here gets one by its type)
_BY_NAME: dict[str, Any] = {
    "content_hash": _HASH,
    "library_id": "pictures",
    "file_id": "5d41402abc4b2a76b9719d911017c592",
    "path": "2024/holiday/IMG_0001.jpg",
    "size": 2481532,
    "mtime_ns": 1717245296000000000,
    "media_kind": "image",
    "name": "Pictures",
    "root": "/home/me/Pictures",
    "reason": "root is empty or unreadable: 0 of 1200 known files found",
    "stage": "thumbnail",
    "input_subject": f"photos.content.{_HASH}.HashComputed",
    "fields": {"make": "Canon", "model": "EOS 80D", "width": 6000, "height": 4000,
               "orientation": 1, "date_original": "2024:06:01 14:34:56", "iso": 200},
    "date_taken": "2024-06-01T14:34:56",
    "date_source": "exif",
    "warnings": [],
    "sizes": {"small": f"{_HASH[:2]}/{_HASH}-small.jpg",
              "large": f"{_HASH[:2]}/{_HASH}-large.jpg"},
    "width": 1024,
    "height": 683,
    "phash": "c3d2e1f0a5b4c7d8",
    "dhash": "0f1e2d3c4b5a6978",
    "model_version": "ViT-B-32__openai",
    "dim": 4,
    "vector": [0.12, -0.05, 0.31, 0.94],
    "model": "dlib-resnet-v1",
    "faces": [{"box": [0.31, 0.22, 0.45, 0.41], "score": 0.99,
               "landmarks": [[0.35, 0.3], [0.41, 0.3]], "embedding": [0.02, -0.11, 0.07]}],
    "playlist_path": f"videos/{_HASH[:2]}/{_HASH}/index.m3u8",
    "duration": 12.5,
    "segments": 3,
    "codecs": "avc1.64001f,mp4a.40.2",
    "mode": "remux",
    "a": _HASH,
    "b": _HASH_B,
    "person_id": "p-0123456789abcdef",
    "founder": _FACE_ID,
    "face_id": _FACE_ID,
    "distance": 0.38,
    "source": "p-0123456789abcdef",
    "target": "p-fedcba9876543210",
}  # fmt: skip

# the scanner publishes its observations under message ids of its own
# (eventsvc/scanner/scanner.py): the file's or library's last sequence makes a repeat
# of the same observation a duplicate, a change a new fact
_SCANNER_MSG_IDS = {
    "FileSeen": ("FileSeen:<file_id>:<size>:<mtime_ns>:<seq of the file's last fact>",
                 "FileSeen:{file_id}:{size}:{mtime_ns}:17"),
    "FileMissing": ("FileMissing:<file_id>:<seq of the file's last fact>",
                    "FileMissing:{file_id}:17"),
    "LibraryStale": ("LibraryStale:<library_id>:<seq of the library's last fact>",
                     "LibraryStale:{library_id}:3"),
    "LibraryOnline": ("LibraryOnline:<library_id>:<seq of the library's last fact>",
                      "LibraryOnline:{library_id}:3"),
}  # fmt: skip

# where one field name means different things per type
_TRUNCATED = "cannot decode: image file is truncated (41 bytes not processed)"
_NOT_HELD = "no live location held this content on two consecutive healthy ticks"
_BY_TYPE: dict[tuple[str, str], Any] = {
    ("DerivationFailed", "reason"): _TRUNCATED,
    ("PlaylistRemoved", "reason"): _NOT_HELD,
    ("PlaylistReady", "reason"): "H.264/AAC with key frames at most 2.0 s apart",
    ("PersonNamed", "name"): "Alice",
}

_OCCURRED_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_CAUSATION = 41


def _by_type(annotation: Any) -> Any:
    """An example value of a field named in none of the above, by its type."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _by_type(args[0]) if args else None
    if origin is Literal:
        return typing.get_args(annotation)[0]
    if origin is list:
        return []
    if origin is dict:
        return {}
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return False
        if issubclass(annotation, int):
            return 1
        if issubclass(annotation, float):
            return 1.0
        if issubclass(annotation, str):
            return "example"
        if issubclass(annotation, BaseModel):
            return {}
    raise TypeError(f"no example for a field of type {annotation!r}")


def example_event(cls: type[Event]) -> Event:
    """One valid ``cls`` event: every required field, the optional ones with a known
    example value, the first ``key_choice`` field; validated by the model."""
    data: dict[str, Any] = {"occurred_at": _OCCURRED_AT}
    if "causation" in cls.msg_id_fields and not cls.__module__.endswith(".files"):
        # derived facts name their cause; the scanner's observations have none
        data["causation"] = _CAUSATION
    chosen = {cls.key_choice[0][0]} if cls.key_choice else set()
    others = {f for f, _ in cls.key_choice} - chosen
    for name, field in cls.model_fields.items():
        if name in data or name in {"type", "v", "causation", "occurred_at"}:
            continue
        if name in others and not field.is_required():
            continue
        etype = cls.model_fields["type"].default
        if (etype, name) in _BY_TYPE:
            data[name] = _BY_TYPE[(etype, name)]
        elif name in _BY_NAME:
            data[name] = _BY_NAME[name]
        elif field.is_required():
            data[name] = _by_type(field.annotation)
    return cls.model_validate(data)


def catalog_entries(prefix: str = "photos") -> list[dict[str, Any]]:
    """Per event type: version, subject pattern(s), message id pattern, and an example
    (subject, headers, JSON body) as the publisher writes it."""
    out = []
    for etype, version, pattern, msg_id in catalog(prefix):
        cls = EVENT_TYPES[etype]
        event = example_event(cls)
        headers = headers_for(event)
        if etype in _SCANNER_MSG_IDS:
            msg_id, example_id = _SCANNER_MSG_IDS[etype]
            headers["Nats-Msg-Id"] = example_id.format(**event.model_dump())
        out.append(
            {
                "type": etype,
                "version": version,
                "subjects": pattern.split(" | "),
                "msg_id": msg_id,
                "doc": inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " "),
                "example": {
                    "subject": event.subject(prefix),
                    "headers": headers,
                    "body": json.loads(encode(event)),
                },
            }
        )
    return out


def catalog_json(prefix: str = "photos") -> str:
    return json.dumps(catalog_entries(prefix), indent=2) + "\n"


def catalog_markdown(prefix: str = "photos") -> str:
    entries = catalog_entries(prefix)
    lines = [
        "# Events catalog",
        "",
        "<!-- generated by `eventsvc events --catalog`; tests/test_ops_catalog.py keeps it"
        " in sync -->",
        "",
        f"Every fact is one message on the stream's subjects `{prefix}.>`: "
        f"`{prefix}.<aggregate>.<key>.<Type>[.<variant>]`. Headers: `Nats-Msg-Id` "
        "(JetStream de-duplication), `Eventsvc-Type`, `Eventsvc-Version` and, for a derived "
        "fact, `Eventsvc-Causation` (the stream sequence it was derived from). Bodies are "
        "compact JSON (fields that are null are left out).",
        "",
        "Read them with `eventsvc events [--type T] [--follow]`, or with the `nats` CLI "
        "(`eventsvc nats-context`), e.g. "
        f"`nats --context eventsvc stream view PHOTOS --subject '{prefix}.*.*.FileSeen'`.",
        "",
        "| type | v | subject | Nats-Msg-Id |",
        "|---|---|---|---|",
    ]
    for e in entries:
        subjects = "<br>".join(f"`{s}`" for s in e["subjects"])
        lines.append(f"| [{e['type']}](#{e['type'].lower()}) | {e['version']} | {subjects} "
                     f"| `{e['msg_id']}` |")  # fmt: skip
    for e in entries:
        ex = e["example"]
        lines += ["", f"## {e['type']}", ""]
        if e["doc"]:
            lines += [e["doc"], ""]
        lines += [f"Version {e['version']}; subject " + ", ".join(f"`{s}`" for s in e["subjects"])]
        lines += ["", "```", f"subject: {ex['subject']}"]
        lines += [f"{k}: {v}" for k, v in ex["headers"].items()]
        lines += ["", json.dumps(ex["body"], indent=2), "```"]
    assert set(CURRENT_VERSION) == {e["type"] for e in entries}
    return "\n".join(lines) + "\n"
