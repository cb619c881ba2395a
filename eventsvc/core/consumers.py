"""Durable pull consumers of the event log: their configuration, the messages they
deliver (ack, nak, in-progress, term), their state on the server. Part of the JetStream
boundary (:mod:`eventsvc.core.log`): nats-py errors are translated to ours here."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from eventsvc.core.errors import LogClosed, LogError
from eventsvc.core.events import HDR_TYPE

if TYPE_CHECKING:
    from eventsvc.core.log import EventLog

__all__ = [
    "NATS_ERRORS",
    "ConsumerSpec",
    "ConsumerStats",
    "Consumers",
    "Delivery",
    "PullConsumer",
    "bind_type",
    "describe",
    "position",
]

log = logging.getLogger(__name__)

NATS_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    nats.js.errors.Error,
    TimeoutError,
    OSError,
)
"""What a call into nats-py may raise (translated at this boundary)."""


def describe(exc: BaseException) -> str:
    """A short reason for a NATS failure (nats-py's reprs are often empty)."""
    if isinstance(exc, nats.js.errors.NotFoundError):
        return "not found"
    if isinstance(exc, nats.js.errors.APIError) and exc.description:
        return str(exc.description)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable pull consumer's configuration, as data."""

    durable: str
    filter_subjects: tuple[str, ...]
    max_deliver: int = 5
    ack_wait: float = 30.0
    backoff: tuple[float, ...] = ()
    max_ack_pending: int = 256
    description: str = ""

    def config(self) -> ConsumerConfig:
        backoff = list(self.backoff[: max(self.max_deliver - 1, 0)]) or None
        return ConsumerConfig(
            durable_name=self.durable,
            description=self.description or None,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=backoff[0] if backoff and backoff[0] > self.ack_wait else self.ack_wait,
            max_deliver=self.max_deliver,
            backoff=[max(b, self.ack_wait) for b in backoff] if backoff else None,
            filter_subjects=list(self.filter_subjects),
            max_ack_pending=self.max_ack_pending,
            max_waiting=512,
        )


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """A consumer's state on the server."""

    name: str
    durable: bool
    """False for ordered/ephemeral consumers (replays, the `nats` CLI)."""
    description: str
    pending: int
    """Messages matching its filters not delivered yet."""
    ack_pending: int
    """Delivered, not acknowledged yet (in flight)."""
    redelivered: int
    last_delivered: int
    """Stream sequence of the last message delivered."""

    @classmethod
    def of(cls, ci: ConsumerInfo) -> ConsumerStats:
        cfg = ci.config
        return cls(
            name=ci.name,
            durable=bool(cfg is not None and cfg.durable_name),
            description=(cfg.description or "") if cfg is not None else "",
            pending=ci.num_pending or 0,
            ack_pending=ci.num_ack_pending or 0,
            redelivered=ci.num_redelivered or 0,
            last_delivered=(ci.delivered.stream_seq or 0) if ci.delivered else 0,
        )


def position(msg: Msg) -> tuple[int, int]:
    """(stream sequence, messages pending) of a JetStream message, from its reply subject
    (``Msg.metadata`` builds dataclasses and a datetime per message: a third of a replay's
    reading time). Both ack-subject forms: ``$JS.ACK.<stream>.<consumer>.<delivered>.
    <sseq>.<cseq>.<ts>.<pending>`` and the one with domain and account hash in front."""
    tokens = (msg.reply or "").split(".")
    try:
        if len(tokens) == 9 and tokens[0] == "$JS":
            return int(tokens[5]), int(tokens[8])
        if len(tokens) >= 11 and tokens[0] == "$JS":
            return int(tokens[7]), int(tokens[10])
    except ValueError:
        pass
    md = msg.metadata  # anything else: nats-py's parser, and its error
    return md.sequence.stream, md.num_pending


def bind_type(subject: str, headers: dict[str, str] | None, at: int = 3) -> dict[str, str]:
    """Headers whose event type is the one the subject names (token ``at``).

    NATS grants publishing per subject, and subjects end in the event type: a user
    allowed ``photos.file.*.FileSeen`` must not get a ``PersonNamed`` body accepted from
    there. ``decode`` refuses a body whose type differs from this header, so every
    event read through the log is of the type its (permitted) subject says."""
    parts = subject.split(".", at + 1)
    etype = parts[at] if len(parts) > at else ""
    if headers is not None and headers.get(HDR_TYPE) == etype:
        return headers
    return {**(headers or {}), HDR_TYPE: etype}


class Delivery:
    """One message delivered by a durable consumer: what it holds, and the answers a
    consumer gives (each raises LogError when the server cannot be told)."""

    __slots__ = ("_msg", "_seq", "headers")

    def __init__(self, msg: Msg, at: int) -> None:
        self._msg = msg
        self._seq = 0
        self.headers: dict[str, str] = bind_type(msg.subject, msg.headers, at)

    @property
    def subject(self) -> str:
        return self._msg.subject

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def seq(self) -> int:
        """Its stream sequence."""
        if not self._seq:
            try:
                self._seq = position(self._msg)[0]
            except (nats.errors.Error, ValueError, AttributeError) as exc:
                raise LogError(f"not a JetStream delivery: {self._msg.subject}") from exc
        return self._seq

    @property
    def deliveries(self) -> int:
        """How often it was delivered, this time included."""
        tokens = (self._msg.reply or "").split(".")
        at = 4 if len(tokens) == 9 else 6
        if (len(tokens) == 9 or len(tokens) >= 11) and tokens[0] == "$JS" and tokens[at].isdigit():
            return int(tokens[at])
        try:
            return int(self._msg.metadata.num_delivered)
        except (nats.errors.Error, ValueError, AttributeError) as exc:
            raise LogError(f"not a JetStream delivery: {self._msg.subject}") from exc

    async def _answer(self, what: str, call: Any) -> None:
        try:
            await call
        except NATS_ERRORS as exc:
            raise LogError(f"cannot {what} seq {self.seq}: {describe(exc)}") from exc

    async def ack(self) -> None:
        """Done: not delivered again."""
        await self._answer("ack", self._msg.ack())

    async def nak(self, delay: float | None = None) -> None:
        """Deliver it again (after ``delay`` seconds); counts a delivery."""
        await self._answer("nak", self._msg.nak(delay=delay))

    async def in_progress(self) -> None:
        """Still at it: resets its ack timer, counts no delivery."""
        await self._answer("signal progress on", self._msg.in_progress())

    async def term(self) -> None:
        """Never deliver it again (without processing it)."""
        await self._answer("terminate", self._msg.term())


class PullConsumer:
    """A worker's pull subscription: fetched messages carry ``bind_type`` headers, and
    every ``check_every`` seconds the consumer on the server is compared with the spec
    (any user that reads can change a consumer by name through JetStream's ephemeral
    create call, which permissions cannot tell apart): a changed one is restored."""

    def __init__(
        self,
        sub: JetStreamContext.PullSubscription,
        event_log: EventLog,
        spec: ConsumerSpec,
        check_every: float,
    ) -> None:
        self._sub = sub
        self._log = event_log
        self._spec = spec
        self._at = event_log.type_token
        self._check_every = check_every
        self._next_check = time.monotonic() + check_every

    async def fetch(self, batch: int = 1, timeout: float = 5.0) -> list[Delivery]:
        """Up to ``batch`` messages; none when none came within ``timeout`` seconds.
        Raises LogClosed once the connection is closed, LogError on other trouble."""
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self._check_every
            try:
                await asyncio.wait_for(self._log.guard_consumer(self._spec), timeout + 1.0)
            except Exception as exc:  # never in the way of consuming
                log.warning("cannot check consumer %s: %r", self._spec.durable, exc)
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
            raise LogClosed(f"{self._spec.durable}: the connection is closed") from exc
        except NATS_ERRORS as exc:
            raise LogError(f"{self._spec.durable}: fetch failed: {describe(exc)}") from exc
        return [Delivery(m, self._at) for m in msgs]

    async def unsubscribe(self) -> None:
        try:
            await self._sub.unsubscribe()
        except NATS_ERRORS as exc:
            raise LogError(f"{self._spec.durable}: cannot unsubscribe: {describe(exc)}") from exc


class Consumers:
    """The consumer half of :class:`eventsvc.core.log.EventLog` (a mixin)."""

    js: JetStreamContext
    stream: str

    CONSUMER_CHECK = 30.0
    """Seconds between checks that a worker's consumer is still as configured."""

    @property
    def type_token(self) -> int:
        raise NotImplementedError

    async def ensure_consumer(self, spec: ConsumerSpec) -> None:
        cfg = spec.config()
        try:
            try:
                await self.js.add_consumer(self.stream, cfg)
            except nats.js.errors.BadRequestError as exc:
                # An older config with other filters: replace it, keeping nothing but the name.
                log.warning("consumer %s config changed (%s); recreating", spec.durable, exc)
                await self.js.delete_consumer(self.stream, spec.durable)
                await self.js.add_consumer(self.stream, cfg)
        except NATS_ERRORS as exc:
            raise LogError(f"cannot create consumer {spec.durable}: {describe(exc)}") from exc

    async def pull(self, spec: ConsumerSpec) -> PullConsumer:
        """Create (or restore) ``spec``'s durable consumer and subscribe to it."""
        await self.ensure_consumer(spec)
        try:
            sub = await self.js.pull_subscribe_bind(
                spec.durable, stream=self.stream, pending_msgs_limit=spec.max_ack_pending * 4
            )
        except NATS_ERRORS as exc:
            raise LogError(f"cannot subscribe to {spec.durable}: {describe(exc)}") from exc
        return PullConsumer(sub, self, spec, self.CONSUMER_CHECK)  # type: ignore[arg-type]

    async def guard_consumer(self, spec: ConsumerSpec) -> bool:
        """Restore ``spec``'s consumer when the server's differs (durable name, filters,
        deliveries) or is gone; True when it had to."""
        try:
            info = await self.js.consumer_info(self.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            why = "is gone"
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read consumer {spec.durable}: {describe(exc)}") from exc
        else:
            have = info.config
            filters = sorted(have.filter_subjects or [have.filter_subject or ">"])
            if (
                have.durable_name == spec.durable
                and filters == sorted(spec.filter_subjects)
                and have.max_deliver == spec.max_deliver
                and have.max_ack_pending == spec.max_ack_pending
            ):
                return False
            why = f"was changed (durable {have.durable_name!r}, filters {filters})"
        log.warning("consumer %s %s on the server; restoring it", spec.durable, why)
        await self.ensure_consumer(spec)
        return True

    async def consumer_stats(self, name: str) -> ConsumerStats | None:
        """The consumer's state; None when there is no such consumer."""
        try:
            return ConsumerStats.of(await self.js.consumer_info(self.stream, name))
        except nats.js.errors.NotFoundError:
            return None
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read consumer {name}: {describe(exc)}") from exc

    async def consumers(self) -> list[ConsumerStats]:
        """Every consumer of the stream (durable or not), by name."""
        try:
            infos = await self.js.consumers_info(self.stream)
        except NATS_ERRORS as exc:
            raise LogError(f"cannot list the consumers of {self.stream}: {describe(exc)}") from exc
        return sorted((ConsumerStats.of(ci) for ci in infos), key=lambda c: c.name)

    async def delete_consumer(self, name: str) -> bool:
        """Remove a consumer; False when there was none."""
        try:
            await self.js.delete_consumer(self.stream, name)
        except nats.js.errors.NotFoundError:
            return False
        except NATS_ERRORS as exc:
            raise LogError(f"cannot delete consumer {name}: {describe(exc)}") from exc
        return True
