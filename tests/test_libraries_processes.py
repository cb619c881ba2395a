"""Two ``eventsvc api`` processes on one stream agree on libraries after a change made
through either (issue 16): each folds the configuration from the log per request, and
both serve the read model the projector builds from the same events."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from eventsvc.server import EmbeddedNats, free_port
from projections.projector import Projector
from tests.harness import cli, wait_until

pytestmark = pytest.mark.timeout(180)


def call(url: str, method: str = "GET", body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def two_apis(nats_server: EmbeddedNats, settings: Settings) -> Iterator[list[str]]:
    urls, procs = [], []
    env = {"EVENTSVC_LOG_LEVEL": "WARNING"}
    for _ in range(2):
        port = free_port()
        procs.append(cli(
            "api", "--data-dir", str(settings.data_dir), "--nats-url", nats_server.url,
            "--port", str(port), env=env,
        ))  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}")
    try:
        yield urls
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except Exception:
                p.kill()
                p.wait()


async def test_two_api_processes_agree_on_libraries(
    two_apis: list[str], event_log: EventLog, settings: Settings, tmp_path: Path
) -> None:
    one, two = two_apis
    projector = Projector(event_log, settings.readmodel_dir, batch=100)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:

        async def up(url: str) -> bool:
            try:
                status, _ = await asyncio.to_thread(call, f"{url}/healthz")
            except OSError:
                return False
            return status == 200

        for url in (one, two):
            await wait_until(lambda u=url: up(u), 60, 0.3)  # type: ignore[misc]
        root = tmp_path / "shared"
        root.mkdir()
        status, made = await asyncio.to_thread(
            call, f"{one}/libraries", "POST", {"root": str(root), "name": "Shared"}
        )
        assert status == 202, made
        lib_id = made["library_id"]
        # the other process knows it at once (it folds the log, not a file of its own)
        status, body = await asyncio.to_thread(
            call, f"{two}/libraries/{lib_id}", "PATCH", {"name": "Common", "enabled": False}
        )
        assert status == 202, body
        status, body = await asyncio.to_thread(
            call, f"{one}/libraries", "POST", {"root": str(root)}
        )
        assert status == 409, body  # and the first one knows of the second's change
        last = await event_log.last_seq()
        await wait_until(lambda: projector.status.last_seq >= last, 30)

        async def listing(url: str) -> dict[str, Any]:
            status, body = await asyncio.to_thread(call, f"{url}/libraries")
            assert status == 200, body
            return {x["library_id"]: x for x in body["items"]}

        a, b = await listing(one), await listing(two)
        assert a == b
        assert (a[lib_id]["name"], a[lib_id]["state"], a[lib_id]["enabled"]) == (
            "Common", "disabled", False,
        )  # fmt: skip
        status, _ = await asyncio.to_thread(call, f"{two}/libraries/{lib_id}", "DELETE")
        assert status == 202
        status, _ = await asyncio.to_thread(call, f"{one}/libraries/{lib_id}", "DELETE")
        assert status == 404  # already removed, as the first process sees it too
        last = await event_log.last_seq()
        await wait_until(lambda: projector.status.last_seq >= last, 30)
        assert lib_id not in await listing(one) and lib_id not in await listing(two)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
