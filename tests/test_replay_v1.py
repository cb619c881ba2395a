"""A log written before a change rebuilds to the same read model.

``tests/fixtures/v1_log.jsonl`` is the stream a small library left behind when it ran
through the real pipeline with the code of commit 1e845ef (v1 events: HashComputed
still with its perceptual-hash fields, hand-written subject keys and message ids);
``v1_readmodel.json`` is the read model its live projector made. See
``tests/fixtures/make_v1_log.py`` for how both were written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eventsvc.core import events as ev
from eventsvc.core.errors import DecodeError
from eventsvc.core.log import EventLog
from projections.projector import rebuild
from tests.fixtures.make_v1_log import LOG_FILE, SNAPSHOT_FILE, dump_tables

ROWS: list[dict[str, Any]] = [json.loads(line) for line in LOG_FILE.read_text().splitlines()]
SNAPSHOT: dict[str, Any] = json.loads(SNAPSHOT_FILE.read_text())


def v2_failures(table: list[list[Any]]) -> list[list[Any]]:
    """The one deliberate read-model change since the fixture was written, made here by
    hand (not by the code under test): DerivationFailed v2 says which stage failed and
    what it was doing, so ``failures`` rows gain ``operation`` after ``stage``; the media
    stage's v1 stages ``exif``/``thumbnail`` become stage ``media`` with that operation,
    any other v1 stage is its own operation."""
    cols, *rows = table
    assert cols[:2] == ["seq", "stage"] and "operation" not in cols
    out: list[list[Any]] = [[*cols[:2], "operation", *cols[2:]]]
    for seq, stage, *rest in rows:
        out.append([seq, "media" if stage in ("exif", "thumbnail") else stage, stage, *rest])
    return out


def want_tables() -> dict[str, Any]:
    tables = dict(SNAPSHOT["tables"])
    tables["failures"] = v2_failures(tables["failures"])
    return tables


ADDED_SINCE_V1 = {
    "LibraryAdded", "LibraryUpdated", "LibraryRemoved",  # issue 16, part 1
    "TagAdded", "TagRemoved", "Favorited", "Unfavorited",  # issue 16, part 2
}  # fmt: skip
"""Event types newer than the fixture (a v1 log cannot hold them)."""


def test_the_fixture_holds_every_event_type_at_version_1() -> None:
    bodies = [json.loads(r["data"]) for r in ROWS]
    assert {b["type"] for b in bodies} == set(ev.EVENT_TYPES) - ADDED_SINCE_V1
    assert {b["v"] for b in bodies} == {1}
    assert [r["seq"] for r in ROWS] == list(range(1, len(ROWS) + 1))


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['seq']}-{r['headers'].get(ev.HDR_TYPE)}")
def test_subjects_and_msg_ids_of_v1_events_are_unchanged(row: dict[str, Any]) -> None:
    """Every v1 body decodes (upcast where its type moved on) to an event whose subject
    and default ``Nats-Msg-Id`` are byte for byte those today's code gave it."""
    event = ev.decode(row["data"].encode(), row["headers"])
    assert event.subject() == row["subject"]
    assert event.default_msg_id() == row["default_msg_id"]
    if row["headers"]["Nats-Msg-Id"] == row["default_msg_id"]:
        assert ev.headers_for(event)["Nats-Msg-Id"] == row["headers"]["Nats-Msg-Id"]


