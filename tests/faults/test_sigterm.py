"""Issue 17 item 2: SIGTERM stops `eventsvc up` within 10 s in every state: ingesting,
NATS down, the data dir full."""

from __future__ import annotations

from pathlib import Path

from eventsvc.server import EmbeddedNats
from tests.faults.common import Up, make_library, wait_for
from tests.faults.mounts import fill, tmpfs
from tests.faults.test_disk_full import _thumbnails

FILES = 150
WITHIN = 10.0


def _ingesting(up: Up) -> None:
    wait_for(lambda: _thumbnails(up) >= 1, 60, "ingesting")


def test_sigterm_while_ingesting(tmp_path: Path) -> None:
    lib = make_library(tmp_path / "lib", FILES)
    with EmbeddedNats(tmp_path / "nats") as server:
        up = Up(lib, tmp_path / "data", server).start()
        try:
            _ingesting(up)
            assert _thumbnails(up) < FILES  # still at it
            took = up.terminate(WITHIN)
            assert up.proc is not None and up.proc.returncode == 0, up.output()[-3000:]
            print(f"stopped in {took:.1f}s while ingesting")
        finally:
            up.kill()


def test_sigterm_while_nats_is_down(tmp_path: Path) -> None:
    lib = make_library(tmp_path / "lib", FILES)
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    up = Up(lib, tmp_path / "data", server).start()
    try:
        _ingesting(up)
        server.stop()
        wait_for(lambda: up.status() == "degraded", 20, "degraded")
        took = up.terminate(WITHIN)
        print(f"stopped in {took:.1f}s with NATS down")
    finally:
        up.kill()
        server.stop()


def test_sigterm_while_the_disk_is_full(tmp_path: Path) -> None:
    lib = make_library(tmp_path / "lib", FILES)
    with tmpfs(tmp_path / "data", "32m") as data, EmbeddedNats(tmp_path / "nats") as server:
        up = Up(lib, data, server).start()
        try:
            _ingesting(up)
            fill(data)
            wait_for(lambda: up.status() == "degraded", 30, "degraded")
            took = up.terminate(WITHIN)
            print(f"stopped in {took:.1f}s with the disk full")
        finally:
            up.kill()
