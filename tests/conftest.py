from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from eventsvc.server import EmbeddedNats, free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `eventsvc up` prefers NATS ports 4222/8222 and falls back to a free one when they are
    # taken; two workers starting an `up` at the same moment could both see them free. Each
    # worker prefers ports of its own (a test that sets them still does).
    os.environ.setdefault("EVENTSVC_NATS_PORT", str(free_port()))
    os.environ.setdefault("EVENTSVC_NATS_MONITOR_PORT", str(free_port()))

XDIST_GROUPS = {
    "tests/faults/": "faults",
    "tests/web/test_browser": "web-browser",
}
"""Tests that share a session-scoped real process, kept on one worker under pytest-xdist
(``-n 2``, with ``--dist loadgroup`` from addopts): the fault suite's clean reference run
and shared library, the web suite's one `eventsvc up` and its Chromium."""


def _module_scoped(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d and d[-1].scope == "module" for d in defs)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """xdist groups: the session groups above; and every module whose tests use a
    module-scoped fixture (a server, generated clips, a loaded model) stays together, so
    that fixture is made once, not once per worker or per interleaving. Every other test
    may run on either worker."""
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        group = next((g for part, g in XDIST_GROUPS.items() if part in path), None)
        if group is None and _module_scoped(item):
            group = item.nodeid.split("::", 1)[0]
        if group is not None:
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
