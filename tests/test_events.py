"""The event catalog and its codec."""

from __future__ import annotations

import json
import types
from datetime import UTC, datetime
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from eventsvc.core import events as ev
from eventsvc.core.errors import DecodeError
from eventsvc.core.ids import file_id


def _seen(**kw: object) -> ev.FileSeen:
    base = dict(
        library_id="lib-a",
        file_id=file_id("lib-a", b"x/y.jpg"),
        path="x/y.jpg",
        size=3,
        mtime_ns=5,
        media_kind="image",
    )
    base.update(kw)
    return ev.FileSeen(**base)  # type: ignore[arg-type]


def test_round_trip_every_type_with_and_without_headers() -> None:
    samples: list[ev.Event] = [
        _seen(),
        ev.FileMissing(library_id="l", file_id="f" * 32, path="a.jpg"),
        ev.LibraryStale(library_id="l", name="n", root="/r", reason="gone"),
        ev.LibraryOnline(library_id="l", name="n", root="/r"),
        ev.HashComputed(
            content_hash="a" * 64,
            library_id="l",
            file_id="f" * 32,
            size=1,
            mtime_ns=2,
            media_kind="image",
            phash="00ff",
            causation=7,
        ),
        ev.DerivationFailed(stage="hasher", reason="boom", input_subject="s", causation=9),
        ev.ClipEncoded(content_hash="b" * 64, model_version="m", dim=2, vector=[0.5, 0.25]),
        ev.FacesDetected(content_hash="b" * 64, model="hog", faces=[]),
    ]
    for e in samples:
        data = ev.encode(e)
        assert ev.decode(data, ev.headers_for(e)) == e
        assert ev.decode(data) == e
        body = json.loads(data)
        assert body["type"] == e.type and body["v"] == 1  # type: ignore[attr-defined]


def test_events_are_frozen() -> None:
    e = _seen()
    with pytest.raises(ValidationError):
        e.size = 4  # type: ignore[misc]


def test_subjects_put_the_key_before_the_type_and_never_a_path() -> None:
    e = _seen(path="holidays/ünïcode dir/a.b.c*>.jpg")
    assert e.subject() == f"photos.file.{e.file_id}.FileSeen"
    assert "holidays" not in e.subject()
    h = ev.HashComputed(
        content_hash="c" * 64,
        library_id="l",
        file_id="f" * 32,
        size=1,
        mtime_ns=2,
        media_kind="video",
    )
    assert h.subject("x") == f"x.content.{'c' * 64}.HashComputed"
    lib = ev.LibraryStale(library_id="lib-1", name="n", root="/r", reason="r")
    assert lib.subject() == "photos.library.lib-1.LibraryStale"


def test_headers_carry_msg_id_type_and_causation() -> None:
    h = ev.HashComputed(
        content_hash="c" * 64,
        library_id="l",
        file_id="f" * 32,
        size=1,
        mtime_ns=2,
        media_kind="image",
        causation=42,
    )
    hdrs = ev.headers_for(h)
    assert hdrs[ev.HDR_TYPE] == "HashComputed"
    assert hdrs[ev.HDR_CAUSATION] == "42"
    assert hdrs["Nats-Msg-Id"] == ev.headers_for(h)["Nats-Msg-Id"]  # deterministic


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe garbage",
        b"[]",
        b'{"type": "Nope"}',
        b'{"type": "FileSeen", "v": 1}',
        b'{"type": "FileSeen", "v": 99}',
        b"",
    ],
)
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        ev.decode(data, {ev.HDR_TYPE: "FileSeen", ev.HDR_VERSION: "1"})


def test_upcasting_old_versions_happens_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend FileMissing is at v2 and v1 bodies lack nothing but need a rename.
    old = {
        "type": "FileMissing",
        "v": 0,
        "library": "l",
        "file_id": "f" * 32,
        "path": "a.jpg",
        "occurred_at": "2024-01-01T00:00:00Z",
    }

    def up0(body: dict) -> dict:
        body = dict(body)
        body["library_id"] = body.pop("library")
        return body

    monkeypatch.setitem(ev.UPCASTERS, ("FileMissing", 0), up0)
    out = ev.decode(json.dumps(old).encode())
    assert isinstance(out, ev.FileMissing) and out.library_id == "l"


