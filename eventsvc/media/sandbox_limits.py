"""The decode sandbox's limits (:class:`DecodeLimits`, from settings) and the failure it
reports when a decode goes over them (:class:`DecodeFailed`), with the wording of a
decoder process's death."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

from eventsvc.core.errors import ConfigError, PermanentError
from eventsvc.media.facts import MediaError
from eventsvc.media.sandbox_child import EXIT_MEMORY

__all__ = ["MIN_MEMORY_MB", "DecodeFailed", "DecodeLimits", "death_cause", "memory_message"]

MIN_MEMORY_MB = 256
"""The smallest decode_max_memory_mb accepted (0 aside: no limit)."""


class DecodeFailed(PermanentError, MediaError):
    """A decode refused or stopped by the sandbox: ``kind`` is 'budget', 'memory',
    'timeout', 'crashed' or 'undecodable'."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_pixels: int = 64_000_000
    memory_mb: int = 1024
    timeout: float = 60.0
    processes: int = 2
    idle_seconds: float = 30.0
    """An idle child older than this exits (0: never)."""

    @classmethod
    def from_settings(cls, settings: Any) -> DecodeLimits:
        """The limits of ``settings``; ConfigError for a memory limit no decoder fits in."""
        if 0 < int(settings.decode_max_memory_mb) < MIN_MEMORY_MB:
            raise ConfigError(
                f"decode_max_memory_mb={settings.decode_max_memory_mb} is too small: at least "
                f"{MIN_MEMORY_MB} (a decoder process takes ~130 MB before decoding), or 0"
            )
        return cls(
            max_pixels=int(settings.decode_max_pixels),
            memory_mb=int(settings.decode_max_memory_mb),
            timeout=float(settings.decode_timeout),
            processes=max(1, int(settings.decode_processes or os.cpu_count() or 1)),
            idle_seconds=float(getattr(settings, "decode_idle_seconds", 30.0)),
        )


def memory_message(limits: DecodeLimits, detail: object = None) -> str:
    text = f"over the decode memory limit of {limits.memory_mb} MB (EVENTSVC_DECODE_MAX_MEMORY_MB)"
    detail = str(detail or "").strip()
    return f"{text}: {detail}" if detail and detail != "MemoryError:" else text


def death_cause(code: int | None, limits: DecodeLimits) -> tuple[str, str]:
    if code == EXIT_MEMORY:
        return "memory", memory_message(limits)
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "crashed", (
            f"the decoder process died ({name}), possibly at the memory limit of "
            f"{limits.memory_mb} MB (EVENTSVC_DECODE_MAX_MEMORY_MB)"
        )
    return "crashed", f"the decoder process exited (status {code})"
