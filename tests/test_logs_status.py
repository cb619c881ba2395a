"""`eventsvc status` shows the failures per stage and their last reasons, and `--watch`
refreshes it until SIGINT/SIGTERM (issue 14). Real pipeline, real nats-server, real
processes."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.server import EmbeddedNats
from tests.harness import Pipeline, make_jpeg, running
from tests.test_progress import _on_pty


async def _with_a_failure(tmp_path: Path, event_log: EventLog, settings: Settings) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "good.jpg", 1)
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg " * 20)
    libraries, _ = load_libraries([str(lib)], None)
    async with running(Pipeline(event_log, settings, libraries)) as p:
        await p.scanner.tick(full=True)
        await p.settled()


def _args(nats_server: EmbeddedNats, settings: Settings) -> list[str]:
    return ["--nats-url", nats_server.url, "--data-dir", str(settings.data_dir)]


async def test_status_shows_failures_per_stage_and_the_last_reasons(
    tmp_path: Path, event_log: EventLog, settings: Settings, nats_server: EmbeddedNats
) -> None:
    await _with_a_failure(tmp_path, event_log, settings)
    done = _status_json(*_args(nats_server, settings))
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout)["failures"]
    assert failures["total"] >= 1
    stages = failures["by_stage"]
    assert stages and all(s["failed"] >= 1 for s in stages.values()), stages
    first = next(iter(stages.values()))
    assert "broken.jpg" in first["last_reason"], stages
    assert failures["recent"][0]["stage"] in stages
    assert "broken.jpg" in failures["recent"][0]["reason"]

    rc, out, _ = _on_pty("status", *_args(nats_server, settings))  # stdout: not a tty here
    assert rc == 0
    assert json.loads(out)["failures"]["total"] == failures["total"]


def _status_json(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsvc", "status", "--json", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _watch_lines(*args: str, count: int) -> tuple[int | None, list[dict], str]:
    """`status --watch 0.3` piped: ``count`` JSON lines, then SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventsvc", "status", "--watch", "0.3", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[dict] = []
    try:
        deadline = time.monotonic() + 60
        while len(lines) < count and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                break
            lines.append(json.loads(line))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, lines, err


def _pty_stdout(*args: str, stop_after: str, times: int = 2) -> tuple[int, str]:
    """`eventsvc ARGS` with stdout on a pseudo-terminal, SIGINT once ``stop_after`` has been
    written ``times`` times (a started process that did its work, not a fixed wait)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventsvc", *args],
        stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"},
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    start = time.monotonic()
    sent = False
    try:
        while time.monotonic() - start < 60:
            out = b"".join(chunks).decode(errors="replace")
            if not sent and out.count(stop_after) >= times:
                proc.send_signal(signal.SIGINT)
                sent = True
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


async def test_status_watch_refreshes_until_a_signal(
    tmp_path: Path, event_log: EventLog, settings: Settings, nats_server: EmbeddedNats
) -> None:
    await _with_a_failure(tmp_path, event_log, settings)
    # without a terminal: one JSON object per line and refresh; SIGTERM ends it (0)
    rc, lines, err = _watch_lines(*_args(nats_server, settings), count=3)
    assert rc == 0, err
    assert len(lines) == 3, (lines, err)
    assert all(line["failures"]["total"] >= 1 for line in lines)
    assert len({line["at"] for line in lines}) >= 2  # refreshed, not repeated

    # on a terminal: the tables, redrawn; Ctrl-C (SIGINT) ends it (0)
    rc, term = _pty_stdout("status", "--watch", "0.3", *_args(nats_server, settings),
                           stop_after="eventsvc status at")  # fmt: skip
    assert rc == 0, term
    assert "failures" in term and "last reason" in term and "broken.jpg" in term, term
    assert term.count("eventsvc status at") >= 2, term
    assert "Traceback" not in term