def test_non_utf8_paths_keep_their_bytes() -> None:
    import base64

    raw = b"caf\xe9.jpg"
    e = _seen(path=raw.decode("utf-8", "replace"), raw_path=base64.b64encode(raw).decode())
    assert ev.decode(ev.encode(e)).path_bytes() == raw  # type: ignore[attr-defined]


# ---------------------------------------------------------------- every type, generically


def _concrete_event_classes() -> list[type[ev.Event]]:
    """Every event class defined in eventsvc.core.events (a new one is covered automatically):
    subclasses of Event, at any depth, that carry a literal ``type``."""
    found: list[type[ev.Event]] = []
    stack = list(ev.Event.__subclasses__())
    while stack:
        cls = stack.pop()
        stack += cls.__subclasses__()
        if cls.__module__ == ev.__name__ and "type" in cls.model_fields:
            found.append(cls)
    return sorted(set(found), key=lambda c: c.__name__)


def _sample(tp: Any) -> Any:
    """A small valid value of annotation ``tp`` (never None)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return args[0]
    if origin in (Union, types.UnionType):
        return _sample(next(a for a in args if a is not type(None)))
    if origin is list:
        return [_sample(args[0])]
    if origin is tuple:
        return tuple(_sample(a) for a in args if a is not Ellipsis)
    if origin is dict:
        return {"k": _sample(args[1])}
    if tp is Any or tp is str:
        return "x"
    if tp is bool:
        return True
    if tp is int:
        return 3
    if tp is float:
        return 0.5
    if tp is datetime:
        return datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp(**{n: _sample(f.annotation) for n, f in tp.model_fields.items()})
    raise AssertionError(f"no sample for {tp!r}: teach _sample this annotation")


def _admits_none(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _round_trip(e: ev.Event) -> None:
    data = ev.encode(e)
    assert ev.decode(data, ev.headers_for(e)) == e, data
    assert ev.decode(data) == e, data


def test_the_catalog_registers_every_event_class() -> None:
    classes = _concrete_event_classes()
    assert len(classes) >= 20
    assert set(classes) == set(ev.EVENT_TYPES.values()), "an event class is not in _CLASSES"
    assert {c.__name__ for c in classes} <= set(ev.__all__)


@pytest.mark.parametrize("cls", _concrete_event_classes(), ids=lambda c: c.__name__)
def test_round_trip_minimal_full_and_all_optional_none(cls: type[ev.Event]) -> None:
    fields = {n: f for n, f in cls.model_fields.items() if n not in ("type", "v")}
    required = {n: _sample(f.annotation) for n, f in fields.items() if f.is_required()}
    _round_trip(cls(**required))  # minimal: only the required fields
    _round_trip(cls(**{n: _sample(f.annotation) for n, f in fields.items()}))  # every field
    nones = {n: None for n, f in fields.items() if _admits_none(f.annotation)}
    e = cls(**{**required, **nones})  # every field that may be None is None
    _round_trip(e)
    for n in nones:
        assert getattr(ev.decode(ev.encode(e)), n) is None


def test_person_named_clears_and_old_nameless_bodies_decode_as_a_clear() -> None:
    """PersonNamed(name=None) is a clear; the body it was encoded to before the fix (no
    ``name`` at all, appended by ``PATCH /people/{id}`` with an empty name) decodes too."""
    cleared = ev.PersonNamed(person_id="p-0123456789abcdef", name=None)
    assert "name" not in json.loads(ev.encode(cleared))
    old = b'{"occurred_at":"2026-01-02T03:04:05Z","type":"PersonNamed","v":1,"person_id":"p-1"}'
    got = ev.decode(old, {ev.HDR_TYPE: "PersonNamed", ev.HDR_VERSION: "1"})
    assert isinstance(got, ev.PersonNamed) and got.name is None and got.person_id == "p-1"
