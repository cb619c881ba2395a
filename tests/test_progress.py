"""Progress of the long commands (issue 14): a bar on a terminal (a real pseudo-terminal
here), plain lines without one (no ANSI codes). Real processes, real nats-server."""

from __future__ import annotations

import fcntl
import io
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from eventsvc.cli_progress import ProgressBar, backfill_progress, plain_line
from eventsvc.server import EmbeddedNats
from tests.harness import make_jpeg

ANSI = "\x1b["


def _on_pty(*args: str, timeout: float = 90) -> tuple[int, str, str]:
    """`eventsvc ARGS` with stderr on a pseudo-terminal (120 columns); stdout piped."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventsvc", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        out = proc.stdout.read().decode() if proc.stdout else ""
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def _piped(*args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "eventsvc", *args], capture_output=True, text=True, timeout=90
    )
    return done.returncode, done.stdout, done.stderr


def _library(tmp_path: Path, n: int = 3) -> Path:
    lib = tmp_path / "Pictures"
    past = time.time() - 3600  # settled (EVENTSVC_SETTLE_SECONDS): published at once
    for i in range(n):
        os.utime(make_jpeg(lib / f"p{i}.jpg", i), (past, past))
    return lib


def test_scan_and_rebuild_show_a_bar_on_a_terminal(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    common = ["--nats-url", nats_server.url, "--data-dir", str(tmp_path / "data")]
    rc, out, term = _on_pty("scan", str(_library(tmp_path)), *common)
    assert rc == 0, term
    assert ANSI in term and "scanning" in term, term
    assert json.loads(out.splitlines()[0])["state"] == "online"
    rc, out, term = _on_pty("rebuild", *common)
    assert rc == 0, term
    assert ANSI in term and "replaying" in term and "100%" in term, term
    assert "━" in term  # the bar itself
    assert ANSI not in out  # stdout (the result) stays plain


def test_without_a_terminal_plain_lines_with_rate_and_no_ansi(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    common = ["--nats-url", nats_server.url, "--data-dir", str(tmp_path / "data")]
    rc, out, err = _piped("scan", str(_library(tmp_path)), *common)
    assert rc == 0, err
    assert ANSI not in err
    report = json.loads(out.splitlines()[0])
    assert report["new"] + report["changed"] == 3, out
    assert "scanning pictures: published: 3" in err, err
    rc, out, err = _piped("rebuild", *common)
    assert rc == 0, err
    assert ANSI not in err and ANSI not in out
    last = json.loads(out)["last_seq"]
    lines = [line for line in err.splitlines() if line.startswith("replaying: ")]
    assert lines and lines[-1].startswith(f"replaying: {last}/{last} (100%)"), err
    assert "/s" in lines[-1], err


def test_plain_lines_are_throttled_and_carry_rate_and_eta() -> None:
    out = io.StringIO()
    with ProgressBar(out, interval=3600) as bar:
        task = bar.add("replaying", total=1000)
        for done in range(0, 1001, 100):
            bar.update(task, done)
            time.sleep(0.01)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the first, then (throttled) only the last
    assert lines[-1].startswith("replaying: 1000/1000 (100%), ")
    assert lines[-1].endswith("/s")
    assert plain_line("x", 250, 1000, 50.0) == "x: 250/1000 (25%), 50.0/s, ETA 0:00:15"
    assert plain_line("x", 7, None, None) == "x: 7"


def test_a_backfill_without_a_terminal_keeps_its_json_lines() -> None:
    out = io.StringIO()
    progress = backfill_progress("rederive media", ProgressBar(out), stream=out)
    state = {"stage": "media", "pending": 2, "in_flight": 1, "rederived": 3, "failed": 0}
    progress(state)
    progress(dict(state))  # the same state: said once
    progress(state | {"pending": 0, "in_flight": 0, "rederived": 6})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["rederived"] for line in lines] == [3, 6]


def test_a_backfill_on_a_terminal_is_a_bar_of_done_over_all() -> None:
    out = io.StringIO()
    with ProgressBar(out, tty=True) as bar:
        progress = backfill_progress("reencode m", bar, stream=out)
        progress({"pending": 6, "in_flight": 2, "encoded": 2, "skipped": 0, "failed": 0})
        progress({"pending": 0, "in_flight": 0, "encoded": 9, "skipped": 1, "failed": 0})
    text = out.getvalue()
    assert ANSI in text and "reencode m" in text and "10/10" in text, text
    assert "{" not in text  # no JSON on a terminal
