"""bench.common: the one statistic (median of N runs) and a quiet_gc that really stops GC."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from bench.common import add_runs, base_parser, median, quiet_gc, runs_of, spread


def test_quiet_gc_disables_the_collector_and_restores_it() -> None:
    assert gc.isenabled()
    with quiet_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), quiet_gc():
        raise RuntimeError("a failed run")
    assert gc.isenabled()
    gc.disable()
    try:
        with quiet_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_runs_flag_defaults_quick_and_aliases() -> None:
    p = base_parser("x", None)
    add_runs(p, "--reps", quick=1)
    assert runs_of(p.parse_args([])) == 3
    assert runs_of(p.parse_args(["--quick"])) == 1
    assert runs_of(p.parse_args(["--runs", "5"])) == 5
    assert runs_of(p.parse_args(["--quick", "--reps", "4"])) == 4
    with pytest.raises(ValueError):
        add_runs(base_parser("y", None), default=2)


def test_median_and_spread() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert spread([0.33333, 0.11111]) == [0.111, 0.333]
    with pytest.raises(ValueError):
        median([])


def _burn(seconds: float) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_snapshot_counts_live_and_reaped_children() -> None:
    import multiprocessing
    import subprocess
    import sys

    from bench.common import CpuSnapshot

    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    live = subprocess.Popen([sys.executable, "-c", burn + "\nimport sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)  # fmt: skip
    try:
        snap = CpuSnapshot()
        ctx = multiprocessing.get_context("fork")
        reaped = ctx.Process(target=_burn, args=(0.4,))
        reaped.start()
        reaped.join()  # gone before used(): only RUSAGE_CHILDREN knows its CPU
        _burn(0.2)  # this process
        total, by_pid = snap.used()
        assert live.pid in by_pid  # alive: counted from the snapshot on
        assert total >= 0.4 + 0.2 + by_pid[live.pid] - 0.05, (total, by_pid)
        assert total < 0.4 + 0.2 + 0.4 + 0.5, (total, by_pid)
    finally:
        live.communicate(b"")


def test_pool_is_terminated_not_joined_on_an_exception() -> None:
    import time

    from bench.common import pool

    t0 = time.monotonic()
    with pytest.raises(RuntimeError), pool(2) as workers:
        workers.map_async(time.sleep, [30, 30])
        time.sleep(0.5)
        raise RuntimeError("interrupted")
    assert time.monotonic() - t0 < 10
    with pool(2) as workers:
        assert workers.map(abs, [-1, -2]) == [1, 2]


_SESSION_SCRIPT = """
import os, subprocess, sys, tempfile
from pathlib import Path
from bench import cleanup
from bench.common import scratch_dir

top = Path(sys.argv[1])
tempfile.tempdir = str(top)
outside = top / "outside"
outside.mkdir()
try:
    with cleanup.session("x") as run_dir:
        assert run_dir.parent == top, run_dir
        assert os.environ["TMPDIR"] == str(run_dir)
        assert Path(tempfile.mkdtemp()).parent == run_dir
        assert cleanup.cache_dir() == top
        with scratch_dir("y", outside):
            cleanup.register_dir(outside / "z")
            (outside / "z").mkdir()
            # a child that would outlive us, and its child: ended by the sweep
            child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                                      "g = subprocess.Popen([sys.executable, '-c', 'import time; "
                                      "time.sleep(60)']); print(g.pid, flush=True); "
                                      "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
            grandchild = int(child.stdout.readline())
            raise KeyboardInterrupt
except KeyboardInterrupt:
    pass
assert tempfile.tempdir == str(top)
left = sorted(p.name for p in top.iterdir() if not p.name.startswith("pymp-"))
assert left == ["outside"], left  # (multiprocessing removes its pymp- dir at exit)
assert list(outside.iterdir()) == [], list(outside.iterdir())
print("ok", child.pid, grandchild)
"""


def test_session_redirects_tmp_and_ends_children(tmp_path: Path) -> None:
    """In a child process: the sweep ends every child of the process it runs in."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _SESSION_SCRIPT, str(tmp_path)], cwd=root, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert list(tmp_path.glob("pymp-*")) == []
    last = out.stdout.splitlines()[-1].split()
    assert last[0] == "ok"
    for pid in map(int, last[1:]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
