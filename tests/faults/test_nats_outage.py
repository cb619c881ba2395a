"""Issue 17 item 1: NATS killed and restarted under a running `eventsvc up`, after 5 s and
after more than twice the client's reconnect budget, twice in one run: `up` keeps
running, says it is degraded (/healthz, /pipeline) while NATS is away, resumes by itself,
and its read model ends equal to a clean run's."""

from __future__ import annotations

import time
from pathlib import Path

from eventsvc.server import EmbeddedNats
from tests.faults.common import Up, clean_snapshot, settled, shared_library, snapshot, wait_for

FILES = 100
RECONNECT_WAIT = 0.5
RECONNECT_BUDGET = 3 * RECONNECT_WAIT
"""What the client used to allow for a lost connection (3 tries, 0.5 s apart)."""


def _outage(server: EmbeddedNats, up: Up, seconds: float, *, flap: bool = False) -> None:
    """NATS killed for ``seconds`` then started again; with ``flap`` it goes away again
    as soon as `up` is back on it (the second outage that used to kill `up`: its readers
    resubscribe just then, with no server to answer)."""
    assert server.proc is not None
    server.proc.kill()  # kill -9: no goodbye to the clients
    server.proc.wait(10)
    server.stop()
    t0 = time.monotonic()
    # while away: alive, and it says so
    wait_for(lambda: up.status() == "degraded", 10, "/healthz says degraded while NATS is down")
    health = up.get("/healthz")
    assert health["since"] and health["reasons"], health
    pipe = up.get("/pipeline")
    assert pipe["nats"]["connected"] is False, pipe["nats"]
    while time.monotonic() - t0 < seconds:
        assert up.alive, up.output()[-4000:]
        time.sleep(0.5)
    server.start()
    if flap:
        wait_for(lambda: up.get("/pipeline")["nats"]["connected"], 30, "reconnected")


async def test_up_survives_nats_outages_short_and_long_twice(tmp_path: Path) -> None:
    lib = shared_library(FILES)
    reference = await clean_snapshot(lib, tmp_path, FILES)
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    up = Up(lib, tmp_path / "data", server, env={"EVENTSVC_NATS_RECONNECT_WAIT": "0.5"}).start()
    try:
        wait_for(lambda: up.status() == "ok", 30, "up answers")
        for _ in range(2):
            _outage(server, up, 5.0, flap=True)
            _outage(server, up, 2 * RECONNECT_BUDGET + 5)
            wait_for(lambda: up.status() == "ok", 60, "healthy again")
            assert up.alive, up.output()[-4000:]
        wait_for(lambda: settled(up, FILES), 90, "the run settles after the outages")
        assert up.alive, up.output()[-4000:]
        up.terminate()
        got = await snapshot(up)
        assert got.diff(reference) == [], got.diff(reference)
    finally:
        up.kill()
        server.stop()
