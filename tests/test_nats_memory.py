"""The embedded nats-server's Go memory settings (issue 18): GOMEMLIMIT / GOGC reach the
real server process, the settings validate, and ``off`` leaves the environment's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from nats.js.api import StoreCompression
from pydantic import ValidationError

from eventsvc.core.events import FileSeen, decode
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from eventsvc.server import EmbeddedNats


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(kv.decode().partition("=")[::2] for kv in raw if b"=" in kv)


def test_the_server_runs_with_the_memory_settings(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", memory_limit="96MiB", gogc=50)
    server.start()
    try:
        assert server.proc is not None
        env = _environ(server.proc.pid)
        assert env.get("GOMEMLIMIT") == "96MiB"
        assert env.get("GOGC") == "50"
    finally:
        server.stop()


def test_off_leaves_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    monkeypatch.setenv("GOGC", "80")
    server = EmbeddedNats(tmp_path / "nats", memory_limit="off")
    server.start()
    try:
        assert server.proc is not None
        env = _environ(server.proc.pid)
        assert "GOMEMLIMIT" not in env
        assert env.get("GOGC") == "80"
    finally:
        server.stop()


def test_gogc_zero_turns_the_collector_off_but_for_the_limit(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", memory_limit="64MiB", gogc=0)
    assert server.go_env()["GOGC"] == "off"
    assert server.go_env()["GOMEMLIMIT"] == "64MiB"


def test_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSVC_NATS_MEMORY_LIMIT", "1GiB")
    monkeypatch.setenv("EVENTSVC_NATS_GOGC", "75")
    s = Settings()
    assert (s.nats_memory_limit, s.nats_gogc) == ("1GiB", 75)
    monkeypatch.setenv("EVENTSVC_NATS_MEMORY_LIMIT", "off")
    assert Settings().nats_memory_limit == "off"
    monkeypatch.setenv("EVENTSVC_NATS_MEMORY_LIMIT", "lots")
    with pytest.raises(ValidationError):
        Settings()


async def test_the_stream_is_compressed_and_an_old_one_is_updated(
    nats_server: EmbeddedNats,
) -> None:
    """Issue 18: S2 block compression (about a third of the disk of plain JSON blocks); a
    stream made before it is updated by the admin's ensure_stream, and still reads."""
    admin = await EventLog.connect(nats_server.url)
    try:
        old = dataclasses.replace(admin.stream_config(), compression=StoreCompression.NONE)
        await admin.js.add_stream(old)
        ev = FileSeen(
            library_id="lib", file_id="f" * 32, path="a.jpg", size=1, mtime_ns=1,
            media_kind="image",
        )  # fmt: skip
        await admin.publish(ev)
        assert "compression" in (await admin.stream_state()).differs
        await admin.ensure_stream()
        info = await admin.js.stream_info(admin.stream)
        assert info.config.compression == StoreCompression.S2
        assert (await admin.stream_state()).differs == ()
        await admin.publish(ev.model_copy(update={"size": 2, "file_id": "e" * 32}))
        sizes = []
        async for batch in admin.read([f"{admin.prefix}.>"]):
            sizes += [decode(m.data, m.headers).size for m in batch]  # type: ignore[attr-defined]
        assert sizes == [1, 2]
    finally:
        await admin.close()
