"""Keeping the embedded nats-server usable (issue 17 item 2): JetStream disables itself
when its store's disk fills up and stays disabled after space returns; a server process
that died does not come back by itself. While `eventsvc up` runs its own server, this
watchdog restarts it in both cases (same port and store: the clients reconnect)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from eventsvc.core.log import EventLog
from eventsvc.server import EmbeddedNats

__all__ = ["ServerWatchdog", "has_room"]

log = logging.getLogger(__name__)

ROOM_PROBE = 1 << 20
"""Bytes written (then removed) to tell whether the store's disk has room again."""


def has_room(directory: Path, size: int = ROOM_PROBE) -> bool:
    probe = directory / ".room-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written = 0
            chunk = b"\0" * min(size, 1 << 16)
            while written < size:
                written += os.write(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


class ServerWatchdog:
    """Checks every ``period`` seconds; restarts the server when it died, or when
    JetStream has been unusable for ``grace`` seconds while the disk has room."""

    name = "nats-server"

    def __init__(
        self, server: EmbeddedNats, event_log: EventLog, *, period: float = 2.0,
        grace: float = 6.0, publishers: list[EventLog] | None = None,
        busy_grace: float = 120.0,
    ) -> None:  # fmt: skip
        self.server = server
        self.event_log = event_log
        self.publishers = publishers or [event_log]
        """Connections whose failing publishes say the stream is stuck (JetStream
        answers, but its store failed when the disk filled up)."""
        self.period = period
        self.grace = grace
        self.busy_grace = busy_grace
        """Grace for a JetStream that answers too slowly (timed out) while the server
        runs: busy, not broken (issue 18: on a large stream a consumer create takes
        seconds on a loaded machine; a restart only adds a stream restore to the load)."""
        self.trouble: tuple[str, float] | None = None
        """(why, since) while JetStream is unusable; None while it works."""
        self.restarts = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period)
            if stop.is_set():
                return
            await self.check()

    async def check(self) -> None:
        if not self.server.running:
            self._note("the embedded nats-server is not running")
            await self._restart("it was not running")
            return
        why = await self.event_log.jetstream_trouble()
        if why is None:
            stuck = [lg.state.publish_failed for lg in self.publishers if lg.state.publish_failed]
            if stuck and min(t for _, t in stuck) < time.time() - self.grace:
                why = f"publishes fail: {stuck[0][0]}"
        if why is None:
            if self.trouble is not None:
                log.warning("nats-server: JetStream works again (%s)", self.trouble[0])
            self.trouble = None
            return
        if why == "not connected":
            return  # the client reconnects by itself; nothing to say about JetStream
        self._note(f"JetStream unusable: {why}")
        assert self.trouble is not None
        grace = self.busy_grace if why == "timed out" else self.grace
        if time.time() - self.trouble[1] < grace and not why.startswith("publishes"):
            return
        store = self.server.store_dir
        if not await asyncio.to_thread(has_room, store):
            return  # still full: restarting would not help
        await self._restart(f"JetStream unusable for {time.time() - self.trouble[1]:.0f}s ({why})"
                            " and its disk has room again")  # fmt: skip

    def _note(self, why: str) -> None:
        if self.trouble is None:
            log.error("nats-server: %s", why)
            self.trouble = (why, time.time())
        else:
            self.trouble = (why, self.trouble[1])

    async def _restart(self, why: str) -> None:
        log.warning("restarting the embedded nats-server: %s", why)
        try:  # on the loop's thread: the server dies with the thread that started it
            self.server.restart()
        except Exception as exc:  # ServerError, OSError: tried again next period
            log.error("cannot restart the embedded nats-server: %s", exc)
            return
        self.restarts += 1
        for lg in self.publishers:  # judged again on the next publishes
            lg.state.publish_failed = None
