"""The stream of the event log: its configuration (set only by an admin), its state
(read by anyone, changed by no reader), direct reads of single subjects, and the status
bucket. Part of the JetStream boundary (:mod:`eventsvc.core.log`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StoreCompression,
    StreamConfig,
)

from eventsvc.core.consumers import NATS_ERRORS, describe
from eventsvc.core.errors import LogError

__all__ = ["ClusterState", "Stream", "StreamState", "cluster_state_of", "fact_version_of"]

log = logging.getLogger(__name__)


def fact_version_of(data: bytes) -> int:
    """The ``deriver_version`` of an encoded fact (1 when absent or unreadable)."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return 1
    v = body.get("deriver_version", 1) if isinstance(body, dict) else 1
    return v if isinstance(v, int) and v >= 1 else 1


@dataclass(frozen=True, slots=True)
class ClusterState:
    """A replicated stream's Raft group as its (last) leader reports it (issue 17 item 4).

    With fewer than a majority of its replicas online the stream has no quorum: it takes
    no writes and elects no leader, whatever a stale leader still answers."""

    replicas: int
    """Configured replicas (R)."""
    online: int
    """Replicas up (the leader and every peer not offline; without a leader, as the
    answering server last knew them)."""
    leader: str | None
    """The stream leader's server name; None: no leader."""
    offline: tuple[str, ...] = ()
    """Peers the leader has lost."""
    quorum: bool = True
    """More than R/2 replicas online and a leader."""
    lost_since: float | None = None
    """Without quorum: since when (``time.time()``), from the last peer lost."""

    @property
    def problem(self) -> str | None:
        """What is wrong, in one line (None: nothing)."""
        if self.quorum:
            return None
        if self.leader is None:
            return (
                f"no quorum: no stream leader elected among its {self.replicas} replicas; "
                "the stream takes no writes until a majority is back"
            )
        down = ", ".join(self.offline) or "peers"
        return (
            f"no quorum: {self.online} of {self.replicas} replicas online ({down} offline); "
            "the stream takes no writes until a majority is back"
        )


def cluster_state_of(info: Any, replicas: int, now: float | None = None) -> ClusterState | None:
    """The :class:`ClusterState` of a nats-py ``StreamInfo``; None for a stream that
    is not clustered (a single server)."""
    cluster = getattr(info, "cluster", None)
    if cluster is None or (not cluster.leader and not cluster.replicas and replicas <= 1):
        return None
    now = time.time() if now is None else now
    peers = list(cluster.replicas or [])
    offline = [p for p in peers if p.offline]
    leader = cluster.leader or None
    online = (1 if leader else 0) + len(peers) - len(offline)
    quorum = leader is not None and online > replicas // 2
    lost_since = None
    if not quorum:
        seen = [p.active for p in offline if p.active is not None]  # ns since last heard of
        lost_since = now - min(seen) / 1e9 if seen else now
    return ClusterState(
        replicas=replicas,
        online=online,
        leader=leader,
        offline=tuple(sorted(p.name for p in offline)),
        quorum=quorum,
        lost_since=lost_since,
    )


@dataclass(frozen=True, slots=True)
class StreamState:
    """The stream as the server has it (``exists`` False: no such stream yet)."""

    name: str
    exists: bool
    last_seq: int = 0
    messages: int = 0
    bytes: int = 0
    replicas: int = 0
    differs: tuple[str, ...] = ()
    """Configuration fields that differ from this version's (``stream_config``): an
    admin may update them (`eventsvc setup`); readers only report them."""
    cluster: ClusterState | None = None
    """The replicas' state on a cluster (None: a single server)."""


