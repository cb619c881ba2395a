"""The layers (README, "Layout"): the import-linter contracts in pyproject.toml hold.

composition (cli*, components, server) > read side (projections) | write side (scanner,
derive, video) > shared libraries (media, inference) > core. The read side imports only
the core; nothing below the composition imports the read side; no import cycles.
import-linter follows lazy imports inside functions too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` of this interpreter's environment, run in ``cwd`` (its
    pyproject.toml and packages)."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        found = shutil.which("lint-imports")
        assert found, "import-linter is not installed (pip install -e '.[test]')"
        exe = Path(found)
    return subprocess.run(
        [str(exe), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_layer_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def _copy(tmp: Path) -> Path:
    shutil.copy2(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    for package in ("eventsvc", "projections"):
        shutil.copytree(ROOT / package, tmp / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp


def _leak(module: Path, imported: str) -> None:
    """A lazy import inside a function, as the leaks were written."""
    with module.open("a") as f:
        f.write(f"\n\ndef _leak() -> None:\n    import {imported}  # noqa\n")


def test_the_contracts_catch_a_lazy_read_side_import_of_the_write_side(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    _leak(tree / "projections" / "api" / "db.py", "eventsvc.media.thumbs")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    assert "projections.api.db -> eventsvc.media.thumbs" in result.stdout, result.stdout


def test_the_contracts_catch_core_importing_upwards_and_a_cycle(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    _leak(tree / "eventsvc" / "core" / "ids.py", "projections.readmodel")
    _leak(tree / "eventsvc" / "derive" / "hashing.py", "eventsvc.components")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    out = result.stdout
    assert "eventsvc.core.ids -> projections.readmodel" in out, out
    assert "eventsvc.derive.hashing -> eventsvc.components" in out, out
    assert ".derive -> .components" in out, out  # the cycle contract names it too
