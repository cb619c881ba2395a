"""Browsing in a real browser: the timeline scrolls past its first screen, a photo opens
and the arrow keys step through the listing (Esc goes back), the search page loads, and
a video plays to its end in the photo view (Chromium's native HLS)."""

from __future__ import annotations

import urllib.request

import pytest

from tests.harness import b3
from tests.web.conftest import Browser, Server

pytestmark = pytest.mark.timeout(300)  # the first test also waits for `up` to index the library


def test_timeline_scrolls_and_photos_step_with_the_keys(server: Server, browser: Browser) -> None:
    html = urllib.request.urlopen(server.url + "/", timeout=10).read().decode()
    first = html.count('<a class="tile')
    assert 0 < first < len(server.lib.files), "the first screen already holds everything"
    page = browser.open("/")
    tiles = page.locator("#grid a.tile")
    browser.check(page, "timeline")
    total = len(server.lib.files)
    for _ in range(100):  # scroll to the end, a page at a time, as a reader would
        if tiles.count() == total:
            break
        page.mouse.wheel(0, 4000)
        page.wait_for_timeout(250)
    assert tiles.count() == total
    assert page.locator("#grid .more").count() == 0  # the end: no sentinel left
    assert any(r.startswith("/web/timeline/page?") for r in browser.requests[page])
    browser.check(page)

    page.goto(server.url + "/")
    hashes = [h.split("/photo/")[1].split("?")[0] for h in
              (tiles.nth(i).get_attribute("href") or "" for i in range(3))]  # fmt: skip
    assert len(set(hashes)) == 3, hashes
    href = tiles.nth(1).get_attribute("href")
    with page.expect_navigation():
        tiles.nth(1).click()
    assert page.url == server.url + href

    def shown() -> str | None:
        return page.locator("article.photo").get_attribute("data-hash")

    assert shown() == hashes[1]
    browser.check(page, "photo")
    for key, expected in (("ArrowRight", 2), ("ArrowLeft", 1), ("ArrowLeft", 0)):
        with page.expect_navigation():
            page.keyboard.press(key)
        assert shown() == hashes[expected], key
    with page.expect_navigation():
        page.keyboard.press("Escape")
    assert page.locator("#grid").count() == 1
    browser.check(page)


def test_search_page_loads_clean(browser: Browser) -> None:
    page = browser.open("/search")
    assert page.locator("main h1").inner_text() == "Search"
    browser.check(page, "search")


def test_a_video_plays_to_its_end_in_the_photo_view(server: Server, browser: Browser) -> None:
    assert server.lib.video is not None
    page = browser.open(f"/photo/{b3(server.lib.video)}")
    player = page.locator("video#player")
    assert player.count() == 1
    player.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.getElementById('player').ended", timeout=30_000)
    state = player.evaluate(
        "v => ({t: v.currentTime, d: v.duration, w: v.videoWidth, err: v.error && v.error.code})"
    )
    assert state["err"] is None and state["w"] == 160, state
    assert abs(state["t"] - 2.0) < 0.3 and abs(state["d"] - 2.0) < 0.3, state
    browser.check(page, "video")
