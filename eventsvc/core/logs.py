"""One log format for every component and library (issue 14).

- :func:`setup_logging` configures the root logger once: plain text lines
  (``2026-01-02 03:04:05,678 INFO eventsvc: message``; rich's handler on a terminal) or
  JSON lines for log shippers (``--log-format json``: one object per line with ``ts``,
  ``level``, ``logger``, ``msg`` and any ``extra`` fields). Third-party chatter
  (watchfiles, httpx, nats, asyncio, uvicorn, huggingface_hub, PIL, …) is kept at WARNING;
  at DEBUG the API's requests are logged too (``uvicorn.access``, one line each).
- :func:`litestar_logging` is the Litestar ``logging_config`` that keeps this configuration
  (Litestar's default replaces the root logger's handlers and level); uvicorn is started
  with ``log_config=None`` for the same reason.
- :class:`Repeats` logs each repeated condition once, then counts it
  (``… (repeated 18 times)``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "QUIET_LOGGERS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "Repeats",
    "litestar_logging",
    "parse_levels",
    "sentence_cut",
    "setup_logging",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

QUIET_LOGGERS = (
    "asyncio",
    "watchfiles",
    "httpx",
    "httpcore",
    "nats",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "litestar",
    "huggingface_hub",
    "filelock",
    "urllib3",
    "PIL",
    "exifread",
    "multipart",
    "onnxruntime",
    "opentelemetry",
    "markdown_it",
)
"""Third-party loggers held at WARNING (unless ``log_levels`` says otherwise)."""

# the attributes every LogRecord has: anything else came in through ``extra=``
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601 UTC), level, logger, msg, extra fields,
    ``exc`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def parse_levels(text: str) -> dict[str, str]:
    """``"watchfiles=INFO, nats=DEBUG"`` -> ``{"watchfiles": "INFO", "nats": "DEBUG"}``."""
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, level = part.partition("=")
        level = level.strip().upper()
        if not sep or not name.strip() or not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"bad log level override {part.strip()!r} (want NAME=LEVEL)")
        out[name.strip()] = level
    return out


def setup_logging(
    level: str | int = "INFO",
    fmt: str = "text",
    *,
    levels: str | dict[str, str] = "",
    stream: IO[str] | None = None,
) -> None:
    """Configure the root logger: one handler, one format, ``level``; the loggers of
    :data:`QUIET_LOGGERS` at WARNING or above; ``levels`` (``NAME=LEVEL,…``) last."""
    stream = stream if stream is not None else sys.stderr
    if isinstance(level, str):
        level = level.upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"unknown log level {level!r} (DEBUG, INFO, WARNING, ERROR)")
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r} (text or json)")
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=stream), show_path=False, rich_tracebacks=True)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    floor = max(logging.WARNING, root.level)
    for name in QUIET_LOGGERS:
        lg = logging.getLogger(name)
        lg.setLevel(floor)
        if name == "uvicorn.access" and root.level <= logging.DEBUG:
            lg.setLevel(logging.DEBUG)  # the API's requests, one line each, at DEBUG only
        # a library that configured its own handlers (uvicorn's, Litestar's) goes through ours
        for old in list(lg.handlers):
            lg.removeHandler(old)
        lg.propagate = True
    overrides = parse_levels(levels) if isinstance(levels, str) else levels
    for name, lvl in overrides.items():
        logging.getLogger(name).setLevel(lvl.upper())
    logging.captureWarnings(True)


def litestar_logging() -> Any:
    """A Litestar ``logging_config`` that keeps the configuration of
    :func:`setup_logging` (Litestar logs through the ``litestar`` logger, which
    propagates to our root handler) instead of replacing it."""
    from litestar.logging.config import LoggingConfig

    class _KeepLogging(LoggingConfig):
        def configure(self) -> Any:  # no dictConfig: the process's configuration stays
            return logging.getLogger

    return _KeepLogging(configure_root_logger=False)


def sentence_cut(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters, cut after a whole sentence
    (or word) with "…" rather than in the middle of one."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    head = flat[: limit - 1]
    for stop in (". ", "; ", ": ", ", "):
        at = head.rfind(stop)
        if at >= limit // 2:
            return head[: at + 1].rstrip(",;:") + " …"
    at = head.rfind(" ")
    return (head[:at] if at >= limit // 2 else head) + " …"


@dataclass
class _Seen:
    level: int
    msg: str
    args: tuple[Any, ...]
    count: int = 0
    last: float = field(default_factory=time.monotonic)


class Repeats:
    """Each repeated condition logged once, then counted: a repetition of ``key`` is not
    logged; ``… (repeated N times)`` is, when the condition ends (:meth:`clear`) or
    every ``every`` seconds while it goes on."""

    def __init__(self, logger: logging.Logger, every: float = 600.0) -> None:
        self.logger = logger
        self.every = every
        self._seen: dict[Any, _Seen] = {}

    def log(self, level: int, key: Any, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` the first time ``key`` comes; True when it was logged."""
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(level, msg, args, last=now)
            self.logger.log(level, msg, *args)
            return True
        seen.count += 1
        seen.msg, seen.args = msg, args
        if now - seen.last >= self.every:
            self._summary(seen)
            seen.count, seen.last = 0, now
        return False

    def count(self, key: Any) -> int:
        """Repetitions of ``key`` not reported yet."""
        seen = self._seen.get(key)
        return seen.count if seen else 0

    def clear(self, key: Any = None) -> None:
        """The condition ``key`` (None: every one) ended: its count, if any, is logged."""
        keys = list(self._seen) if key is None else [key]
        for k in keys:
            seen = self._seen.pop(k, None)
            if seen is not None and seen.count:
                self._summary(seen)

    def _summary(self, seen: _Seen) -> None:
        times = f"{seen.count} time{'' if seen.count == 1 else 's'}"
        self.logger.log(seen.level, seen.msg + " (repeated %s)", *seen.args, times)
