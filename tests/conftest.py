from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from eventsvc.server import EmbeddedNats

os.environ.setdefault("HF_HUB_OFFLINE", "1")

XDIST_GROUPS = {
    "tests/faults/": "faults",
    "tests/web/test_browser": "web-browser",
}
"""Tests that share a session-scoped real process, kept on one worker under pytest-xdist
(``-n 2 --dist loadgroup``): the fault suite's clean reference run and shared library,
the web suite's one `eventsvc up` and its Chromium. Every other test may run on either."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        for part, group in XDIST_GROUPS.items():
            if part in path:
                item.add_marker(pytest.mark.xdist_group(group))


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
