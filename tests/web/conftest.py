"""Browser tests: headless Debian Chromium driven by Playwright against a real `eventsvc up`.

One `up` per session (embedded nats-server, a temporary data dir, a free port) on the
generated library of ``tests/web/library.py``, with the fake face back-end behind the
inference protocol. Every page opened through :class:`Browser` records console errors,
uncaught exceptions and every request's host; :meth:`Browser.check` asserts there were no
errors and no request to any host but the app's own, and screenshots the page into
``EVENTSVC_SCREENSHOTS`` (else a session temporary folder; printed at the end).

Runs where a `chromium` binary and the ``playwright`` package are installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from eventsvc.server import free_port
from tests.web.library import Library, fake_inference, make_library

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import Browser as PwBrowser
    from playwright.sync_api import ConsoleMessage, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

QUIET = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
WORKERS = ["hasher", "media", "faces", "people", "playlist"]
INDEX_TIMEOUT = 150.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    why = "no chromium binary on PATH" if CHROMIUM is None else "no playwright package"
    if CHROMIUM is None or sync_playwright is None:
        for item in items:
            if "tests/web/test_browser" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(pytest.mark.skip(reason=why))


# ------------------------------------------------------------------ the server


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def send_json(url: str, body: object, method: str = "POST") -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Server:
    """A running `eventsvc up` and what it indexed."""

    def __init__(self, lib: Library, data: Path, inference: str) -> None:
        self.lib, self.data, self.inference = lib, data, inference
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data.parent / "up.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "EVENTSVC_WORKERS": json.dumps(WORKERS),
            "EVENTSVC_FACES_INFERENCE_URL": self.inference,
            "EVENTSVC_LOG_LEVEL": "WARNING",
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "eventsvc", "up", str(self.lib.root),
                 "--data-dir", str(self.data), "--port", str(self.port), "--no-watch"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.wait(lambda: get_json(f"{self.url}/healthz")["status"] == "ok", 60, "up answers")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def wait(self, pred: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"eventsvc up exited: {self.tail()}")
            try:
                value = pred()
                if value:
                    return value
            except (OSError, ValueError, KeyError, TypeError) as exc:
                last = exc
            time.sleep(0.25)
        raise AssertionError(f"{what}: not within {timeout}s ({last!r}); {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def api(self, path: str) -> Any:
        return get_json(self.url + path)

    def post(self, path: str, body: object, method: str = "POST") -> Any:
        return send_json(self.url + path, body, method)

    def photos(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        url = "/photos?limit=200"
        while True:
            page = self.api(url)
            items += page["items"]
            if not page["next"]:
                return items
            url = f"/photos?limit=200&cursor={page['next']}"

    def quiet(self) -> bool:
        """Every worker's backlog done and the read model caught up."""
        state = self.api("/pipeline")
        busy = any(c["pending"] or c["ack_pending"] for c in state["consumers"])
        return not busy and state["projector"]["lag"] == 0

    def indexed(self) -> bool:
        photos = self.photos()
        if len(photos) != len(self.lib.files) or not all(p["thumbnail"] for p in photos):
            return False
        people = self.api("/people")["items"]
        if sorted(p["face_count"] for p in people) != [3, 4]:
            return False
        if not self.api("/duplicates?kind=near")["items"] or not self.api("/duplicates")["items"]:
            return False
        video = next(p for p in photos if p["media_kind"] == "video")
        if self.api(f"/videos/{video['content_hash']}")["state"] != "ready":
            return False
        return self.quiet() and self.api("/pipeline")["failures"]["total"] == 1

    def rebuild(self) -> None:
        """`eventsvc rebuild` on the live data dir, as README says (the API keeps serving)."""
        out = subprocess.run(
            [sys.executable, "-m", "eventsvc", "rebuild", "--data-dir", str(self.data)],
            capture_output=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("web")
    lib = make_library(base / "Pictures")
    with fake_inference() as inference:
        srv = Server(lib, base / "data", inference)
        srv.start()
        try:
            srv.wait(srv.indexed, INDEX_TIMEOUT, "the library indexed")
            yield srv
        finally:
            srv.stop()


# ------------------------------------------------------------------ the browser


def shots_dir(factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("EVENTSVC_SCREENSHOTS")
    d = Path(named) if named else factory.mktemp("screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


class Browser:
    """Opens pages of the app and keeps, per page, its console errors and request hosts."""

    def __init__(
        self, browser: PwBrowser, server: Server, shots: Path, width: int = 1280, height: int = 860
    ) -> None:
        self.browser, self.server, self.shots = browser, server, shots
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.errors: dict[Page, list[str]] = {}
        self.hosts: dict[Page, set[str]] = {}
        self.requests: dict[Page, list[str]] = {}
        """Each page's requests to the app (path and query), in order."""

    def open(self, path: str, wait: str = "networkidle") -> Page:
        page = self.context.new_page()
        errors: list[str] = []
        hosts: set[str] = set()
        self.errors[page], self.hosts[page] = errors, hosts
        self.requests[page] = sent = []

        def console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                errors.append(f"console: {msg.text} at {msg.location}")

        page.on("console", console)
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.on("request", lambda r: (hosts.add(_host(r.url)), sent.append(_path(r.url))))
        page.goto(self.server.url + path, wait_until=wait)  # type: ignore[arg-type]
        return page

    def check(self, page: Page, shot: str | None = None) -> None:
        """No console error, no uncaught exception, no request to another host."""
        own = urlsplit(self.server.url).netloc
        foreign = sorted(h for h in self.hosts[page] if h and h != own)
        if shot:
            page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=False)
        assert self.errors[page] == [], self.errors[page]
        assert foreign == [], f"requests to other hosts: {foreign}"

    def close(self) -> None:
        self.context.close()


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _host(url: str) -> str:
    parts = urlsplit(url)
    return "" if parts.scheme in ("data", "blob", "about") else parts.netloc


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module: Playwright's sync API marks an asyncio loop as running in this thread
    while it is open, which would break asyncio.run() and async tests of later modules."""
    assert sync_playwright is not None
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[PwBrowser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=QUIET)
    yield b
    b.close()


DOC_SHOTS = ("timeline", "photo", "people-named", "person", "duplicates", "pipeline")
"""The screenshots README shows (docs/screenshots/), written with EVENTSVC_DOCS_SCREENSHOTS."""


def small_png(src: Path, dst: Path, width: int = 1000, limit: int = 150_000) -> None:
    """A README-sized copy: at most ``width`` px wide, 256 colours, at most ``limit`` bytes."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        if img.width > width:
            img = img.resize(
                (width, round(img.height * width / img.width)), Image.Resampling.LANCZOS
            )
        for colors in (256, 128, 64):
            img.quantize(colors=colors, dither=Image.Dither.NONE).save(dst, optimize=True)
            if dst.stat().st_size <= limit:
                return
    raise AssertionError(f"{dst} stays over {limit} bytes")


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = shots_dir(tmp_path_factory)
    yield d
    print(f"\nscreenshots: {d}", file=sys.stderr)
    docs = os.environ.get("EVENTSVC_DOCS_SCREENSHOTS")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        for name in DOC_SHOTS:
            if (d / f"{name}.png").exists():
                small_png(d / f"{name}.png", Path(docs) / f"{name}.png")


@pytest.fixture
def browser(chromium: PwBrowser, server: Server, screenshots: Path) -> Iterator[Browser]:
    b = Browser(chromium, server, screenshots)
    yield b
    b.close()


@pytest.fixture
def phone(chromium: PwBrowser, server: Server, screenshots: Path) -> Iterator[Browser]:
    """A phone-sized browser (390 x 844 CSS pixels)."""
    b = Browser(chromium, server, screenshots, width=390, height=844)
    yield b
    b.close()


def wait_for(pred: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
        except (OSError, urllib.error.URLError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.2)
