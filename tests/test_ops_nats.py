"""NATS for people (issue 14): the embedded server's stable client port and loopback
monitoring port, `up` saying where everything is, and `eventsvc nats-context` giving a
client not written here (nats-py, from the context file alone) read-only access."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from eventsvc.core.errors import ServerError
from eventsvc.server import EmbeddedNats, free_port
from tests.harness import make_jpeg, wait_until

ROOT = Path(__file__).resolve().parent.parent


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _page(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return int(r.status), str(r.headers["content-type"])


@contextmanager
def _listening() -> Iterator[int]:
    """A port somebody else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_free_given_port_is_kept_and_monitoring_answers(tmp_path: Path) -> None:
    port, monitor = free_port(), free_port()
    with EmbeddedNats(tmp_path / "nats", port=port, monitor_port=monitor) as server:
        assert server.url == f"nats://127.0.0.1:{port}" and not server.notes
        assert server.monitor_url == f"http://127.0.0.1:{monitor}"
        assert (tmp_path / "nats" / "nats.monitor.url").read_text() == server.monitor_url
        varz = _get(f"{server.monitor_url}/varz")
        assert varz["port"] == port and varz["http_port"] == monitor
        assert varz["http_host"] == "127.0.0.1"
        assert "streams" in _get(f"{server.monitor_url}/jsz")
    assert not (tmp_path / "nats" / "nats.monitor.url").exists()


def test_a_busy_port_falls_back_to_a_free_one_and_says_so(tmp_path: Path) -> None:
    with _listening() as busy, _listening() as busy_monitor:
        server = EmbeddedNats(tmp_path / "nats", auth=True, port=busy, monitor_port=busy_monitor)
        with server:
            assert server.port != busy and server.monitor_port != busy_monitor
            assert len(server.notes) == 2
            assert f"client port {busy} is in use" in server.notes[0]
            assert _get(f"{server.monitor_url}/varz")["port"] == server.port
        strict = EmbeddedNats(tmp_path / "nats2", port=busy, fallback=False)
        with pytest.raises(ServerError, match="in use"):
            strict.start()


def test_monitoring_is_off_when_not_asked_for(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as server:
        assert server.monitor_url is None
        assert not (tmp_path / "nats" / "nats.monitor.url").exists()


class _Up:
    """`eventsvc up` as a real process; its output collected line by line."""

    def __init__(self, lib: Path, data: Path, api_port: int, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eventsvc", "up", str(lib), "--data-dir", str(data),
             "--port", str(api_port), "--no-watch"],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT,
        )  # fmt: skip
        self.err: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines)).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err)).start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def _eventsvc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsvc", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **env},
    )  # fmt: skip


async def test_up_says_where_and_the_nats_context_reads_photos_read_only(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    make_jpeg(lib / "a.jpg")
    data = tmp_path / "data"
    nats_port, monitor_port, api_port = free_port(), free_port(), free_port()
    env = {
        "EVENTSVC_NATS_PORT": str(nats_port),
        "EVENTSVC_NATS_MONITOR_PORT": str(monitor_port),
        "EVENTSVC_WORKERS": '["hasher"]',
    }
    up = _Up(lib, data, api_port, env)
    try:
        await wait_until(lambda: any("eventsvc is up" in ln for ln in up.lines), 60, 0.1)
        # stdout, first: the URL to open, then where NATS is
        assert up.lines[0] == f"eventsvc is up: open http://127.0.0.1:{api_port}/", up.lines
        assert (
            f"NATS nats://127.0.0.1:{nats_port}, monitoring http://127.0.0.1:{monitor_port}"
            in (up.lines[1])
        )
        status_code, ctype = await asyncio.to_thread(_page, f"http://127.0.0.1:{api_port}/")
        assert status_code == 200 and "text/html" in ctype
        varz = _get(f"http://127.0.0.1:{monitor_port}/varz")
        assert varz["port"] == nats_port and varz["http_host"] == "127.0.0.1"

        def indexed() -> bool:
            jsz = _get(f"http://127.0.0.1:{monitor_port}/jsz?streams=true")
            return jsz.get("messages", 0) >= 2  # FileSeen, LibraryOnline, HashComputed …

        await wait_until(indexed, 60, 0.2)
        status = await asyncio.to_thread(_eventsvc, "status", "--json", "--data-dir", str(data),
                                         env=env)  # fmt: skip
        nats_status = json.loads(status.stdout)["nats"]
        assert nats_status["url"] == f"nats://127.0.0.1:{nats_port}"
        assert nats_status["monitor"] == f"http://127.0.0.1:{monitor_port}"

        ctx_dir = tmp_path / "ctx"
        made = await asyncio.to_thread(
            _eventsvc, "nats-context", "--data-dir", str(data), "--dir", str(ctx_dir), env=env
        )
        assert made.returncode == 0, made.stderr
        for cmd in (
            "stream view PHOTOS",
            "consumer report PHOTOS",
            "stream view PHOTOS --subject 'photos.*.*.DerivationFailed'",
        ):
            assert f"nats --context eventsvc {cmd}" in made.stdout
        assert f"http://127.0.0.1:{monitor_port}/varz" in made.stdout
        assert "note:" not in made.stderr  # the port is the configured, stable one
        await _read_photos_with_the_context_alone(ctx_dir / "eventsvc.json")
    finally:
        assert up.stop() == 0, "\n".join(up.err[-30:])
    # a restart keeps the ports: the written context stays valid
    up = _Up(lib, data, api_port, env)
    try:
        await wait_until(lambda: any("eventsvc is up" in ln for ln in up.lines), 60, 0.1)
        assert f"NATS nats://127.0.0.1:{nats_port}," in up.lines[1]
        await _read_photos_with_the_context_alone(tmp_path / "ctx" / "eventsvc.json")
    finally:
        assert up.stop() == 0, "\n".join(up.err[-30:])


async def _read_photos_with_the_context_alone(ctx_file: Path) -> None:
    """nats-py, given only what the `nats` CLI context file says, reads PHOTOS (an
    ordered consumer filtered on one event type) and cannot publish."""
    ctx = json.loads(ctx_file.read_text())
    nc = await nats.connect(
        ctx["url"], user=ctx["user"], password=ctx["password"],
        inbox_prefix=ctx["inbox_prefix"].encode(), max_reconnect_attempts=0,
    )  # fmt: skip
    try:
        js = nc.jetstream(timeout=3)
        info = await js.stream_info("PHOTOS")
        assert info.state.messages >= 2
        # what `nats consumer report PHOTOS` asks: the consumers and their state
        consumers = await nc.jsm().consumers_info("PHOTOS")
        assert "hasher" in {c.name for c in consumers}
        sub = await js.subscribe("photos.file.*.FileSeen", ordered_consumer=True)
        msg = await sub.next_msg(timeout=10)
        assert json.loads(msg.data)["path"] == "a.jpg"
        assert msg.headers and msg.headers["Eventsvc-Type"] == "FileSeen"
        await sub.unsubscribe()
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.publish("photos.library.evil.LibraryOnline", b"{}")
        assert (await js.stream_info("PHOTOS")).state.last_seq == info.state.last_seq
    finally:
        await nc.close()
