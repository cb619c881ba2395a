"""The web app's tags, favourites and memories (issue 16) without a browser: the photo
view's tags and star, the tag and favourite filters of the timeline and search, the
Memories page. A real read model from real events, the real app."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.web.pages import tile_hashes

from .conftest import ReadModel, h
from .test_memories_api import day_events
from .test_people_api import people_events
from .test_tags_api import _user_tags


def _page(client: TestClient[Any], url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:300])
    return r.text


def test_photo_view_shows_tags_sources_and_the_star(
    model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(*people_events(), *_user_tags()).publish()
    html = _page(client, f"/photo/{h(2)}")
    section = html[html.index('<section class="tags"') :]
    section = section[: section.index("</section>")]
    assert 'class="fav on" data-fav="true" aria-pressed="true"' in section
    assert '<a href="/?tag=Anna">Anna</a> <small>(person)</small>' in section
    assert '<a href="/?tag=beach">beach</a>' in section
    # Only a user's tag has a remove button; a person's name is changed on People.
    assert 'data-tag="beach"' in section and 'data-tag="Summer 2020"' in section
    assert 'data-tag="Anna"' not in section
    assert '<form class="tag-add">' in section
    assert '<script src="/web/static/tags.js" defer></script>' in html
    html = _page(client, f"/photo/{h(6)}")
    assert 'class="fav" data-fav="false"' in html and '<li class="none">none</li>' in html
    assert client.get("/web/static/tags.js").status_code == 200


def test_timeline_and_search_filter_by_tags_and_favourites(
    model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(*people_events(), *_user_tags()).publish()
    assert set(tile_hashes(_page(client, "/?tag=beach"))) == {h(1), h(2)}
    assert tile_hashes(_page(client, "/?tag=beach,+summer+2020")) == [h(2)]
    got = set(tile_hashes(_page(client, "/?tag=beach,+summer+2020&tag_mode=or")))
    assert got == {h(1), h(2), h(5)}
    assert tile_hashes(_page(client, "/?favorite=true")) == [h(2)]
    assert set(tile_hashes(_page(client, "/search?tag=summer+2020&favorite=false"))) == {h(5)}
    assert "favorite" in _page(client, "/?favorite=maybe", status=400)
    form = _page(client, "/?tag=beach")
    assert 'name="tag" value="beach"' in form and 'name="favorite"' in form


def test_memories_page(model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*day_events()).publish()
    html = _page(client, "/web/memories?date=06-01")
    assert '<a href="/web/memories"' in html  # the nav link
    assert html.index('id="y2021"') < html.index('id="y2020"')
    assert tile_hashes(html) == [h(6), h(4), h(2), h(5)]
    assert "Nothing taken on this day" in _page(client, "/web/memories?date=12-24")
    assert "date" in _page(client, "/web/memories?date=02-30", status=400)
    assert _page(client, "/web/memories")  # today, whatever it holds
