"""The deriver runtime: explicit-ack pull consumption, bounded in flight, back-off,
and a DerivationFailed when a message is given up on. Outputs are published before
the input is acked, so a crash between the two only repeats work (deduped by Msg-Id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from eventsvc.core import tracing
from eventsvc.core.errors import DecodeError, LogClosed, LogError, PermanentError, TransientError
from eventsvc.core.events import DerivationFailed, Event, decode
from eventsvc.core.log import ConsumerSpec, Delivery, EventLog
from eventsvc.core.metrics import ProcessMetrics

__all__ = ["Handler", "WithBackground", "Worker", "WorkerStats"]

log = logging.getLogger(__name__)

Handler = Callable[[Event, int], Awaitable[list[Event]]]
"""(event, its stream sequence) -> events to publish. Raise PermanentError to record a
failure at once, anything else to retry with back-off up to max_deliver (subclasses may
hold a message instead: see :mod:`eventsvc.derive.hold`)."""


@dataclass
class WorkerStats:
    done: int = 0
    published: int = 0
    failed: int = 0
    retried: int = 0
    last_error: str | None = None
    recent_failures: list[str] = field(default_factory=list)


class Worker:
    metrics: ProcessMetrics | None = None
    """Where the handler's time per message is observed (set by ``ProcessMetrics.add_worker``)."""

    def __init__(
        self,
        name: str,
        event_log: EventLog,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        concurrency: int = 2,
        batch: int = 32,
        accepts: tuple[type[Event], ...] = (),
    ) -> None:
        self.name = name
        self.event_log = event_log
        self.spec = spec
        self.handler = handler
        self.concurrency = max(1, concurrency)
        self.batch = max(1, batch)
        self.accepts = accepts
        self.stats = WorkerStats()
        self.sem = asyncio.Semaphore(self.concurrency)
        """Handlers running at once (messages fetched beyond it wait their turn)."""

    @property
    def heartbeat_period(self) -> float:
        """Seconds between ``in_progress`` (+WPI) signals: well under ``ack_wait``, the
        shortest ack wait the consumer has (its back-off steps are never shorter)."""
        return max(self.spec.ack_wait / 3, 0.5)

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self.event_log.pull(self.spec)
        sem = self.sem
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                await self._gate(stop)
                if stop.is_set():
                    break
                room = self.batch - len(tasks)
                if room <= 0:
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(room, timeout=1.0)
                except LogClosed:
                    break
                except LogError as exc:
                    log.warning("%s: fetch failed (%r); retrying", self.name, exc)
                    await asyncio.sleep(1.0)
                    continue
                for msg in msgs:
                    t = asyncio.create_task(self._guarded(msg, sem))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _gate(self, stop: asyncio.Event) -> None:
        """Called before each fetch: a subclass that must not consume waits here."""

    async def _held(self, msg: Delivery, exc: Exception) -> bool:
        """Whether a subclass keeps this failed message (un-acked) instead of the
        retry/failure below; the base worker never does."""
        return False

    async def _guarded(self, msg: Delivery, sem: asyncio.Semaphore) -> None:
        async with sem:
            try:
                await self._one(msg)
            except Exception:
                log.exception("%s: unexpected error handling %s", self.name, msg.subject)

    async def _one(self, msg: Delivery) -> None:
        seq = msg.seq
        deliveries = msg.deliveries
        try:
            event = decode(msg.data, msg.headers)
        except DecodeError as exc:
            await self._fail(msg, seq, deliveries, None, f"undecodable event: {exc}", True)
            return
        if self.accepts and not isinstance(event, self.accepts):
            await msg.ack()
            return
        with tracing.derivation(self.name, seq, msg.subject, msg.headers):
            await self._derive(msg, event, seq, deliveries)

    async def _derive(self, msg: Delivery, event: Event, seq: int, deliveries: int) -> None:
        log.debug("%s: deriving from seq %d (%s)", self.name, seq, msg.subject)
        heartbeat = asyncio.create_task(self._keep_alive(msg))
        t0 = time.perf_counter()
        try:
            outputs = await self.handler(event, seq)
        except PermanentError as exc:
            self._observe("error", t0)
            await self._fail(msg, seq, deliveries, event, str(exc), True)
            return
        except Exception as exc:  # transient by default: retry with back-off
            self._observe("error", t0)
            if await self._held(msg, exc):
                return
            reason = str(exc) or type(exc).__name__
            if deliveries >= self.spec.max_deliver:
                await self._fail(
                    msg,
                    seq,
                    deliveries,
                    event,
                    f"gave up after {deliveries} tries: {reason}",
                    not isinstance(exc, TransientError),
                )
                return
            delay = self._backoff(deliveries)
            self.stats.retried += 1
            self.stats.last_error = reason
            log.warning("%s: seq %d failed (%s); retry in %.0fs", self.name, seq, reason, delay)
            await msg.nak(delay=delay)
            return
        finally:
            heartbeat.cancel()
        self._observe("ok", t0)
        for out in outputs:
            await self.event_log.publish(out)
            self.stats.published += 1
        await msg.ack()
        self.stats.done += 1

    def _observe(self, outcome: str, t0: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_stage(self.name, outcome, time.perf_counter() - t0)

    def _backoff(self, deliveries: int) -> float:
        steps = self.spec.backoff or (1.0,)
        return float(steps[min(deliveries - 1, len(steps) - 1)])

    async def _keep_alive(self, msg: Delivery) -> None:
        """Tell the server we are still at it, so long jobs are not redelivered."""
        while True:
            await asyncio.sleep(self.heartbeat_period)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _fail(
        self,
        msg: Delivery,
        seq: int,
        deliveries: int,
        event: Event | None,
        reason: str,
        permanent: bool,
    ) -> None:
        self.stats.failed += 1
        self.stats.last_error = reason
        self.stats.recent_failures = [*self.stats.recent_failures[-19:], reason]
        log.warning("%s: recording failure for seq %d: %s", self.name, seq, reason)
        failed = DerivationFailed(
            stage=self.name,
            operation=self.name,
            reason=reason,
            permanent=permanent,
            input_subject=msg.subject,
            deliveries=deliveries,
            causation=seq,
            file_id=getattr(event, "file_id", None),
            content_hash=getattr(event, "content_hash", None),
            library_id=getattr(event, "library_id", None),
        )
        await self.event_log.publish(failed)
        await msg.ack()


class WithBackground:
    """Mixed into a Worker: another worker beside it (``background``: its re-derivation
    after a deriver version change, :mod:`eventsvc.derive.rederive`), run and stopped
    with it; the background worker never takes this one down with it."""

    background: Worker | None = None

    async def run(self, stop: asyncio.Event) -> None:
        main = super().run(stop)  # type: ignore[misc]
        if self.background is None:
            await main
            return
        await asyncio.gather(main, self._background(self.background, stop))

    async def _background(self, worker: Worker, stop: asyncio.Event) -> None:
        try:
            await worker.run(stop)
        except Exception:
            log.exception("%s: background re-derivation stopped", worker.name)
