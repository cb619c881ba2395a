from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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
"""Under pytest-xdist (``-n 2``), tests that share a session-scoped real process stay on one
worker: the fault suite's shared library and clean reference run, the web suite's one
`eventsvc up` and its Chromium."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole files to a worker (as ``--dist loadfile``: module-scoped fixtures made once),
    the groups above as one unit each and first (the longest units: none starts last),
    then the files with most tests first. Our own, as xdist's ``loadgroup`` does not work
    on pytest 9 (it rewrites ``item._nodeid``)."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None  # an explicit other --dist
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((g for part, g in XDIST_GROUPS.items() if path.startswith(part)), path)

        def _assign_work_unit(self, node: Any) -> None:
            for group in reversed(XDIST_GROUPS.values()):
                if group in self.workqueue:
                    self.workqueue.move_to_end(group, last=False)
            super()._assign_work_unit(node)

    return GroupScheduling(config, log)


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
