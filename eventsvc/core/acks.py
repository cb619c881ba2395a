"""Pipelined JetStream publishes and their acks, for ``EventLog.publish_batch``.

Part of the JetStream boundary (:mod:`eventsvc.core.log`): it drives the connection that
module made, imports nothing of nats-py at run time, and its refusals never leave the
boundary (``publish_batch`` turns them into PublishError)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["AckMux", "Refused"]


class Refused(Exception):
    """JetStream refused a pipelined publish (its API error code and description)."""

    def __init__(self, err_code: int, description: str) -> None:
        super().__init__(description)
        self.err_code = err_code


class AckMux:
    """Pipelined JetStream publishes, their acks on one wildcard inbox subscription (as
    nats-py's ``publish_async``, which never answers an API error such as a wrong last
    subject sequence: it raises inside its reply callback and that ack never comes)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = ""
        self.count = 0
        self.waiting: dict[str, asyncio.Future[tuple[int, bool]]] = {}

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[tuple[int, bool]]:
        """Publish (no wait, no yield to the loop); the future gets (seq, duplicate)."""
        if not self.prefix:
            inbox = self.nc.new_inbox()
            await self.nc.subscribe(inbox + ".*", cb=self._reply)
            self.prefix = inbox + "."
        self.count += 1
        token = str(self.count)
        fut: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self.waiting[token] = fut
        fut.add_done_callback(lambda _: self.waiting.pop(token, None))
        await self.nc.publish(subject, payload, reply=self.prefix + token, headers=headers)
        return fut

    async def _reply(self, msg: Msg) -> None:
        fut = self.waiting.get(msg.subject[len(self.prefix) :])
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            fut.set_exception(Refused(503, "no responders (no stream for the subject)"))
            return
        try:
            resp = json.loads(msg.data)
            err = resp.get("error")
            if err:
                code = int(err.get("err_code") or 0)
                why = f"{err.get('description') or err} (code {err.get('code')}, {code})"
                fut.set_exception(Refused(code, why))
            else:
                fut.set_result((int(resp["seq"]), bool(resp.get("duplicate"))))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            fut.set_exception(Refused(0, f"unreadable publish ack: {exc!r}"))
