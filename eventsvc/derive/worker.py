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
from typing import TypeVar

from eventsvc.core import tracing
from eventsvc.core.errors import (
    DecodeError,
    LogClosed,
    LogError,
    PermanentError,
    TransientError,
    out_of_space,
)
from eventsvc.core.events import DerivationFailed, Event, decode
from eventsvc.core.log import ConsumerSpec, Delivery, EventLog, PullConsumer
from eventsvc.core.metrics import ProcessMetrics

__all__ = ["Handler", "ManyHandler", "WithBackground", "Worker", "WorkerStats"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _Stopped(Exception):
    """The worker stopped while a message waited for room."""


Handler = Callable[[Event, int], Awaitable[list[Event]]]
"""(event, its stream sequence) -> events to publish. Raise PermanentError to record a
failure at once, anything else to retry with back-off up to max_deliver (subclasses may
hold a message instead: see :mod:`eventsvc.derive.hold`)."""

ManyHandler = Callable[[list[tuple[Event, int]]], Awaitable[list[list[Event] | Exception]]]
"""A batch of (event, its stream sequence) -> for each, in order, the events to publish
or the exception its handling raised (read as a Handler's raise would be)."""


@dataclass
class WorkerStats:
    done: int = 0
    published: int = 0
    failed: int = 0
    retried: int = 0
    last_error: str | None = None
    recent_failures: list[str] = field(default_factory=list)
    paused: str | None = None
    """Why the stage waits (a full disk, a full JetStream store, the log away); None
    while it works. It resumes by itself (issue 17 item 2)."""
    paused_since: float | None = None


SPACE_RECHECK = 10.0
"""Longest wait (seconds) between tries while the disk is full or the log is away."""


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
        many: ManyHandler | None = None,
    ) -> None:
        self.name = name
        self.event_log = event_log
        self.spec = spec
        self.handler = handler
        self.concurrency = max(1, concurrency)
        self.batch = max(1, batch)
        self.accepts = accepts
        self.many = many
        """Batch mode (small inputs: per-message overhead dominates): up to ``concurrency``
        batches of up to ``batch`` messages in hand, each handled by one ``many`` call,
        its outputs published together (:meth:`EventLog.publish_batch`) and its inputs
        acked after them. Not while tracing is on (a span per message needs ``handler``)."""
        self.stats = WorkerStats()
        self.sem = asyncio.Semaphore(self.concurrency)
        """Handlers running at once (messages fetched beyond it wait their turn)."""
        self._stop = asyncio.Event()

    STOP_WAIT = 2.0
    """Seconds a stopping worker waits for the messages in hand (a publish to a server
    that is away waits up to its timeout): the rest are cancelled, un-acked, and come
    back after ack_wait (nothing is lost; at most the work is repeated)."""

    @property
    def heartbeat_period(self) -> float:
        """Seconds between ``in_progress`` (+WPI) signals: well under ``ack_wait``, the
        shortest ack wait the consumer has (its back-off steps are never shorter)."""
        return max(self.spec.ack_wait / 3, 0.5)

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        sub = await self.event_log.pull(self.spec)
        sem = self.sem
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                await self._gate(stop)
                while self.stats.paused and tasks and not stop.is_set():
                    # no new work while paused: what is in hand retries by itself
                    await asyncio.wait(tasks, timeout=0.5)
                if stop.is_set():
                    break
                batched = self.many is not None and not tracing.enabled()
                room = self.batch - len(tasks)
                if batched:  # whole batches, at most ``concurrency`` in hand
                    room = self.batch_size if len(tasks) < self.concurrency else 0
                if room <= 0:
                    await asyncio.wait(tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    if batched:
                        msgs = await self._fetch_batch(sub, room, busy=bool(tasks))
                    else:
                        msgs = await sub.fetch(room, timeout=1.0)
                except LogClosed:
                    break
                except LogError as exc:
                    log.warning("%s: fetch failed (%r); retrying", self.name, exc)
                    await asyncio.sleep(1.0)
                    continue
                if batched and msgs:
                    t = asyncio.create_task(self._guarded_many(msgs))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                    continue
                for msg in msgs:
                    t = asyncio.create_task(self._guarded(msg, sem))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
        finally:
            if tasks:  # a bounded wait: what is not done comes back after ack_wait
                _, late = await asyncio.wait(tasks, timeout=self.STOP_WAIT)
                for t in late:
                    t.cancel()
                if late:
                    await asyncio.wait(late, timeout=1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.unsubscribe(), 1.0)

    @property
    def batch_size(self) -> int:
        """Messages per batch in batch mode: ``batch``, but never more in hand than the
        consumer lets out (``max_ack_pending``): a fetch asking for more than the server
        may deliver would wait for its whole timeout."""
        return max(1, min(self.batch, self.spec.max_ack_pending // self.concurrency))

    async def _fetch_batch(self, sub: PullConsumer, room: int, *, busy: bool) -> list[Delivery]:
        """Up to ``room`` messages without waiting for a full batch: idle, wait (up to
        1 s) for the first one, then take what else is there; busy, a short look only."""
        if busy:
            return await sub.fetch(room, timeout=self.BUSY_FETCH)
        first = await sub.fetch(1, timeout=1.0)
        if not first or room == 1:
            return first
        return first + await sub.fetch(room - 1, timeout=self.BUSY_FETCH)

    BUSY_FETCH = 0.05
    """Seconds a batch-mode fetch waits while other batches are in hand (a fetch that
    finds nothing waits its whole timeout for a full batch)."""

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
            await self._handle_one(msg, event, seq, deliveries, t0)
        finally:
            heartbeat.cancel()

    async def _handle_one(
        self, msg: Delivery, event: Event, seq: int, deliveries: int, t0: float
    ) -> None:
        try:
            outputs = await self._until_room(lambda: self.handler(event, seq))
        except _Stopped:
            await msg.nak(delay=self._backoff(1))  # handled again after the restart
            return
        except Exception as exc:
            self._observe("error", t0)
            await self._failed(msg, event, seq, deliveries, exc)
            return
        self._observe("ok", t0)
        try:
            for out in outputs:
                await self._until_room(lambda out=out: self.event_log.publish(out), publish=True)
                self.stats.published += 1
        except _Stopped:
            await msg.nak(delay=self._backoff(1))  # published again (once-only) after restart
            return
        await msg.ack()
        self.stats.done += 1

    async def _failed(
        self, msg: Delivery, event: Event, seq: int, deliveries: int, exc: Exception
    ) -> None:
        """A handler raised ``exc`` for ``msg``: recorded at once (PermanentError), held
        (a subclass's choice) or retried with back-off up to max_deliver."""
        if isinstance(exc, PermanentError):
            await self._fail(msg, seq, deliveries, event, str(exc), True)
            return
        if await self._held(msg, exc):  # transient by default: retry with back-off
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

    # ------------------------------------------------------------ batch mode

    async def _guarded_many(self, msgs: list[Delivery]) -> None:
        try:
            await self._batch(msgs)
        except Exception:
            log.exception("%s: unexpected error handling a batch of %d", self.name, len(msgs))

    async def _batch(self, msgs: list[Delivery]) -> None:
        """One batch: decode, one ``many`` call, publish the outputs together, then ack
        the inputs whose outputs are stored (a crash in between only repeats work:
        Msg-Id and the subject guards of ``publish`` keep the log free of repeats).
        Failures are handled per message, as in the one-message path."""
        assert self.many is not None
        many = self.many
        done: list[Delivery] = []  # to ack
        work: list[tuple[Delivery, Event, int, int]] = []
        for msg in msgs:
            seq, deliveries = msg.seq, msg.deliveries
            try:
                event = decode(msg.data, msg.headers)
            except DecodeError as exc:
                await self._fail(msg, seq, deliveries, None, f"undecodable event: {exc}", True)
                continue
            if self.accepts and not isinstance(event, self.accepts):
                done.append(msg)
                continue
            work.append((msg, event, seq, deliveries))
        heartbeat = asyncio.create_task(self._keep_alive_all([w[0] for w in work]))
        try:
            if work:
                await self._batch_work(work, many, done)
        finally:
            heartbeat.cancel()
        for msg in done:
            await msg.ack()

    async def _batch_work(
        self, work: list[tuple[Delivery, Event, int, int]], many: ManyHandler,
        done: list[Delivery],
    ) -> None:  # fmt: skip
        log.debug("%s: deriving from %d messages (seq %d..)", self.name, len(work), work[0][2])
        t0 = time.perf_counter()
        inputs = [(event, seq) for _, event, seq, _ in work]
        try:
            results = await self._until_room(lambda: many(inputs))
        except _Stopped:
            for msg, *_ in work:
                await msg.nak(delay=self._backoff(1))
            return
        except Exception as exc:  # the whole batch failed: each message as if alone
            results = [exc] * len(work)
        if len(results) != len(work):
            raise RuntimeError(f"{self.name}: {len(results)} results for {len(work)} inputs")
        each = (time.perf_counter() - t0) / len(work)
        ok: list[Delivery] = []
        outputs: list[Event] = []
        for (msg, event, seq, deliveries), res in zip(work, results, strict=True):
            if isinstance(res, Exception):
                self._observe_each("error", each)
                await self._failed(msg, event, seq, deliveries, res)
            else:
                self._observe_each("ok", each)
                ok.append(msg)
                outputs.extend(res)
        if outputs:
            try:
                await self._until_room(lambda: self.event_log.publish_batch(outputs), publish=True)
            except _Stopped:
                for msg in ok:
                    await msg.nak(delay=self._backoff(1))  # published again (once-only)
                return
            self.stats.published += len(outputs)
        done.extend(ok)
        self.stats.done += len(ok)

    async def _keep_alive_all(self, msgs: list[Delivery]) -> None:
        """:meth:`_keep_alive` for every message of a batch."""
        while True:
            await asyncio.sleep(self.heartbeat_period)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    def _observe_each(self, outcome: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_stage(self.name, outcome, seconds)

    def _observe(self, outcome: str, t0: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_stage(self.name, outcome, time.perf_counter() - t0)

    async def _until_room(self, call: Callable[[], Awaitable[_T]], *, publish: bool = False) -> _T:
        """``call()``; while it fails for want of room (a full disk, a full JetStream
        store) or, for a ``publish``, with the log away, the stage pauses: the message
        stays held (its heartbeat resets the ack timer, no delivery is spent, nothing is
        recorded) and ``call`` is tried again (1 s doubling to ``SPACE_RECHECK``) until
        it works or the worker stops (``_Stopped``)."""
        delay = 1.0
        while True:
            try:
                result = await call()
            except LogClosed:
                raise
            except Exception as exc:
                why = out_of_space(exc)
                if why is None and publish and isinstance(exc, LogError):
                    why = f"cannot publish: {exc}"
                if why is None:
                    raise
                self._room_pause(why)
            else:
                self._room_resume()
                return result
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                raise _Stopped
            delay = min(delay * 2, SPACE_RECHECK)

    def _room_pause(self, why: str) -> None:
        if self.stats.paused is None:
            self.stats.paused_since = time.time()
            log.error("%s: paused, waiting for room (retrying by itself): %s", self.name, why)
        elif self.stats.paused != why:
            log.warning("%s: still paused: %s", self.name, why)
        self.stats.paused = why
        self.stats.last_error = why

    def _room_resume(self) -> None:
        if self.stats.paused is not None:
            log.warning("%s: resumed after %.0fs paused (%s)", self.name,
                        time.time() - (self.stats.paused_since or time.time()),
                        self.stats.paused)  # fmt: skip
            self.stats.paused = None
            self.stats.paused_since = None

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
