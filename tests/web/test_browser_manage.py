"""The People, Duplicates and Libraries & pipeline pages in a real browser: each loads
without a console error or a request to another host; naming, merging and splitting
people, rejecting a face, hiding a person and marking a near pair "not a duplicate" are
visible after a reload and after `eventsvc rebuild` (they are events). Runs in file order:
later tests build on the decisions of earlier ones (recorded in DONE)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import b3
from tests.web.conftest import Browser, Server, wait_for
from tests.web.library import TOO_GREEN

pytestmark = pytest.mark.timeout(300)  # the first test also waits for `up` to index the library

DONE: dict[str, Any] = {}


def _people(server: Server) -> list[dict[str, Any]]:
    return server.api("/people")["items"]  # type: ignore[no-any-return]


def test_the_library_has_what_the_tests_need(server: Server) -> None:
    people = _people(server)
    assert [p["face_count"] for p in people] == [4, 3]
    assert all(p["name"] is None for p in people)
    (near,) = server.api("/duplicates?kind=near")["items"]
    assert {m["content_hash"] for m in near["members"]} == {b3(p) for p in server.lib.near}
    (exact,) = server.api("/duplicates")["items"]
    assert exact["content_hash"] == b3(server.lib.exact[0])


def test_each_page_loads_clean(server: Server, browser: Browser) -> None:
    people = _people(server)
    for path, shot in [
        ("/web/people", "people"),
        (f"/web/people/{people[0]['person_id']}", "person"),
        ("/web/duplicates", "duplicates"),
    ]:
        page = browser.open(path)
        assert page.locator("main h1").count() == 1
        for img in page.locator("main img").all():  # every image has alt text and loaded
            assert img.get_attribute("alt")
            assert img.evaluate("i => i.complete && i.naturalWidth > 0"), img.get_attribute("src")
        browser.check(page, shot)
    page = browser.open("/web/pipeline")
    page.wait_for_selector("body[data-loaded=true]")
    rows = page.locator("#libraries tbody tr")
    assert rows.count() == 1 and "online" in rows.first.inner_text()
    assert page.locator("#consumers tbody tr").count() >= 4  # the stages up runs
    failures = page.locator("#failures tbody tr")
    assert failures.count() == 1, page.locator("#failures").inner_text()
    assert "faces" in failures.first.inner_text() and TOO_GREEN in failures.first.inner_text()
    assert "permanent" in failures.first.inner_text()
    assert "1 in all (faces 1)" in page.locator("#fail-total").inner_text()
    assert "connected" in page.locator("#summary").inner_text()
    browser.check(page, "pipeline")


def test_pages_fit_a_phone(server: Server, phone: Browser) -> None:
    people = _people(server)
    for path in ("/web/people", f"/web/people/{people[0]['person_id']}", "/web/duplicates",
                 "/web/pipeline"):  # fmt: skip
        page = phone.open(path)
        if path == "/web/pipeline":
            page.wait_for_selector("body[data-loaded=true]")
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= 390, f"{path} is {wide} px wide on a 390 px phone"
        phone.check(page, "phone-" + path.strip("/").replace("/", "-")[:20])


def test_the_pipeline_page_updates_live(server: Server, browser: Browser) -> None:
    page = browser.open("/web/pipeline")
    page.wait_for_selector("body[data-loaded=true]")
    first = page.locator("#updated").inner_text()
    events = int(page.locator("#summary dd").nth(1).inner_text().replace(",", ""))
    before = server.api("/pipeline")["stream"]["last_seq"]
    assert events == before
    # a new event (a decision taken back and forth elsewhere) shows without a reload
    a, b = (b3(p) for p in server.lib.near)
    server.post("/duplicates/not-duplicate", {"a": a, "b": b, "undo": True})
    wait_for(lambda: page.locator("#updated").inner_text() != first, 10, "a refresh")
    wait_for(
        lambda: page.locator("#summary dd").nth(1).inner_text().replace(",", "") == str(before + 1),
        10, "the new event counted",
    )  # fmt: skip
    browser.check(page)


def _card(page: Any, person_id: str) -> Any:
    return page.locator(f'.person-card[data-person="{person_id}"]')


def test_name_merge_and_split_people(server: Server, browser: Browser) -> None:
    anna, ben = (p["person_id"] for p in _people(server))
    page = browser.open("/web/people")
    for pid, name in ((anna, "Anna"), (ben, "Ben")):
        box = _card(page, pid).locator("input.name")
        box.fill(name)
        with page.expect_navigation():
            box.press("Enter")
        assert _card(page, pid).locator("input.name").input_value() == name
    page.reload()
    assert _card(page, anna).locator("input.name").input_value() == "Anna"
    assert _card(page, ben).locator("input.name").input_value() == "Ben"
    assert [(p["name"], p["face_count"]) for p in _people(server)] == [("Anna", 4), ("Ben", 3)]
    browser.check(page, "people-named")

    # merge: tick both, the first (most faces) keeps its id and name
    _card(page, anna).locator("input.select").check()
    _card(page, ben).locator("input.select").check()
    assert page.locator("#merge").inner_text() == "Merge 2 people"
    with page.expect_navigation():
        page.locator("#merge").click()
    assert page.locator(".person-card").count() == 1
    assert "7 faces" in _card(page, anna).locator(".counts").inner_text()
    page.reload()
    assert page.locator(".person-card").count() == 1
    assert _card(page, anna).locator("input.name").input_value() == "Anna"
    browser.check(page, "people-merged")
    # the merged person's old page leads to the one it went into
    old = browser.open(f"/web/people/{ben}")
    assert old.url.endswith(f"/web/people/{anna}")

    # split: Ben's first photo's face moves out into a new person
    person = browser.open(f"/web/people/{anna}")
    assert person.locator(".person-photo").count() == 7
    face = person.locator(f'.person-photo[data-hash="{b3(server.lib.people["B"][0])}"] .face-row')
    face_id = face.get_attribute("data-face")
    with person.expect_navigation(url=lambda u: f"/web/people/{anna}" not in u):
        face.locator("button.split").click()
    new_id = person.url.rsplit("/", 1)[-1]
    assert new_id.startswith("p-") and new_id != anna
    assert person.locator(".person-photo").count() == 1
    assert person.locator(f'.face-row[data-face="{face_id}"]').count() == 1
    person.reload()
    assert person.locator(".person-photo").count() == 1
    browser.check(person, "person-split")
    browser.check(person)

    # reject: "not a face" takes Anna's last photo's face out for good
    person = browser.open(f"/web/people/{anna}")
    gone = person.locator(f'.person-photo[data-hash="{b3(server.lib.people["A"][3])}"]')
    rejected = gone.locator(".face-row").get_attribute("data-face")
    with person.expect_navigation():
        gone.locator("button.reject").click()
    assert person.locator(".person-photo").count() == 5 and gone.count() == 0
    assert server.api(f"/faces/{rejected}")["rejected"] is True
    browser.check(person)

    # hide and show again
    page.reload()
    with page.expect_navigation():
        _card(page, new_id).locator("button.hide").click()
    assert _card(page, new_id).count() == 0 and _card(page, anna).count() == 1
    page.goto(server.url + "/web/people?hidden=true")
    assert "hidden" in _card(page, new_id).locator(".counts").inner_text()
    with page.expect_navigation():
        _card(page, new_id).locator("button.hide").click()  # now "Show"
    page.goto(server.url + "/web/people")
    assert "5 faces" in _card(page, anna).locator(".counts").inner_text()
    assert "1 face" in _card(page, new_id).locator(".counts").inner_text()
    browser.check(page)
    DONE["people"] = {"anna": anna, "split": new_id, "face": face_id, "rejected": rejected}


def test_mark_a_near_pair_not_a_duplicate(server: Server, browser: Browser) -> None:
    page = browser.open("/web/duplicates")
    pair = page.locator(".pair")
    assert pair.count() == 1
    assert "distance" in pair.inner_text() and "same second" in pair.inner_text()
    paths = pair.locator(".paths").all_inner_texts()
    assert any("trip/lake.jpg" in p for p in paths) and any("lake_small.jpg" in p for p in paths)
    exact = page.locator(".exact-group")
    assert exact.count() == 1 and "wasted" in exact.inner_text()
    assert "copies/anna_0_copy.jpg" in exact.inner_text()
    with page.expect_navigation():
        pair.locator("button.not-duplicate").click()
    assert page.locator(".pair").count() == 0
    page.reload()
    assert page.locator(".pair").count() == 0
    assert page.locator(".exact-group").count() == 1
    browser.check(page)
    assert server.api("/duplicates?kind=near")["items"] == []
    DONE["near"] = True


def test_decisions_survive_a_rebuild(server: Server, browser: Browser) -> None:
    assert set(DONE) == {"people", "near"}, "the decision tests above did not all pass"
    ids = DONE["people"]
    before = server.api("/pipeline")["projector"]["generation"]
    server.rebuild()
    assert server.api("/pipeline")["projector"]["generation"] != before
    page = browser.open("/web/people")
    assert page.locator(".person-card").count() == 2
    assert _card(page, ids["anna"]).locator("input.name").input_value() == "Anna"
    assert "5 faces" in _card(page, ids["anna"]).locator(".counts").inner_text()
    assert "1 face" in _card(page, ids["split"]).locator(".counts").inner_text()
    browser.check(page)
    person = browser.open(f"/web/people/{ids['split']}")
    assert person.locator(f'.face-row[data-face="{ids["face"]}"]').count() == 1
    browser.check(person)
    assert server.api(f"/faces/{ids['rejected']}")["rejected"] is True
    dup = browser.open("/web/duplicates")
    assert dup.locator(".pair").count() == 0 and dup.locator(".exact-group").count() == 1
    browser.check(dup)
