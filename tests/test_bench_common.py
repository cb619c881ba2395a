"""bench.common: the one statistic (median of N runs) and a quiet_gc that really stops GC."""

from __future__ import annotations

import gc

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
