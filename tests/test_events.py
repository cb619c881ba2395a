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
from eventsvc.core.events import upcast
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


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.__name__)
def test_round_trip_every_type_with_and_without_headers(cls: type[ev.Event]) -> None:
    e = _full(cls)
    data = ev.encode(e)
    assert ev.decode(data, ev.headers_for(e)) == e
    assert ev.decode(data) == e
    body = json.loads(data)
    assert body["type"] == e.type == cls.model_fields["type"].default  # type: ignore[attr-defined]
    assert body["v"] == ev.CURRENT_VERSION[e.type] == int(ev.headers_for(e)[ev.HDR_VERSION])  # type: ignore[attr-defined]


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
    def hashed(causation: int) -> ev.HashComputed:
        return ev.HashComputed(
            content_hash="c" * 64,
            library_id="l",
            file_id="f" * 32,
            size=1,
            mtime_ns=2,
            media_kind="image",
            causation=causation,
        )

    hdrs = ev.headers_for(hashed(42))
    assert hdrs[ev.HDR_TYPE] == "HashComputed"
    assert hdrs[ev.HDR_VERSION] == "2"
    assert hdrs[ev.HDR_CAUSATION] == "42"
    assert hdrs["Nats-Msg-Id"] == f"HashComputed:{'c' * 64}:42"
    # Deterministic: the same fact made again (another instant) has the same id …
    assert ev.headers_for(hashed(42))["Nats-Msg-Id"] == hdrs["Nats-Msg-Id"]
    # … another cause does not, and an explicit id wins.
    assert ev.headers_for(hashed(43))["Nats-Msg-Id"] != hdrs["Nats-Msg-Id"]
    assert ev.headers_for(hashed(42), "mine")["Nats-Msg-Id"] == "mine"


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


def test_upcasting_old_versions_happens_in_one_place() -> None:
    """The real upcaster: HashComputed v1 (with the perceptual-hash fields it had) is
    read as v2, through the fast path's headers and without them; a version without an
    upcaster is a decode error."""
    assert ev.UPCASTERS[("HashComputed", 1)] is upcast.hash_computed_1_to_2
    assert all(v < ev.CURRENT_VERSION[t] for t, v in ev.UPCASTERS)
    v1 = {
        "occurred_at": "2026-01-02T03:04:05Z",
        "causation": 7,
        "type": "HashComputed",
        "v": 1,
        "content_hash": "a" * 64,
        "library_id": "l",
        "file_id": "f" * 32,
        "size": 1,
        "mtime_ns": 2,
        "media_kind": "image",
        "phash": "00ff00ff00ff00ff",
        "width": 4,
    }
    data = json.dumps(v1).encode()
    for headers in ({ev.HDR_TYPE: "HashComputed", ev.HDR_VERSION: "1"}, None):
        got = ev.decode(data, headers)
        assert isinstance(got, ev.HashComputed) and got.v == 2 and got.causation == 7
        assert "phash" not in json.loads(ev.encode(got))
        assert got.subject() == f"photos.content.{'a' * 64}.HashComputed"
    with pytest.raises(DecodeError, match="no upcaster"):
        ev.decode(json.dumps({**v1, "v": 0}).encode())


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
        if cls.__module__.startswith(f"{ev.__name__}.") and "type" in cls.model_fields:
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


def _full(cls: type[ev.Event]) -> ev.Event:
    """An instance of ``cls`` with every field set."""
    fields = {n: f for n, f in cls.model_fields.items() if n not in ("type", "v")}
    return cls(**{n: _sample(f.annotation) for n, f in fields.items()})


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


# ---------------------------------------------------------------- declarations, catalog


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.__name__)
def test_declarations_name_fields_of_the_event(cls: type[ev.Event]) -> None:
    fields = set(cls.model_fields)
    keys = list(cls.key_fields) + [f for f, _ in cls.key_choice]
    assert keys and set(keys) <= fields, (cls.__name__, keys)
    assert set(cls.msg_id_fields) - {"key"} <= fields, cls.msg_id_fields
    assert cls.variant_field is None or cls.variant_field in fields
    assert "path" not in keys and "raw_path" not in keys  # never a path in a subject


