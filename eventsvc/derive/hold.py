"""Workers that need an inference back-end (CLIP, faces): pause, hold, resume.

A lost model or inference host says nothing about the content, so it must not spend
JetStream deliveries (a message that reaches ``max_deliver`` is recorded as failed).
When a handler raises ModelUnavailable or BackendUnavailable the worker *pauses*:

- the message stays un-acked and is *held*; every held message gets ``in_progress()``
  (+WPI: resets its ack timer, counts no delivery) every ``heartbeat_period`` seconds, well
  under ``ack_wait``; messages fetched before the pause are held unhandled;
- nothing new is fetched; the reason is in ``stats.model_error`` (and ``stats.held``),
  also written to the status bucket (``worker.<name>``) for ``eventsvc status``;
- the back-end is asked again (``backend.info()``) with back-off, from 1s doubling up
  to ``recheck``; when it answers, the held messages are handled again, and acked as
  usual; if they fail the same way the worker pauses again, any number of times.

A worker that starts without a model is the same state with nothing held: it checks
first and fetches only once the back-end answers.

Bounds: at most ``batch`` messages are held (only fetched messages are). A message that
keeps failing "unavailable" although the back-end answers its check (an input that
breaks the host) is held at most ``STRIKES`` times per delivery, then takes the ordinary
retry path (nak with back-off, DerivationFailed at ``max_deliver``). On a graceful stop
held messages are nak'd (one delivery, as a restart always costs) and one on its last
delivery is recorded as failed, since JetStream would not deliver it again. A worker
killed while holding loses nothing: its messages come back after ``ack_wait``, with one
delivery counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from eventsvc.core.errors import BackendUnavailable, InferenceError, ModelUnavailable
from eventsvc.core.events import Event, HashComputed, decode
from eventsvc.core.log import ConsumerSpec, Delivery, EventLog
from eventsvc.core.logs import Repeats
from eventsvc.derive.worker import Worker, WorkerStats
from eventsvc.inference.protocol import ModelInfo

__all__ = ["UNAVAILABLE", "InferenceDeriver", "InferenceStats", "InferenceWorker"]

log = logging.getLogger(__name__)

UNAVAILABLE = (ModelUnavailable, BackendUnavailable)
"""Errors about the back-end, never about the content: they hold, not retry."""


@dataclass
class InferenceStats(WorkerStats):
    model: str | None = None
    model_error: str | None = None
    """Why the worker is paused (no model, back-end unreachable); None while it works."""
    held: int = 0
    """Messages held un-acked while paused; handled again when the back-end is back."""


class InferenceDeriver(Protocol):
    """What an InferenceWorker needs of its handler."""

    backend: Any
    """A ClipBackend or FaceBackend: ``info()`` and ``aclose()`` are used here."""
    model: ModelInfo | None
    stats: Any
    """An InferenceStats, shared with the worker."""

    async def __call__(self, event: Event, seq: int) -> list[Event]: ...


class InferenceWorker(Worker):
    """A Worker that pauses and holds its messages while its back-end is unavailable."""

    STRIKES: ClassVar[int] = 3
    """Held retries failing "unavailable" after a good check, before the ordinary path."""

    stats: InferenceStats

    def __init__(
        self, name: str, event_log: EventLog, spec: ConsumerSpec, deriver: InferenceDeriver,
        *, concurrency: int, batch: int, recheck: float, label: str,
    ) -> None:  # fmt: skip
        super().__init__(
            name, event_log, spec, deriver, concurrency=concurrency, batch=batch,
            accepts=(HashComputed,),
        )  # fmt: skip
        self.deriver = deriver
        self.stats = deriver.stats
        self.recheck = max(recheck, 0.01)
        self.label = label
        self._paused = True  # until the first check finds the model
        self._held_msgs: dict[int, tuple[Delivery, asyncio.Task[None]]] = {}
        self._strikes: dict[int, int] = {}
        self._paused_log = Repeats(log)  # each reason once, then counted
        self._attempt = 0
        self._next_check = 0.0
        self._reported: tuple[object, ...] | None = None

    @property
    def paused(self) -> bool:
        return self._paused

    # ------------------------------------------------------------ pausing and holding

    def _delay(self) -> float:
        return min(self.recheck, min(1.0, self.recheck) * 2.0 ** min(self._attempt, 30))

    def _pause(self, reason: str) -> None:
        if not self._paused:
            self._paused = True
            self._next_check = time.monotonic() + self._delay()
            log.error(
                "%s: the %s back-end is unavailable; paused, holding messages un-acked "
                "(checking again with back-off up to %gs): %s",
                self.name, self.label, self.recheck, reason,
            )  # fmt: skip
        self.stats.model_error = reason

    def _hold(self, msg: Delivery) -> None:
        seq = msg.seq
        if seq not in self._held_msgs:
            self._held_msgs[seq] = (msg, asyncio.create_task(self._keep_alive(msg)))
        self.stats.held = len(self._held_msgs)

    async def _held(self, msg: Delivery, exc: Exception) -> bool:
        if not isinstance(exc, UNAVAILABLE):
            return False
        seq = msg.seq
        if seq in self._strikes:  # held before: the back-end answered its check since
            self._strikes[seq] += 1
            if self._strikes[seq] > self.STRIKES:
                log.warning(
                    "%s: seq %d still fails although the %s back-end answers; "
                    "retrying it as usual: %s", self.name, seq, self.label, exc,
                )  # fmt: skip
                return False
        else:
            self._strikes[seq] = 0
        self._pause(str(exc) or type(exc).__name__)
        self._hold(msg)
        return True

    async def _one(self, msg: Delivery) -> None:
        if self._paused:  # fetched before the pause: held with the rest, not tried
            self._hold(msg)
            return
        await super()._one(msg)

    # ------------------------------------------------------------ checking and resuming

    async def _gate(self, stop: asyncio.Event) -> None:
        while self._paused and not stop.is_set():
            await self._report()
            wait = self._next_check - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            if not await self._check(stop):
                self._attempt += 1
                self._next_check = time.monotonic() + self._delay()
                continue
            self._paused = False
            held = list(self._held_msgs.values())
            self._held_msgs.clear()
            self.stats.held = 0
            if held:
                log.info("%s: retrying %d held messages", self.name, len(held))
                await asyncio.gather(*(self._retry(m, hb) for m, hb in held))
                self._strikes = {s: n for s, n in self._strikes.items() if s in self._held_msgs}
            if not self._paused:
                self._attempt = 0
        await self._report()

    async def _retry(self, msg: Delivery, heartbeat: asyncio.Task[None]) -> None:
        try:  # its heartbeat goes on until the handler's own one has started
            await self._guarded(msg, self.sem)
        finally:
            heartbeat.cancel()

    async def _check(self, stop: asyncio.Event) -> bool:
        """Ask the back-end for its model (a first download may take long: stopping
        does not wait for it). On failure say why, once per reason."""
        probe = asyncio.ensure_future(self.deriver.backend.info())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({probe, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not probe.done():
            probe.cancel()
            with contextlib.suppress(BaseException):
                await probe
            return False
        try:
            info: ModelInfo = probe.result()
        except InferenceError as exc:
            reason = str(exc) or type(exc).__name__
            self._paused_log.log(  # once per reason, then counted
                logging.ERROR, reason,
                "%s: no %s model, paused (%d messages held; checking again with "
                "back-off up to %gs): %s",
                self.name, self.label, len(self._held_msgs), self.recheck, reason,
            )  # fmt: skip
            self.stats.model_error = reason
            return False
        self._paused_log.clear()
        if self.stats.model_error is not None or self.stats.model != info.version:
            log.info("%s: %s model %s (dim %d) ready", self.name, self.label, info.version,
                     info.dim)  # fmt: skip
        self.deriver.model = info
        self.stats.model = info.version
        self.stats.model_error = None
        return True

    async def _report(self) -> None:
        """The status bucket (``worker.<name>``, for `eventsvc status`), on change."""
        now = (self.stats.model, self.stats.model_error, self.stats.held)
        if now == self._reported:
            return
        self._reported = now
        await self.event_log.put_status(
            f"worker.{self.name}",
            {"model": now[0], "model_error": now[1], "held": now[2], "at": time.time()},
        )

    # ------------------------------------------------------------ running and stopping

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await super().run(stop)
        finally:
            await self._release()
            await self._close()

    async def _release(self) -> None:
        """Stopping while holding: back to the stream (or recorded, on a last delivery)."""
        held = list(self._held_msgs.items())
        self._held_msgs.clear()
        self.stats.held = 0
        for seq, (msg, heartbeat) in held:
            heartbeat.cancel()
            deliveries = msg.deliveries
            try:
                if deliveries < self.spec.max_deliver:
                    await msg.nak()
                    continue
                event: Event | None = None
                with contextlib.suppress(Exception):
                    event = decode(msg.data, msg.headers)
                reason = f"stopped on the last of {deliveries} tries: {self.stats.model_error}"
                await self._fail(msg, seq, deliveries, event, reason, False)
            except Exception as exc:  # no connection: they come back after ack_wait
                log.warning("%s: cannot release held seq %d: %r", self.name, seq, exc)

    async def _close(self) -> None:
        await self.deriver.backend.aclose()
