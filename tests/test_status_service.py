"""The JetStream boundary and the status service, against a real nats-server: readers
never change the stream, deliveries and consumer stats through the log module, the
pipeline state when NATS is gone, and no nats-py outside the boundary."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventsvc.core.errors import LogError
from eventsvc.core.events import FileSeen
from eventsvc.core.ids import file_id
from eventsvc.core.log import ConsumerSpec, EventLog
from eventsvc.server import EmbeddedNats
from projections.status import pipeline_state
from tests.harness import wait_until

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, url: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsvc", *args, "--nats-url", url, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _seen(i: int) -> FileSeen:
    return FileSeen(
        library_id="lib",
        file_id=file_id("lib", f"{i}.jpg".encode()),
        path=f"{i}.jpg",
        size=i,
        mtime_ns=i,
        media_kind="image",
    )


async def test_readers_never_change_the_stream(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    """Issue 17 item 3: `eventsvc status` and `events` (and one-shot writers) left an
    operator's stream configuration alone; only `setup` (and `up`) update it."""
    admin = await EventLog.connect(nats_server.url)
    try:
        cfg = dataclasses.replace(
            admin.stream_config(),
            description="made by an operator",
            max_msgs_per_subject=1000,
            duplicate_window=60.0,
        )
        await admin.js.add_stream(cfg)
        await admin.publish(_seen(1))
        before = (await admin.js.stream_info(admin.stream)).config.as_dict()
        data = tmp_path / "data"
        status = _cli("status", "--json", url=nats_server.url, data=data)
        assert status.returncode == 0, status.stderr
        out = json.loads(status.stdout)
        assert out["stream"]["last_seq"] == 1 and out["stream"]["exists"] is True
        assert set(out["stream"]["differs"]) == {
            "description", "duplicate_window", "max_msgs_per_subject"
        }  # fmt: skip
        events = _cli("events", url=nats_server.url, data=data)
        assert events.returncode == 0, events.stderr
        assert [json.loads(line)["type"] for line in events.stdout.splitlines()] == ["FileSeen"]
        after = (await admin.js.stream_info(admin.stream)).config.as_dict()
        assert after == before
        assert after["description"] == "made by an operator"
        # the admin's explicit `setup` is what brings it to this version's config
        setup = _cli("setup", url=nats_server.url, data=data)
        assert setup.returncode == 0, setup.stderr
        now = (await admin.js.stream_info(admin.stream)).config.as_dict()
        assert now["description"] != "made by an operator"
        status = _cli("status", "--json", url=nats_server.url, data=data)
        assert "differs" not in json.loads(status.stdout)["stream"]
    finally:
        await admin.close()


async def test_a_reader_does_not_create_a_missing_stream(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    status = _cli("status", "--json", url=nats_server.url, data=tmp_path / "data")
    assert status.returncode == 0, status.stderr
    stream = json.loads(status.stdout)["stream"]
    assert stream["exists"] is False and "does not exist" in stream["error"]
    lg = await EventLog.connect(nats_server.url)
    try:
        assert (await lg.stream_state()).exists is False
    finally:
        await lg.close()


async def test_deliveries_and_consumer_stats(event_log: EventLog) -> None:
    for i in range(3):
        await event_log.publish(_seen(i))
    spec = ConsumerSpec(durable="probe", filter_subjects=("photos.file.*.FileSeen",))
    sub = await event_log.pull(spec)
    first, second, third = await sub.fetch(3, timeout=5)
    assert [m.seq for m in (first, second, third)] == [1, 2, 3]
    assert first.deliveries == 1 and first.headers["Eventsvc-Type"] == "FileSeen"
    await first.in_progress()
    await first.ack()
    await second.nak()  # again, at once
    await third.term()  # never again
    [again] = await sub.fetch(3, timeout=5)
    assert (again.seq, again.deliveries) == (2, 2)
    await again.ack()
    assert await sub.fetch(1, timeout=0.3) == []
    stats = await event_log.consumer_stats("probe")
    assert stats is not None and stats.durable
    assert (stats.pending, stats.ack_pending, stats.redelivered) == (0, 0, 0)
    assert stats.last_delivered == 3
    assert [c.name for c in await event_log.consumers()] == ["probe"]
    assert await event_log.consumer_stats("nobody") is None
    assert await event_log.delete_consumer("probe") is True
    assert await event_log.delete_consumer("probe") is False
    with pytest.raises(LogError):  # already acked: the server's answer, translated
        await again.ack()
    await sub.unsubscribe()


async def test_pipeline_state_without_nats(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    lg = await EventLog.connect(server.url)
    try:
        await lg.ensure_stream()
        await lg.publish(_seen(1))
        assert lg.connected and lg.connected_since is not None
        assert lg.connected_since <= time.time()
        state = await pipeline_state(lg, ("gen-1", 5))  # a checkpoint past the stream
        assert state.stream is not None and state.stream.last_seq == 1
        assert state.projector.lag == 0 and state.consumers_error is None
        server.stop()
        await wait_until(lambda: not lg.connected, 10)
        assert lg.connected_since is None
        state = await pipeline_state(lg, ("gen-1", 1), timeout=0.5)
        assert state.connected is False and state.nats_error == "NATS connection lost"
        assert state.stream is None and "cannot read stream" in (state.stream_error or "")
        assert state.consumers == () and "cannot list" in (state.consumers_error or "")
        assert state.projector.lag is None
    finally:
        await lg.close()
        server.stop()


async def test_pipeline_state_of_no_log() -> None:
    state = await pipeline_state(None, (None, 0), why="no NATS URL configured")
    assert not state.connected and state.nats_error == "no NATS URL configured"
    assert state.consumers_error == "no NATS URL configured"


_BOUNDARY = {
    "eventsvc/core/log.py",
    "eventsvc/core/replay.py",
    "eventsvc/core/stream.py",
    "eventsvc/core/consumers.py",
    "eventsvc/core/acks.py",
}


def _imports_nats(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(
            a.name == "nats" or a.name.startswith("nats.") for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "nats" or node.module.startswith("nats."):
                return True
    return False


def test_only_the_log_module_imports_nats_py() -> None:
    found = {
        str(p.relative_to(ROOT))
        for package in ("eventsvc", "projections")
        for p in (ROOT / package).rglob("*.py")
        if _imports_nats(p)
    }
    assert found == _BOUNDARY


def test_no_module_reaches_into_the_connection() -> None:
    """``.nc`` / ``.js`` of an EventLog are the boundary's own."""
    leaks = []
    for package in ("eventsvc", "projections"):
        for p in (ROOT / package).rglob("*.py"):
            rel = str(p.relative_to(ROOT))
            if rel in _BOUNDARY:
                continue
            for node in ast.walk(ast.parse(p.read_text(), rel)):
                if isinstance(node, ast.Attribute) and node.attr in ("nc", "js"):
                    leaks.append(f"{rel}:{node.lineno}")
    assert leaks == []