@pytest.mark.parametrize("process", [False, True], ids=["in-process", "child-process"])
async def test_rebuilding_the_v1_log_gives_the_same_read_model(
    tmp_path: Path, event_log: EventLog, process: bool
) -> None:
    for row in ROWS:
        seq = await event_log.publish_raw(row["subject"], row["data"].encode(), row["headers"])
        assert seq == row["seq"]
    path, last = await rebuild(event_log, tmp_path / "readmodel", process=process)
    assert last == SNAPSHOT["last_seq"]
    got = dump_tables(path)
    want = want_tables()
    assert any(r[1:3] == ["media", "thumbnail"] for r in want["failures"][1:])  # it is exercised
    # tables added since v1 (issue 16: library_config, user_tags, favorites) exist and
    # hold nothing of a v1 log
    assert set(want) <= set(got)
    assert all(len(got[t]) == 1 for t in set(got) - set(want)), sorted(set(got) - set(want))
    for table in want:  # table by table, so a failure names the table
        assert got[table] == want[table], table


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['seq']}-{r['headers'].get(ev.HDR_TYPE)}")
def test_bodies_of_unchanged_versions_encode_to_the_same_bytes(row: dict[str, Any]) -> None:
    """The wire format moved only where a version moved: a body of a current version
    decodes and encodes back to the very bytes today's code wrote (HashComputed v1 goes
    to v2 without the fields v1 alone had)."""
    event = ev.decode(row["data"].encode(), row["headers"])
    body = json.loads(row["data"])
    if body["v"] == ev.CURRENT_VERSION[body["type"]]:
        assert ev.encode(event) == row["data"].encode()
    elif body["type"] == "HashComputed":
        assert event.v == 2  # type: ignore[attr-defined]
        again = json.loads(ev.encode(event))
        assert again == {**body, "v": 2}  # the hasher never set the fields v2 dropped
    else:
        assert body["type"] == "DerivationFailed" and event.v == 2  # type: ignore[attr-defined]
        again = json.loads(ev.encode(event))
        stage = "media" if body["stage"] in ("exif", "thumbnail") else body["stage"]
        assert again == {**body, "v": 2, "stage": stage, "operation": body["stage"]}


def test_the_hash_computed_upcaster_drops_only_the_v1_fields() -> None:
    """A v1 body from before the media deriver (the hasher then set perceptual hashes,
    dimensions, a decode error) decodes as v2 without them: ThumbnailReady carries them."""
    row = next(r for r in ROWS if json.loads(r["data"])["type"] == "HashComputed")
    old = {**json.loads(row["data"]), "phash": "00ff00ff00ff00ff", "dhash": "ff", "width": 3,
           "height": 2, "decode_error": "x"}  # fmt: skip
    got = ev.decode(json.dumps(old).encode(), {ev.HDR_TYPE: "HashComputed", ev.HDR_VERSION: "1"})
    assert isinstance(got, ev.HashComputed) and got.v == 2
    assert got == ev.decode(row["data"].encode(), row["headers"])
    with pytest.raises(DecodeError):  # v2 has no such fields: a v2 body with them is invalid
        ev.decode(json.dumps({**old, "v": 2}).encode())


@pytest.mark.parametrize(
    ("v1_stage", "stage", "operation"),
    [("exif", "media", "exif"), ("thumbnail", "media", "thumbnail"), ("faces", "faces", "faces"),
     ("playlist", "playlist", "playlist"), ("hasher", "hasher", "hasher")],
)  # fmt: skip
def test_the_derivation_failed_upcaster_splits_stage_and_operation(
    v1_stage: str, stage: str, operation: str
) -> None:
    """v1 wrote the media stage's operation as its stage: v2 has stage 'media' and the
    operation; subject and message id stay those v1 gave (keyed by the operation)."""
    row = next(r for r in ROWS if json.loads(r["data"]).get("stage") == "thumbnail")
    body = {**json.loads(row["data"]), "stage": v1_stage}
    got = ev.decode(json.dumps(body).encode(), {**row["headers"], ev.HDR_VERSION: "1"})
    assert isinstance(got, ev.DerivationFailed) and got.v == 2
    assert (got.stage, got.operation) == (stage, operation)
    assert got.subject() == row["subject"]
    assert got.default_msg_id() == f"DerivationFailed:{v1_stage}:{body['causation']}"
    with pytest.raises(DecodeError):  # a v2 body must say its operation… or its stage
        ev.decode(json.dumps({k: v for k, v in body.items() if k != "stage"} | {"v": 2}).encode())
