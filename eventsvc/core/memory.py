"""Giving memory back to the system after a burst (issue 18).

A large catch-up (the projector applying a long backlog, the scanner folding the log at
start) frees its objects afterwards, but glibc keeps the freed heap pages mapped until a
trim: the process's RSS would stay at its peak while it sits idle."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

__all__ = ["release_free_memory"]

log = logging.getLogger(__name__)

_libc: ctypes.CDLL | None = None
_looked = False


def _malloc_trim() -> bool:
    global _libc, _looked
    if not _looked:
        _looked = True
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
            if lib is not None and hasattr(lib, "malloc_trim"):
                _libc = lib
        except OSError:  # not glibc (musl, macOS): nothing to trim
            _libc = None
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))


def release_free_memory() -> bool:
    """Collect cycles, then hand free heap pages back to the OS (glibc ``malloc_trim``);
    False where the C library has no trim. Cheap enough to call after each burst."""
    gc.collect()
    return _malloc_trim()
