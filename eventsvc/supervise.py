"""Supervision of the long-running components (issue 17 items 1, 2): a component that
fails because of the event log (NATS away, JetStream not ready, a publish not
acknowledged) or for want of room (a full disk) waits and starts again, however long it
lasts; it never takes the process down.
What is degraded, why and since when is kept in :class:`Health` (``/healthz``,
``/pipeline``'s ``extra.health``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsvc.core.errors import LogError, out_of_space

__all__ = ["Health", "Runner", "supervised"]

log = logging.getLogger(__name__)

Runner = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

HEALTHY_AFTER = 5.0
"""Seconds a restarted component must run before it counts as healthy again."""
MAX_BACKOFF = 15.0


class _Connected(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def disconnected_since(self) -> float | None: ...


@dataclass
class Health:
    """What is degraded now: ``problems`` (component -> (why, since: ``time.time()``))
    and the event-log connections watched (down while not connected)."""

    problems: dict[str, tuple[str, float]] = field(default_factory=dict)
    logs: list[tuple[str, _Connected]] = field(default_factory=list)
    probes: list[tuple[str, Callable[[], tuple[str, float] | None]]] = field(default_factory=list)
    """Components that pause by themselves (a full disk): () -> (why, since) or None."""

    def probe(self, name: str, fn: Callable[[], tuple[str, float] | None]) -> None:
        self.probes.append((name, fn))

    def watch(self, name: str, event_log: _Connected) -> None:
        self.logs.append((name, event_log))

    def down(self, name: str, why: str) -> None:
        since = self.problems.get(name, (why, time.time()))[1]
        self.problems[name] = (why, since)

    def up(self, name: str) -> None:
        self.problems.pop(name, None)

    def state(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded", "since": time.time() or None, "reasons": [...]}``."""
        reasons: list[tuple[float, str]] = [
            (since, f"{name}: {why}") for name, (why, since) in self.problems.items()
        ]
        for name, fn in self.probes:
            with contextlib.suppress(Exception):
                if (got := fn()) is not None:
                    reasons.append((got[1], f"{name}: {got[0]}"))
        for name, lg in self.logs:
            if not lg.connected:
                since = lg.disconnected_since or time.time()
                reasons.append((since, f"{name}: NATS connection lost; reconnecting"))
        if not reasons:
            return {"status": "ok", "since": None, "reasons": []}
        reasons.sort()
        return {
            "status": "degraded",
            "since": reasons[0][0],
            "reasons": [r for _, r in reasons],
        }


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def supervised(name: str, runner: Runner, stop: asyncio.Event, health: Health) -> None:
    """Run ``runner`` until ``stop``; after an event-log failure (or an early return
    while not stopped) wait (1 s, doubling up to 15 s) and run it again. Any other
    error is the component's bug or configuration: it is raised."""
    delay = 1.0
    while not stop.is_set():
        task = asyncio.create_task(runner(stop), name=name)
        try:
            done, _ = await asyncio.wait({task}, timeout=HEALTHY_AFTER)
            if not done:
                health.up(name)
                delay = 1.0
            await task
        except Exception as exc:
            if not isinstance(exc, LogError) and out_of_space(exc) is None:
                raise  # a bug or a configuration error: not ours to hide
            why = str(exc) or type(exc).__name__
            health.down(name, why)
            log.warning("%s stopped (%s); restarting in %.0fs", name, why, delay)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        else:
            if stop.is_set():
                return
            health.down(name, "stopped by itself")
            log.warning("%s stopped by itself; restarting in %.0fs", name, delay)
        await _wait(stop, delay)
        delay = min(delay * 2, MAX_BACKOFF)


def watch_all(health: Health, logs: Iterable[tuple[str, _Connected]]) -> None:
    for name, lg in logs:
        health.watch(name, lg)
