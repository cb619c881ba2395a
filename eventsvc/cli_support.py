"""What every `eventsvc` command shares: settings, libraries, logging, signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from eventsvc.core.errors import ConfigError, EventsvcError
from eventsvc.core.settings import Library, Settings, load_libraries

__all__ = [
    "UP_LIBRARIES",
    "keep_libraries",
    "libraries_for",
    "read_model_library_ids",
    "settings_for",
    "setup_logging",
    "until_signalled",
]

log = logging.getLogger("eventsvc")


def settings_for(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for flag, key in (
        ("data_dir", "data_dir"),
        ("port", "api_port"),
        ("host", "api_host"),
        ("nats_url", "nats_url"),
        ("config", "libraries_file"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "no_watch", False):
        overrides["watch"] = False
    if getattr(args, "insecure_no_auth", False):
        overrides["api_allow_unauthenticated"] = True
    return Settings(**overrides)


UP_LIBRARIES = "libraries.toml"
"""What ``up`` was given, kept (0600) in its data dir for the other commands on that dir."""


def read_model_library_ids(settings: Settings) -> dict[str, str]:
    """root -> library id, as the read model (the log's LibraryOnline/LibraryStale) has
    them; empty when there is no read model."""
    from projections import readmodel  # imported when used: the CLI starts without it

    try:
        path = readmodel.current_path(settings.readmodel_dir)
        if path is None or not path.exists():
            return {}
        conn = readmodel.open_reader(path)
        try:
            rows = conn.execute(
                "SELECT root, library_id FROM libraries ORDER BY state_seq"
            ).fetchall()
        finally:
            conn.close()
    except (EventsvcError, sqlite3.Error, OSError) as exc:
        log.warning("cannot read the library ids of the read model: %s", exc)
        return {}
    return {str(root): str(lib_id) for root, lib_id in rows}


def libraries_for(
    args: argparse.Namespace, settings: Settings, log_ids: Mapping[str, str] | None = None
) -> tuple[list[Library], list[str]]:
    """PATH arguments and/or ``--config``; else the libraries the last ``eventsvc up`` on
    this data dir was given (configuration its owner wrote, never roots from the log).

    A library given without an id keeps the one this data dir knows for its root (the
    kept libraries, then ``log_ids``: root -> id from the log, then the read model), so
    ids never change under an existing log; only a new root gets an id from its name."""
    paths = getattr(args, "paths", None) or []
    kept = settings.data_dir / UP_LIBRARIES
    if not paths and settings.libraries_file is None:
        if kept.is_file():
            return load_libraries([], kept)
    known = {**read_model_library_ids(settings), **(log_ids or {})}
    if kept.is_file():
        try:
            known.update({str(lib.root): lib.id for lib in load_libraries([], kept)[0]})
        except ConfigError as exc:
            log.warning("ignoring the kept libraries: %s", exc)
    return load_libraries(paths, settings.libraries_file, known=known)


def keep_libraries(settings: Settings, libraries: list[Library], excludes: list[str]) -> None:
    """Write what ``up`` serves to ``<data dir>/libraries.toml`` (TOML strings as JSON's)."""
    lines = [f"exclude = {json.dumps(excludes)}", ""]
    for lib in libraries:
        lines += [
            "[[library]]",
            f"id = {json.dumps(lib.id)}",
            f"name = {json.dumps(lib.name)}",
            f"root = {json.dumps(str(lib.root))}",
            f"enabled = {'true' if lib.enabled else 'false'}",
            f"exclude = {json.dumps(list(lib.exclude))}",
            "",
        ]
    target = settings.data_dir / UP_LIBRARIES
    try:
        text = "\n".join(lines)
        text.encode()  # a root that is not valid UTF-8 cannot be written: keep none
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(target)
    except (OSError, UnicodeError) as exc:
        log.warning("cannot keep the libraries in %s: %s", target, exc)


def setup_logging(level: str, fmt: str = "text", levels: str = "") -> None:
    """The process's one log configuration (eventsvc.core.logs): kept by Litestar and
    uvicorn; a bad level or format is a ConfigError."""
    from eventsvc.core.logs import setup_logging as configure

    try:
        configure(level, fmt, levels=levels)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


async def until_signalled(
    runners: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]],
) -> None:
    """Run components until SIGINT/SIGTERM or until one of them fails."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(r(stop)) for r in runners]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    error: BaseException | None = None
    for t in done:
        if t is not waiter and t.exception() is not None:
            error = t.exception()
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    if error is not None:
        raise error


# ---------------------------------------------------------------- commands
