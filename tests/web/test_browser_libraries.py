"""Library management on the Libraries & pipeline page in a real browser (issue 16): a
write session adds a library, disables and enables it, edits its excludes and removes
it; each change shows without a reload, from the JSON API's own answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.conftest import Browser, Server, wait_for

pytestmark = pytest.mark.timeout(300)  # the first test also waits for `up` to index the library


def test_add_disable_enable_exclude_and_remove_a_library(
    server: Server, browser: Browser, tmp_path: Path
) -> None:
    spare = tmp_path / "Spare"
    spare.mkdir()  # empty: the other pages' figures stay as they are
    page = browser.open("/web/pipeline")
    page.wait_for_selector("body[data-loaded=true]")
    page.fill("#add-library input[name=root]", str(spare))
    page.fill("#add-library input[name=name]", "Spare shelf")
    page.click("#add-library button[type=submit]")
    row = page.locator("#libraries tbody tr", has_text="Spare shelf")

    def shows(text: str) -> bool:
        return row.count() == 1 and text in row.inner_text()

    wait_for(lambda: shows("online"), 30, "the added library scanned and online")
    (lib_id,) = [x["library_id"] for x in server.api("/libraries")["items"]
                 if x["name"] == "Spare shelf"]  # fmt: skip

    row.get_by_role("button", name="Disable").click()
    wait_for(lambda: shows("disabled"), 15, "shown disabled")
    assert (
        next(x for x in server.api("/libraries")["items"] if x["library_id"] == lib_id)["enabled"]
        is False
    )
    row.get_by_role("button", name="Enable").click()
    wait_for(lambda: shows("online"), 15, "enabled again")

    page.once("dialog", lambda d: d.accept("Private, *.part2"))
    row.get_by_role("button", name="Excludes…").click()
    wait_for(lambda: shows("excludes: Private, *.part2"), 15, "the new excludes shown")

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Remove").click()
    wait_for(lambda: row.count() == 0, 15, "the removed library gone from the page")
    assert lib_id not in [x["library_id"] for x in server.api("/libraries")["items"]]
    browser.check(page)


def test_a_bad_root_is_refused_on_the_page(server: Server, browser: Browser) -> None:
    page = browser.open("/web/pipeline")
    page.wait_for_selector("body[data-loaded=true]")
    page.fill("#add-library input[name=root]", "relative/dir")
    page.click("#add-library button[type=submit]")
    wait_for(lambda: "absolute" in page.locator("#add-library-error").inner_text(), 10, "the error")
    browser.errors[page] = [e for e in browser.errors[page] if "400" not in e]
    browser.check(page)
