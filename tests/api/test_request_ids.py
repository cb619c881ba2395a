"""Decisions with a client-supplied request id (Idempotency-Key): a retry records
nothing, however late (issue 13, item 10). Real nats-server with a 1 s duplicate window."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from litestar import Litestar
from nats.js.api import StreamConfig

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from projections.api.idempotency import keyed_person_id
from projections.app import create_app

from .conftest import ReadModel, h, small_events

WINDOW = 1.0
URL = "/duplicates/not-duplicate"


@contextlib.asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


async def test_a_retried_decision_with_the_same_key_records_once_even_after_the_window(
    nats_url: str, settings: Settings, model: ReadModel, tmp_path: Path
) -> None:
    model.add(*small_events()).publish()
    log = await EventLog.connect(nats_url)
    try:
        await log.js.add_stream(
            StreamConfig(name=log.stream, subjects=[f"{log.prefix}.>"], duplicate_window=WINDOW)
        )
        body = {"a": h(1), "b": h(3)}
        async with serve(create_app(settings, event_log=log)) as c:
            key = {"Idempotency-Key": "3f2a-retry.1:x"}
            first = await c.post(URL, json=body, headers=key)
            assert first.status_code == 202, first.text
            assert first.json()["duplicate"] is False
            await asyncio.sleep(WINDOW + 0.6)  # NATS has forgotten the Nats-Msg-Id
            retry = await c.post(URL, json=body, headers=key)
            assert retry.status_code == 202, retry.text
            assert retry.json() == {**first.json(), "duplicate": True}
            # the same key on DELETE (another decision: undo) and a new key: recorded
            undo = await c.delete(URL, params=body, headers=key)
            assert undo.status_code == 202 and undo.json()["duplicate"] is False
            other = await c.post(URL, json=body, headers={"Idempotency-Key": "k2"})
            assert other.json()["duplicate"] is False
            # without a key every request is a new decision
            plain = [await c.post(URL, json=body) for _ in range(2)]
            assert [r.json()["duplicate"] for r in plain] == [False, False]
            # a key that is not one: 400, nothing recorded
            for bad in ("has space", "x" * 129, "é".encode(), ""):
                r = await c.post(URL, json=body, headers={"Idempotency-Key": bad})
                assert r.status_code == 400, (bad, r.text)
        events = [raw async for batch in log.read() for raw in batch]
        assert len(events) == 5  # first, undo, k2, two without a key
    finally:
        await log.close()


def test_a_split_retried_with_its_key_names_the_same_new_person() -> None:
    a = keyed_person_id("f-1", "key")
    assert a == keyed_person_id("f-1", "key") and a.startswith("p-") and len(a) == 18
    assert a != keyed_person_id("f-1", "other") != keyed_person_id("f-2", "key")
