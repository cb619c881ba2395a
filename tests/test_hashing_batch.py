"""The hasher's batch mode (issue 18 goal 3): many FileSeen per fetch, their HashComputed
published together, inputs acked after their outputs; the one-message guarantees hold."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import blake3
import pytest

from eventsvc.components import make_worker
from eventsvc.core.errors import PublishError
from eventsvc.core.events import FileSeen, HashComputed
from eventsvc.core.ids import file_id
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.derive.hashing import MMAP_MIN, hash_file
from eventsvc.derive.worker import Worker
from tests.harness import Pipeline, running


def _digest(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def test_hash_file_small_and_large_agree_with_blake3(tmp_path: Path) -> None:
    for size in (0, 1, 15_000, MMAP_MIN - 1, MMAP_MIN + 5):
        p = tmp_path / f"f{size}.bin"
        p.write_bytes(os.urandom(size))
        res = hash_file(str(p))
        assert (res.content_hash, res.size) == (_digest(p), size)


async def test_batch_mode_hashes_every_file_once_with_failures_and_shared_content(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(150):  # several batches
        (lib / f"{i:03d}.jpg").write_bytes(i.to_bytes(4, "little") + os.urandom(2000))
    same = os.urandom(3000)  # one content, three locations: one subject, three events
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (lib / name).write_bytes(same)
    libs, _ = load_libraries([str(lib)])
    settings = settings.model_copy(update={"hash_batch": 64, "settle_seconds": 0.0})
    async with running(Pipeline(event_log, settings, libs), media=False) as p:
        assert isinstance(p.hasher, Worker) and p.hasher.many is not None
        assert p.hasher.batch_size == settings.max_in_flight // settings.hash_concurrency
        await p.scanner.tick(full=True)
        await p.settled()
        # a FileSeen for a location that is a directory now: its own DerivationFailed
        (lib / "dir.jpg").mkdir()
        bad = FileSeen(library_id=libs[0].id, file_id=file_id(libs[0].id, b"dir.jpg"),
                       path="dir.jpg", size=1, mtime_ns=1, media_kind="image")  # fmt: skip
        await event_log.publish(bad)
        await p.settled()
        hashed = [e for _, e in await p.events("HashComputed")]
        failed = [e for _, e in await p.events("DerivationFailed")]
        seen = await p.events("FileSeen")
        assert p.hasher.stats.done == 153 and p.hasher.stats.failed == 1
    assert len(seen) == 154
    assert len(hashed) == 153
    by_path = {h.path: h for h in hashed}
    assert len(by_path) == 153
    for path, h in by_path.items():
        assert h.content_hash == _digest(lib / path)
    assert {by_path[n].content_hash for n in ("a.jpg", "b.jpg", "c.jpg")} == {
        _digest(lib / "a.jpg")
    }
    assert [f.file_id for f in failed] == [bad.file_id] and failed[0].permanent
    # each HashComputed names the FileSeen it came from
    seqs = {e.file_id: s for s, e in seen}
    assert all(h.causation == seqs[h.file_id] for h in hashed)


async def test_publish_batch_again_stores_nothing_new(event_log: EventLog) -> None:
    """A crash between publishing a batch and acking its inputs only repeats the work:
    the repeated batch finds every event (Msg-Id and the subject guard), even two on one

    subject, in order."""
    events = [
        HashComputed(content_hash=f"{i % 3:064x}", library_id="lib-x", file_id=f"f{i}",
                     path=f"{i}.jpg", size=i, mtime_ns=i, media_kind="image", causation=i + 1)
        for i in range(6)
    ]  # fmt: skip
    first = await event_log.publish_batch(events)
    assert [p.duplicate for p in first] == [False] * 6
    assert sorted(p.seq for p in first) == list(range(1, 7))
    # the second event on a subject comes after the first (the guarded path, in order)
    assert first[3].seq > first[0].seq and first[4].seq > first[1].seq
    last = await event_log.last_seq()
    again = await event_log.publish_batch(events)
    assert [p.duplicate for p in again] == [True] * 6
    assert [p.seq for p in again] == [p.seq for p in first]
    assert await event_log.last_seq() == last


@pytest.mark.parametrize("batch", [1, 64])
async def test_hasher_worker_is_built_for_its_batch_setting(
    tmp_path: Path, event_log: EventLog, settings: Settings, batch: int
) -> None:
    libs, _ = load_libraries([str(tmp_path)])
    worker = await make_worker(
        "hasher", event_log, settings.model_copy(update={"hash_batch": batch}), libs
    )
    assert isinstance(worker, Worker)
    assert (worker.many is not None) == (batch > 1)


async def test_publish_batch_refused_raises_at_once(event_log: EventLog) -> None:
    """A refused publish (here: no stream for the subject) is a PublishError, not an ack
    that never comes (nats-py's publish_async hangs on such answers)."""
    other = dataclasses.replace(event_log, prefix="elsewhere")
    ev = HashComputed(content_hash="ab" * 32, library_id="lib-x", file_id="f1", path="1.jpg",
                      size=1, mtime_ns=1, media_kind="image", causation=1)  # fmt: skip
    t0 = time.monotonic()
    with pytest.raises(PublishError):
        await other.publish_batch([ev])
    assert time.monotonic() - t0 < other.PUBLISH_STALL / 2
