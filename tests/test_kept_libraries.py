"""`eventsvc up` keeps its libraries in the data dir for the other commands on that dir."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

from eventsvc.cli_support import UP_LIBRARIES
from eventsvc.cli_support import keep_libraries as _keep_libraries
from eventsvc.cli_support import libraries_for as _libraries
from eventsvc.core.settings import Library, Settings


def test_up_libraries_round_trip_privately(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    libs = [
        Library(id="fam", name='Family "best" — été', root=tmp_path / "a b", exclude=("x/*",)),
        Library(id="old", name="Old", root=tmp_path / "old", enabled=False),
    ]
    _keep_libraries(settings, libs, ["*.xmp"])
    kept = settings.data_dir / UP_LIBRARIES
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    got, extra = _libraries(argparse.Namespace(paths=[]), settings)
    assert got == libs and extra == ["*.xmp"]


def test_paths_and_config_win_over_the_kept_libraries(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    _keep_libraries(settings, [Library(id="fam", name="F", root=tmp_path / "fam")], [])
    other = tmp_path / "other"
    other.mkdir()
    got, _ = _libraries(argparse.Namespace(paths=[str(other)]), settings)
    assert [lib.root for lib in got] == [other]


def test_no_kept_libraries_means_none(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert _libraries(argparse.Namespace(paths=[]), settings) == ([], [])