def test_the_module_docstring_is_the_whole_catalog() -> None:
    doc = ev.__doc__ or ""
    rows = ev.catalog()
    assert [r[0] for r in rows] == list(ev.EVENT_TYPES)
    for etype, version, subject, msg_id in rows:
        assert f"{etype} v{version}, msg id ``{msg_id}``::" in doc, etype
        for pattern in subject.split(" | "):
            assert f"\n    {pattern}\n" in doc, pattern


def test_person_face_pair_and_failure_subjects() -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    h = "d" * 64
    fid = ev.face_id(h, "hog", 2)
    cases: list[tuple[ev.Event, str, str]] = [
        (ev.PersonCreated(person_id="p-1", founder=fid, causation=5),
         "photos.person.p-1.PersonCreated", "PersonCreated:p-1"),
        (ev.FaceAssigned(face_id=fid, person_id="p-1", content_hash=h, causation=6),
         f"photos.face.{fid}.FaceAssigned", f"FaceAssigned:{fid}:p-1"),
        (ev.PersonNamed(person_id="p-1", name="A", occurred_at=at),
         "photos.person.p-1.PersonNamed", f"PersonNamed:p-1:{at.isoformat()}"),
        (ev.PeopleMerged(source="p-2", target="p-1", occurred_at=at),
         "photos.person.p-2.PeopleMerged", f"PeopleMerged:p-2:{at.isoformat()}"),
        (ev.FaceRejected(face_id=fid, occurred_at=at),
         f"photos.face.{fid}.FaceRejected", f"FaceRejected:{fid}:{at.isoformat()}"),
        (ev.NotDuplicate(a="x", b="y", undo=True, occurred_at=at),
         "photos.pair.x-y.NotDuplicate", f"NotDuplicate:x-y:True:{at.isoformat()}"),
        (ev.FacesDetected(content_hash=h, model="dlib v1.2", faces=[], deriver_version=3),
         f"photos.content.{h}.FacesDetected.dlib_v1_2", f"FacesDetected:{h}:dlib v1.2:v3"),
        (ev.DerivationFailed(stage="faces", reason="r", input_subject="s", causation=9),
         "photos.stage.faces.DerivationFailed", "DerivationFailed:faces:9"),
        (ev.DerivationFailed(stage="faces", reason="r", input_subject="s", file_id="f1"),
         "photos.file.f1.DerivationFailed", "DerivationFailed:faces:None"),
        (ev.DerivationFailed(stage="media", operation="thumbnail", reason="r",
                             input_subject="s", file_id="f1", content_hash=h, causation=3),
         f"photos.content.{h}.DerivationFailed", "DerivationFailed:thumbnail:3"),
        (ev.DerivationFailed(stage="media", operation="exif", reason="r",
                             input_subject="s", file_id="f1", content_hash=h, causation=3),
         f"photos.content.{h}.DerivationFailed", "DerivationFailed:exif:3"),
    ]  # fmt: skip
    for event, subject, msg_id in cases:
        assert (event.subject(), event.default_msg_id()) == (subject, msg_id)


def test_media_facts_have_the_extractor_fields_and_the_projected_columns() -> None:
    """``ExifExtracted.fields`` is typed by the core's MediaFacts: the extractor's
    ExifFacts (less its warnings, plus the sidecar's date) and every column the
    projector fills from it are fields of it."""
    import dataclasses
    import sys

    from eventsvc.media.exif import ExifFacts
    from projections.projector import APPLIERS

    extractor = {f.name for f in dataclasses.fields(ExifFacts)} - {"warnings"}
    assert set(ev.MediaFacts.model_fields) == extractor | {"xmp_sidecar_date"}
    columns = sys.modules[APPLIERS[ev.ExifExtracted].__module__]._MEDIA_COLUMNS  # type: ignore[attr-defined]
    assert columns and set(columns) <= set(ev.MediaFacts.model_fields)
    with pytest.raises(ValidationError):
        ev.MediaFacts(make="x", colour="red")  # type: ignore[call-arg]
