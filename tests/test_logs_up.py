"""`eventsvc up` obeys the log level and keeps one format on every line, the API's
included (issue 14: building the API replaced the logging configuration). Real
processes, real nats-server, output captured."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

from eventsvc.server import free_port
from tests.harness import cli, make_jpeg, wait_until
from tests.test_e2e import _stop

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: "
)
ENV = {"EVENTSVC_WORKERS": '["hasher","media"]', "HF_HUB_OFFLINE": "1"}


BANNER = ("eventsvc is up: open ", "  NATS ")
"""The two lines `up` prints for people once the API listens (stdout)."""


def _run_up(tmp_path: Path, *flags: str, env: dict[str, str]) -> str:
    lib = tmp_path / "Pictures"
    for i in range(2):
        make_jpeg(lib / f"p{i}.jpg", i)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    proc = cli(
        "up", str(lib), "--data-dir", str(tmp_path / "data"), "--port", str(port),
        "--no-watch", *flags, env={**ENV, **env},
    )  # fmt: skip
    try:

        def indexed() -> bool:
            try:
                with urllib.request.urlopen(f"{api}/photos?limit=10", timeout=5) as r:
                    items = json.loads(r.read())["items"]
            except OSError:
                return False
            return len(items) == 2 and all(i["thumbnail"] for i in items)

        asyncio.run(wait_until(indexed, 90, 0.5))
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    # `up` prints the address to open on stdout, not as a log line: take those two out
    banner = [line for line in out.splitlines() if line.startswith(BANNER)]
    assert [line.split(": open ")[1] for line in banner if "is up" in line] == [f"{api}/"], out
    return "\n".join(line for line in out.splitlines() if not line.startswith(BANNER))


def test_up_at_info_has_no_debug_lines_and_one_format(tmp_path: Path) -> None:
    out = _run_up(tmp_path, env={"EVENTSVC_LOG_LEVEL": "INFO"})
    lines = out.splitlines()
    assert any("eventsvc up:" in line for line in lines), out
    bad = [line for line in lines if not TEXT_LINE.match(line)]
    assert not bad, out
    assert not [line for line in lines if " DEBUG " in line], out
    assert not [line for line in lines if "uvicorn" in line or "litestar" in line], out


def test_up_at_debug_in_json_logs_debug_lines_and_the_apis_requests(tmp_path: Path) -> None:
    out = _run_up(
        tmp_path, "--log-level", "DEBUG", "--log-format", "json", env={"EVENTSVC_LOG_LEVEL": "INFO"}
    )
    records = []
    for line in out.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not a JSON line: {line!r}\n{out}") from exc
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    debug = [r for r in records if r["level"] == "DEBUG"]
    assert any("deriving from seq" in r["msg"] for r in debug), out
    # the API's own lines (its requests) come through the same configuration
    assert any(r["logger"] == "uvicorn.access" and "/photos" in r["msg"] for r in records), out
    up = next(i for i, r in enumerate(records) if r["msg"].startswith("eventsvc up:"))
    assert any(r["level"] == "DEBUG" for r in records[up + 1 :]), out  # after the API's build
