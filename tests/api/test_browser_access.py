"""A real browser on a foreign page cannot record a decision on an open `eventsvc up`.

Headless Chromium (driven by Playwright) loads a page from another origin
(http://localhost:Q) that sends the finding's request to the API (http://127.0.0.1:P): a
no-cors ``fetch`` POST with a ``text/plain`` JSON body (no preflight), then a ``text/plain``
form submission. Neither may leave a ``NotDuplicate`` in the log. Runs where a `chromium`
binary is installed."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from eventsvc.server import free_port
from tests.harness import b3, cli, make_jpeg, wait_until
from tests.test_e2e import _all_photos, _stop
from tests.web.conftest import CHROMIUM, QUIET

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH")

EVIL = """<!doctype html><body>
<form id="f" method="post" enctype="text/plain" action="%(url)s">
<input name='{"a": "%(a)s", "b": "%(b)s", "x": "' value='"}'></form>
<script>
fetch("%(url)s", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
                  body: JSON.stringify({a: "%(a)s", b: "%(b)s"})})
  .finally(() => document.getElementById("f").submit());
</script></body>"""


def _decisions(data: Path) -> list[dict[str, object]]:
    """The NotDuplicate events in the log, through `eventsvc events` (as an operator would)."""
    out = subprocess.run(
        [sys.executable, "-m", "eventsvc", "events", "--type", "NotDuplicate",
         "--data-dir", str(data)],
        capture_output=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def test_foreign_page_cannot_record_a_decision(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    a, b = make_jpeg(lib / "a.jpg", 1), make_jpeg(lib / "b.jpg", 2)
    data, port = tmp_path / "data", free_port()
    api = f"http://127.0.0.1:{port}"
    env = {"EVENTSVC_WORKERS": '["hasher"]', "EVENTSVC_LOG_LEVEL": "WARNING"}
    proc = cli("up", str(lib), "--data-dir", str(data), "--port", str(port), env=env)
    site = tmp_path / "site"
    site.mkdir()
    url = f"{api}/duplicates/not-duplicate"
    (site / "evil.html").write_text(EVIL % {"url": url, "a": b3(a), "b": b3(b)})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:

        def indexed() -> bool:
            try:
                return sum(bool(i["content_hash"]) for i in _all_photos(api)) == 2
            except OSError:
                return False

        asyncio.run(wait_until(indexed, 60, 0.25))
        page = f"http://localhost:{evil.server_address[1]}/evil.html"  # another origin
        with sync_playwright() as pw:  # Debian's Chromium, driven (no fixed time budget)
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=QUIET)
            try:
                tab = browser.new_page()
                tab.goto(page)
                # The fetch settles, then the form navigates to the API's answer.
                tab.wait_for_url(f"{url}*", timeout=60_000)
                tab.wait_for_load_state("load", timeout=60_000)
                dom = tab.content()
            finally:
                browser.close()
        assert _decisions(data) == []  # neither request recorded anything
        # The form navigated to the API's answer: the refusal.
        assert "cross-origin write refused" in dom, dom
        # The same decision from a script (no Origin, JSON) is recorded: the check can see one.
        req = urllib.request.Request(
            url, data=json.dumps({"a": b3(a), "b": b3(b)}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202
        assert [d["type"] for d in _decisions(data)] == ["NotDuplicate"]
    finally:
        evil.shutdown()
        out = _stop(proc)
    assert proc.returncode == 0, out
