"""Reading the stream back in order (a part of the JetStream boundary, split out of
:mod:`eventsvc.core.log`): :class:`RawEvent` and the :class:`Replay` mixin of
:class:`eventsvc.core.log.EventLog`. nats-py errors become LogError here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventsvc.core.consumers import NATS_ERRORS, bind_type, describe, position
from eventsvc.core.errors import LogError

__all__ = ["RawEvent", "Replay"]

log = logging.getLogger("eventsvc.core.log")  # (the records keep the logger name they had)


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A message read back from the stream, not yet decoded."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None


class Replay:
    """The reading half of :class:`eventsvc.core.log.EventLog` (a mixin)."""

    js: JetStreamContext
    stream: str
    prefix: str

    @property
    def reconnects(self) -> int:
        raise NotImplementedError

    @property
    def type_token(self) -> int:
        raise NotImplementedError

    async def last_seq(self) -> int:
        raise NotImplementedError

    READ_CHECK_AFTER = 10.0
    """Seconds a following read waits without messages before it checks its ordered
    consumer (issue 17: in a cluster outage one can be lost with its node, or stall,
    without this connection dropping)."""

    @staticmethod
    async def _consumer_stuck(sub: JetStreamContext.PushSubscription) -> bool | None:
        """True: gone, or messages wait that do not come; False: fine; None: cannot
        tell now (an outage: ask again later)."""
        try:
            ci = await asyncio.wait_for(sub.consumer_info(), 5.0)
        except nats.js.errors.NotFoundError:
            return True
        except NATS_ERRORS:
            return None
        return bool(ci.num_pending)

    async def read(
        self,
        filter_subjects: Sequence[str] | None = None,
        *,
        start_seq: int = 1,
        last_per_subject: bool = False,
        stop_at: int | None = None,
        batch: int = 2000,
        follow: bool = False,
        idle: float = 1.0,
    ) -> AsyncIterator[list[RawEvent]]:
        """Read the stream in order, in batches, through an ordered consumer.

        Ends at ``stop_at`` (default: the stream's last sequence when called). With
        ``follow`` it never ends and yields an empty batch after ``idle`` seconds
        without messages, so the caller can look around.
        """
        if follow:
            stop_at = 1 << 62
        elif stop_at is None:
            stop_at = await self.last_seq()
        if stop_at < start_seq:
            return
        filters = list(filter_subjects or [f"{self.prefix}.>"])
        queue: deque[Msg] = deque()
        arrived = asyncio.Event()

        async def _cb(msg: Msg) -> None:
            queue.append(msg)
            arrived.set()

        cfg = ConsumerConfig(
            filter_subjects=filters if len(filters) > 1 else None,
            opt_start_seq=None if last_per_subject or start_seq <= 1 else start_seq,
        )
        policy = (
            DeliverPolicy.LAST_PER_SUBJECT
            if last_per_subject
            else DeliverPolicy.ALL
            if start_seq <= 1
            else DeliverPolicy.BY_START_SEQUENCE
        )
        try:
            sub = await self.js.subscribe(
                filters[0] if len(filters) == 1 else "",
                stream=self.stream,
                cb=_cb,
                ordered_consumer=True,
                deliver_policy=policy,
                config=cfg,
                pending_msgs_limit=1 << 22,
                pending_bytes_limit=1 << 31,
            )
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read stream {self.stream}: {describe(exc)}") from exc
        reconnects_at_start = self.reconnects
        idle_since, unknown = 0.0, 0
        at = self.type_token
        try:
            done = False
            if not follow:
                try:
                    ci = await sub.consumer_info()
                except NATS_ERRORS as exc:
                    raise LogError(f"cannot read stream {self.stream}: {describe(exc)}") from exc
                # (A filtered consumer's delivered.stream_seq moves past messages that
                # do not match; consumer_seq counts what was delivered.)
                if ci.num_pending == 0 and (ci.delivered.consumer_seq or 0) == 0 and not queue:
                    return  # nothing matches the filter
            while not done:
                try:
                    if not queue:
                        arrived.clear()
                        await asyncio.wait_for(arrived.wait(), idle if follow else 30.0)
                except TimeoutError:
                    if self.reconnects != reconnects_at_start:
                        # An ordered consumer heals slowly after a server restart: the
                        # caller starts a fresh read from where it got to.
                        log.warning("read: connection was re-established; resubscribing")
                        return
                    if not follow:
                        raise LogError("reading the stream stalled for 30 s") from None
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= self.READ_CHECK_AFTER:
                        idle_since = time.monotonic()
                        stuck = await self._consumer_stuck(sub)
                        unknown = unknown + 1 if stuck is None else 0
                        if stuck or unknown >= 3:
                            # its server went away in a cluster outage without this
                            # connection dropping: the caller reads again from where it got to
                            log.warning("read: the stream's reader is stuck; resubscribing")
                            return
                    yield []
                    continue
                idle_since = 0.0
                out: list[RawEvent] = []
                while queue and len(out) < batch:
                    msg = queue.popleft()
                    seq, pending = position(msg)
                    if seq > stop_at:
                        done = True
                        break
                    hdrs = bind_type(msg.subject, msg.headers, at)
                    out.append(RawEvent(seq, msg.subject, msg.data, hdrs))
                    if seq >= stop_at or (pending == 0 and not follow):
                        done = True
                        break
                if out:
                    yield out
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