class Stream:
    """The stream half of :class:`eventsvc.core.log.EventLog` (a mixin)."""

    js: JetStreamContext
    stream: str
    prefix: str
    replicas: int
    duplicate_window: float

    # ------------------------------------------------------------ configuration

    def stream_config(self) -> StreamConfig:
        return StreamConfig(
            name=self.stream,
            description="eventsvc: the source of truth for the photo index",
            subjects=[f"{self.prefix}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_msgs=-1,
            max_bytes=-1,
            max_age=0,
            max_msgs_per_subject=-1,
            duplicate_window=self.duplicate_window,
            allow_direct=True,
            num_replicas=self.replicas,
            # S2 blocks: about a third of the disk of plain JSON blocks, no slower to
            # publish (issue 18); an older stream gets it on update, for new blocks
            compression=StoreCompression.S2,
        )

    def _differs(self, have: StreamConfig) -> tuple[str, ...]:
        got = have.as_dict()
        return tuple(
            sorted(k for k, v in self.stream_config().as_dict().items() if got.get(k) != v)
        )

    async def ensure_stream(self, *, manage: bool = True, update: bool | None = None) -> None:
        """With ``manage`` (the admin user) create the stream when it is missing, and
        with ``update`` (default: ``manage``; only `eventsvc up` and `eventsvc setup`)
        bring its configuration up to date. Otherwise only check that it exists: a
        differing configuration is logged, never changed."""
        update = manage if update is None else update
        cfg = self.stream_config()
        try:
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            if not manage:
                raise LogError(
                    f"stream {self.stream} does not exist; create it with the admin user "
                    "(`eventsvc setup` or `eventsvc up`)"
                ) from None
            try:
                try:
                    await self.js.add_stream(cfg)
                except nats.js.errors.BadRequestError:
                    await self.js.stream_info(self.stream)  # lost a race: it exists now
            except NATS_ERRORS as exc:
                raise LogError(f"cannot create stream {self.stream}: {describe(exc)}") from exc
            return
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read stream {self.stream}: {exc!r}") from exc
        differs = self._differs(info.config)
        if not differs:
            return  # up to date: nothing to change (and no admin right needed)
        if not update:
            log.warning(
                "stream %s differs from this version's config (%s); an admin may update it "
                "(`eventsvc setup`)", self.stream, ", ".join(differs),
            )  # fmt: skip
            return
        try:
            await self.js.update_stream(cfg)
        except NATS_ERRORS as exc:
            raise LogError(
                f"stream {self.stream} exists with an incompatible config: {exc}"
            ) from exc

    # ------------------------------------------------------------ state

    async def stream_state(self) -> StreamState:
        """The stream's state and how its configuration differs from this version's;
        changes nothing. Raises LogError when the server cannot tell."""
        try:
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            return StreamState(name=self.stream, exists=False)
        except nats.js.errors.ServiceUnavailableError as exc:
            raise LogError(
                f"cannot read stream {self.stream}: JetStream is unavailable (503): no "
                "quorum in the cluster (too few nodes up) or JetStream is off"
            ) from exc
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read stream {self.stream}: {describe(exc)}") from exc
        st = info.state
        replicas = int(info.config.num_replicas or 1)
        return StreamState(
            name=self.stream,
            exists=True,
            last_seq=int(st.last_seq or 0),
            messages=int(st.messages or 0),
            bytes=int(st.bytes or 0),
            replicas=replicas,
            differs=self._differs(info.config),
            cluster=cluster_state_of(info, replicas),
        )

    async def last_seq(self) -> int:
        try:
            info = await self.js.stream_info(self.stream)
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read stream {self.stream}: {describe(exc)}") from exc
        return int(info.state.last_seq)

    async def has_subject(self, subject: str) -> bool:
        """Whether the stream holds a message on this exact subject."""
        return await self.last_subject_seq(subject) > 0

    async def last_subject_seq(self, subject: str) -> int:
        """The sequence of the last message on this exact subject (0: none)."""
        try:
            msg = await self.js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            return 0
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read {subject}: {describe(exc)}") from exc
        return int(msg.seq or 0)

    async def holds_any(self, subjects: str) -> bool:
        """Whether any message matches ``subjects`` (wildcards allowed): one direct read."""
        try:
            await self.js.get_msg(self.stream, seq=1, subject=subjects, next=True)
        except nats.js.errors.NotFoundError:
            return False
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read {subjects}: {describe(exc)}") from exc
        return True

    async def last_fact(self, subject: str) -> tuple[int, int]:
        """(sequence, deriver version) of the last message on ``subject``; (0, 0) when
        none. A body without ``deriver_version`` (older logs) is version 1."""
        try:
            msg = await self.js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            return 0, 0
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read {subject}: {exc!r}") from exc
        return int(msg.seq or 0), fact_version_of(msg.data or b"")

    # ------------------------------------------------------------ status (not history)

    STATUS_BUCKET = "EVENTSVC_STATUS"

    async def _status_kv(self, create: bool) -> Any:
        try:
            return await self.js.key_value(self.STATUS_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            if not create:
                return None
            return await self.js.create_key_value(
                KeyValueConfig(bucket=self.STATUS_BUCKET, history=1, description="scan status")
            )

    async def ensure_status_bucket(self) -> None:
        """Create the status bucket up front (an admin's job: components may only write
        their own keys)."""
        try:
            await self._status_kv(create=True)
        except NATS_ERRORS as exc:
            raise LogError(f"cannot create the status bucket: {exc!r}") from exc

    async def put_status(self, key: str, value: dict) -> None:
        """Operational status (last scan per library): a KV bucket, not the event log."""
        try:
            kv = await self._status_kv(create=True)
            await kv.put(key, json.dumps(value).encode())
        except NATS_ERRORS as exc:
            log.warning("cannot write status %s: %r", key, exc)

    async def get_status(self, key: str) -> dict | None:
        try:
            kv = await self._status_kv(create=False)
            if kv is None:
                return None
            entry = await kv.get(key)
        except NATS_ERRORS:
            return None
        return json.loads(entry.value) if entry and entry.value else None
