from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from eventsvc.server import EmbeddedNats

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def event_log(nats_server: EmbeddedNats) -> AsyncIterator[EventLog]:
    lg = await EventLog.connect(nats_server.url)
    await lg.ensure_stream()
    yield lg
    await lg.close()


@pytest.fixture
def settings(tmp_path: Path, nats_server: EmbeddedNats) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        nats_url=nats_server.url,
        watch=False,
        ack_wait=2.0,
        backoff=[0.2, 0.5, 1.0],
        max_deliver=3,
        quick_interval=0.5,
    )
