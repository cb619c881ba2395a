"""``python -m bench NAME`` interrupted (^C / SIGINT, SIGTERM) mid-run: it stops promptly,
ends every child process (nats-server, pool workers, decoder children, ``eventsvc up``)
and leaves nothing in its $TMPDIR.

Real benches at their smallest sizes, started with a private $TMPDIR and a tag in their
environment (inherited by every process they start, so a leftover is found in /proc
whoever its parent is now); the signal is sent once a progress line shows the phase.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMPT_S = 30.0
"""How long the bench may take from the signal to its exit (a busy 2-core machine)."""


def _tagged(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment carries ``tag``."""
    needle = f"EVENTSVC_BENCH_TEST_TAG={tag}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # a zombie holds no resources; its parent reaps it
            with open(f"/proc/{name}/cmdline", "rb") as f:
                found.append((int(name), f.read().replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            continue
    return found


def _interrupt(
    tmp_path: Path, args: list[str], marker: str, sig: signal.Signals, *, group: bool,
    after_s: float = 0.0, wait_s: float = 240.0,
) -> tuple[int, list[str], float, list[str], list[tuple[int, str]]]:  # fmt: skip
    """Run the bench until ``marker`` is printed (+ ``after_s``), send ``sig`` (to its
    process group, like a terminal's ^C, when ``group``), then return (exit status,
    output lines, seconds from the signal to the exit, command lines of the bench's
    processes when the signal was sent, its processes still alive after its exit)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    tag = uuid.uuid4().hex
    env = dict(os.environ, TMPDIR=str(tmpdir), EVENTSVC_BENCH_TEST_TAG=tag, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + wait_s
    try:
        while not any(marker in line for line in lines):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"no {marker!r} line in {wait_s:.0f}s: " + "\n".join(lines[-20:]))
            if sel.select(timeout=0.5):
                chunk = os.read(proc.stdout.fileno(), 65536)
                buf += chunk
                *done, buf = buf.split(b"\n")
                lines += [d.decode(errors="replace") for d in done]
        time.sleep(after_s)
        running = [cmd for _, cmd in _tagged(tag)]
        t0 = time.monotonic()
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=PROMPT_S + 30)
        took = time.monotonic() - t0
        leftovers = _tagged(tag)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid, _ in _tagged(tag):  # whatever the bench left: not for the next tests
            os.kill(pid, signal.SIGKILL)
    lines += (buf + out).decode(errors="replace").splitlines()
    return proc.returncode, lines, took, running, leftovers


def _check(
    tmp_path: Path, name: str, sig: signal.Signals, rc: int, lines: list[str], took: float,
    leftovers: list[tuple[int, str]],
) -> None:  # fmt: skip
    text = "\n".join(lines[-30:])
    assert rc == 128 + sig, f"exit status {rc}:\n{text}"
    assert json.loads(lines[-1]) == {"bench": name, "error": f"interrupted by {sig.name}"}, text
    assert took < PROMPT_S, f"{took:.1f}s from the signal to the exit:\n{text}"
    assert leftovers == [], f"processes left running: {leftovers}"
    left = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "tmp").rglob("*"))
    assert left == [], f"left in $TMPDIR: {left[:20]}"


@pytest.mark.timeout(300)
def test_sigterm_while_a_pool_encodes_the_files(tmp_path: Path) -> None:
    """ingest: SIGTERM to the bench alone while its multiprocessing pool makes the files."""
    rc, lines, took, running, leftovers = _interrupt(
        tmp_path, ["ingest", "--quick", "--no-exiftool"], "scratch dir", signal.SIGTERM,
        group=False, after_s=1.0,
    )  # fmt: skip
    _check(tmp_path, "ingest", signal.SIGTERM, rc, lines, took, leftovers)
    assert not any("encoded" in line for line in lines), "the pool finished before the signal"
    assert sum("multiprocessing" in c or "-m bench" in c for c in running) >= 2, running


@pytest.mark.timeout(600)
def test_ctrl_c_while_the_pipeline_runs(tmp_path: Path) -> None:
    """ingest: ^C to the whole process group while our pipeline (asyncio, nats-server,
    decoder children) ingests."""
    rc, lines, took, running, leftovers = _interrupt(
        tmp_path, ["ingest", "--quick", "--no-exiftool"], "ours: media_concurrency",
        signal.SIGINT, group=True, after_s=1.0, wait_s=500,
    )  # fmt: skip
    _check(tmp_path, "ingest", signal.SIGINT, rc, lines, took, leftovers)
    assert not any("run 1/1 ours" in line for line in lines), "ours finished before the signal"
    assert any("nats-server" in c for c in running), running
    assert any("sandbox_child" in c for c in running), running
    assert not any("Traceback" in line for line in lines), "\n".join(lines[-40:])


@pytest.mark.timeout(300)
def test_sigint_while_eventsvc_up_runs(tmp_path: Path) -> None:
    """soak: SIGINT to the bench alone while its `eventsvc up` child (and that one's
    decoder children) index the library."""
    rc, lines, took, running, leftovers = _interrupt(
        tmp_path, ["soak", "--quick"], "scratch dir", signal.SIGINT, group=False, after_s=6.0
    )
    _check(tmp_path, "soak", signal.SIGINT, rc, lines, took, leftovers)
    assert any("eventsvc up" in c for c in running), running
    assert any("nats-server" in c for c in running), running


_FAKE_BENCH = """
import asyncio, time
from bench.common import scratch_dir

async def _run(mode):
    try:
        print("ready", flush=True)
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        if mode == "other":  # like nats-py: the cancellation comes out as another error
            raise RuntimeError("stalled while stopping") from None
        raise
    finally:
        if mode == "slow":
            time.sleep(60)  # a finally block that would not end by itself

def main(argv):
    with scratch_dir("fake", None):
        asyncio.run(_run(argv[0]))
    return 0
"""

_RUN_FAKE = (
    "import sys; sys.path.insert(0, sys.argv[1]); import bench; "
    "bench.BENCHMARKS['fake'] = ('fakebench', 'a test bench'); "
    "from bench.__main__ import main; sys.exit(main(['fake', sys.argv[2]]))"
)


@pytest.mark.parametrize(
    ("mode", "sig", "min_s"),
    [("other", signal.SIGINT, 0.0), ("slow", signal.SIGTERM, 9.0), ("plain", signal.SIGTERM, 0)],
)
def test_an_interrupt_that_ends_badly_or_slowly_still_cleans_up(
    tmp_path: Path, mode: str, sig: signal.Signals, min_s: float
) -> None:
    """The cancelled coroutine raises something else (still an interrupt: exit 130), or
    its finally block hangs (interrupted again after ESCALATE_S)."""
    (tmp_path / "fakebench.py").write_text(_FAKE_BENCH)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN_FAKE, str(tmp_path), mode], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        while "ready" not in proc.stdout.readline():
            assert proc.poll() is None, proc.communicate()
        assert any(p.name.startswith("eventsvc-bench-fake-run-") for p in tmpdir.iterdir())
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert json.loads(out.splitlines()[-1]) == {
        "bench": "fake",
        "error": f"interrupted by {sig.name}",
    }
    assert min_s <= took < min_s + 15, (took, err)
    assert list(tmpdir.iterdir()) == []
    if mode == "other":
        assert "RuntimeError('stalled while stopping')" in err
