"""A face back-end that goes away mid-run, for longer than max_deliver x the nak delay,
twice: the faces worker pauses and says why, holds its messages without spending
deliveries (real nats-server), and finishes every image when the back-end is back. An
error about one input (not the back-end) still takes the ordinary retry-then-record path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from PIL import Image

from eventsvc.components import faces_spec
from eventsvc.core.errors import BackendUnavailable
from eventsvc.core.inference import DetectedFace, ModelInfo
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Library, Settings
from eventsvc.derive.faces import FacesDeriver, FacesWorker
from eventsvc.server import EmbeddedNats
from tests.harness import Pipeline, make_jpeg, running, wait_until

POISON_WIDTH = 77
"""The fake back-end cannot handle images this wide: an error about the input."""


class FlakyHost:
    """A FaceBackend (the product's protocol) on a host that can go away: while ``down``
    every call raises BackendUnavailable, as the HTTP client does after its retries."""

    def __init__(self) -> None:
        self.down: str | None = None
        self.info_calls = 0

    async def info(self) -> ModelInfo:
        self.info_calls += 1
        if self.down:
            raise BackendUnavailable(self.down)
        return ModelInfo(task="faces", name="fake", version="fake-1", dim=2)

    async def detect(self, images: Sequence[Image.Image]) -> list[list[DetectedFace]]:
        if self.down:
            raise BackendUnavailable(self.down)
        if any(img.width == POISON_WIDTH for img in images):
            raise RuntimeError("the detector chokes on this image")
        return [[] for _ in images]

    async def aclose(self) -> None:
        return None


async def _faces_done(p: Pipeline) -> set[str]:
    return {e.content_hash for _, e in await p.events("FacesDetected")}


async def _failures(p: Pipeline) -> list[Any]:
    return [e for _, e in await p.events("DerivationFailed") if e.stage == "faces"]


async def _count(p: Pipeline, etype: str, n: int) -> bool:
    return len(await p.events(etype)) >= n


async def _nothing_to_redeliver(event_log: EventLog, s: Settings) -> None:
    """Another client of the durable gets nothing: the held messages' ack timers were
    reset (+WPI), so JetStream has nothing to hand out again."""
    sub = await event_log.js.pull_subscribe_bind("faces", stream=s.stream)
    try:
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await sub.fetch(1, timeout=s.ack_wait)
    finally:
        await sub.unsubscribe()


async def test_back_end_outages_hold_messages_and_spend_no_deliveries(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    root = tmp_path / "lib"
    seed = iter(range(1, 100))
    for _ in range(2):
        make_jpeg(root / f"first{next(seed)}.jpg", next(seed))
    lib = Library(id="l", name="l", root=root)
    s = settings.model_copy(update={"workers": ["hasher"], "faces_recheck_interval": 0.3})
    host = FlakyHost()
    roots = LibraryRoots([lib])
    worker = FacesWorker(
        event_log, faces_spec(s), FacesDeriver(roots, event_log, host, 256),
        concurrency=3, recheck_interval=s.faces_recheck_interval,
    )  # fmt: skip
    assert worker.batch >= 4  # all of an outage's images are fetched and held at once
    stop = asyncio.Event()
    pipe = Pipeline(event_log, s, [lib])
    async with running(pipe, media=False, projector=False) as p:
        task = asyncio.create_task(worker.run(stop))
        try:
            await p.scanner.tick(full=True)
            await wait_until(lambda: worker.stats.images == 2, 30)
            # Longer than the old nak delays of all deliveries, and than ack_wait.
            outage = max(s.max_deliver * max(s.backoff), 1.5 * s.ack_wait)
            for cycle, reason in enumerate(("connection refused", "HTTP 502: bad gateway")):
                if cycle == 0:
                    # The worker stopped (idle, no pull request left on the server) while
                    # the outage's files are hashed: its first fetch then takes them all,
                    # so every message is held and none is left to hand out but a redelivery.
                    stop.set()
                    await task

                    async def idle() -> bool:
                        ci = await event_log.js.consumer_info(s.stream, "faces")
                        return ci.num_waiting == 0 and ci.num_ack_pending == 0

                    await wait_until(idle, 30)
                host.down = reason
                retried, failures = worker.stats.retried, len(await _failures(p))
                for i in range(3):
                    make_jpeg(root / f"c{cycle}-{i}.jpg", next(seed))
                if cycle == 0:
                    make_jpeg(root / "poison.jpg", 99, size=(POISON_WIDTH, 50))
                await p.scanner.tick(full=True)
                if cycle == 0:
                    await wait_until(lambda: _count(p, "HashComputed", 6), 30)
                    stop = asyncio.Event()
                    task = asyncio.create_task(worker.run(stop))
                # What the worker holds is what its first fetch of the outage got (it
                # fetches nothing more while paused): all 4 in cycle 0, 1 to 3 in cycle 1
                # as the hasher's pace had it. Wait until every new file is hashed and the
                # consumer's un-acked count agrees with the worker's.
                hashed = 6 + 3 * cycle

                async def settled(hashed: int = hashed) -> bool:
                    if worker.stats.held < 1 or len(await p.events("HashComputed")) < hashed:
                        return False
                    ci = await event_log.js.consumer_info(s.stream, "faces")
                    return bool(ci.num_ack_pending == worker.stats.held)

                await wait_until(settled, 30)
                held = worker.stats.held
                assert worker.paused and reason in (worker.stats.model_error or "")

                async def shown(held: int = held, reason: str = reason) -> bool:
                    st = await event_log.get_status("worker.faces")
                    return bool(st and reason in (st["model_error"] or "") and st["held"] == held)

                await wait_until(shown, 20)
                checks = host.info_calls
                await asyncio.sleep(outage if cycle == 0 else s.ack_wait)  # the outage itself
                if cycle == 0:  # all four held: nothing pending, and nothing redelivered
                    assert held == 4
                    ci = await event_log.js.consumer_info(s.stream, "faces")
                    assert ci.num_pending == 0
                    await _nothing_to_redeliver(event_log, s)
                assert host.info_calls > checks + 1  # it kept checking, with back-off
                ci = await event_log.js.consumer_info(s.stream, "faces")
                assert ci.num_ack_pending == held and ci.num_redelivered == 0
                assert worker.stats.retried == retried  # no nak: no delivery spent
                assert len(await _failures(p)) == failures
                host.down = None  # the host is back
                done = 2 + 3 * (cycle + 1)
                await wait_until(lambda done=done: worker.stats.images == done, 30)
                await wait_until(lambda: not worker.paused and worker.stats.held == 0, 10)
                if cycle == 0:  # the input error: retried as before, then recorded
                    await wait_until(lambda: _failures(p), 30)
                    (failed,) = await _failures(p)
                    assert failed.reason.startswith(f"gave up after {s.max_deliver} tries")
                    assert "chokes" in failed.reason and failed.deliveries == s.max_deliver
            assert len(await _failures(p)) == 1
            hashed = await p.events("HashComputed")
            assert len(await _faces_done(p)) == len(hashed) - 1 == 8
            ci = await event_log.js.consumer_info(s.stream, "faces")
            # One delivery per message, the poison's retries aside: the holds cost none.
            assert ci.delivered.consumer_seq == len(hashed) + s.max_deliver - 1
            assert ci.num_ack_pending == 0 and ci.num_pending == 0
            st = await event_log.get_status("worker.faces")
            assert st is not None and st["model_error"] is None and st["model"] == "fake-1"
        finally:
            stop.set()
            await task


async def test_a_worker_lost_while_holding_gives_its_messages_back_after_ack_wait(
    tmp_path: Path, event_log: EventLog, settings: Settings, nats_server: EmbeddedNats
) -> None:
    """No graceful stop (its connection dies, as when the process is killed): the held
    messages come back after ack_wait to the next worker, one delivery counted each."""
    root = tmp_path / "lib"
    lib = Library(id="l", name="l", root=root)
    s = settings.model_copy(update={"workers": ["hasher"], "faces_recheck_interval": 0.3})
    host = FlakyHost()

    def faces_worker(lg: EventLog, backend: FlakyHost) -> FacesWorker:
        deriver = FacesDeriver(LibraryRoots([lib]), lg, backend, 256)
        return FacesWorker(lg, faces_spec(s), deriver, concurrency=3, recheck_interval=0.3)

    doomed_log = await EventLog.connect(nats_server.url)
    doomed = faces_worker(doomed_log, host)
    stop = asyncio.Event()
    async with running(Pipeline(event_log, s, [lib]), media=False, projector=False) as p:
        task = asyncio.create_task(doomed.run(stop))
        try:
            await wait_until(lambda: not doomed.paused, 20)  # it found its model
            host.down = "connection refused"
            for i in range(3):
                make_jpeg(root / f"{i}.jpg", i + 1)
            await p.scanner.tick(full=True)

            async def settled() -> bool:  # all hashed; what it holds is what it fetched
                if doomed.stats.held < 1 or len(await p.events("HashComputed")) < 3:
                    return False
                ci = await event_log.js.consumer_info(s.stream, "faces")
                return bool(ci.num_ack_pending == doomed.stats.held)

            await wait_until(settled, 30)
            held = doomed.stats.held
            await doomed_log.nc.close()  # no drain, no nak: as if killed
        finally:
            stop.set()
            await task
        assert await p.events("DerivationFailed") == []
        heir = faces_worker(event_log, FlakyHost())
        stop = asyncio.Event()
        task = asyncio.create_task(heir.run(stop))
        try:
            await wait_until(lambda: heir.stats.images == 3, 30)
            ci = await event_log.js.consumer_info(s.stream, "faces")
            assert ci.delivered.consumer_seq == 3 + held  # the lost worker's deliveries count
            assert await p.events("DerivationFailed") == []
        finally:
            stop.set()
            await task
