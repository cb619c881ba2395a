"""Small file systems for the disk-full faults: a tmpfs of a given size (we run as root),
enlarged or made read-only in place. A test skips only when mounting is not permitted,
and says why."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "read_only", "remount", "tmpfs"]


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=20)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def remount(path: Path, options: str) -> None:
    done = _mount("-o", f"remount,{options}", str(path))
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted read-only over itself."""
    done = _mount("--bind", str(path), str(path))
    if done.returncode != 0:
        pytest.skip(f"bind mounts are not permitted here: {done.stderr.strip()}")
    try:
        remount(path, "bind,ro")
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def fill(directory: Path, name: str = "filler", leave: int = 0) -> Path:
    """Fill the file system of ``directory`` up to the last byte, then give ``leave``
    bytes back."""
    target = directory / name
    with contextlib.suppress(OSError), open(target, "wb", buffering=0) as f:
        chunk = b"\0" * (1 << 16)
        while True:
            f.write(chunk)
    with contextlib.suppress(OSError), open(target, "ab", buffering=0) as f:
        while True:  # the last partial chunk
            f.write(b"\0" * 512)
    if leave:
        os.truncate(target, max(0, target.stat().st_size - leave))
    return target
