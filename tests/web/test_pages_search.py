"""The search page with a CLIP model (the tiny real ONNX model of tests/clip, real
onnxruntime and tokenizer): hits, scores and paging are those of GET /photos/search,
filters apply, and the photo view offers the "similar" strip."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from eventsvc.core.events import ClipEncoded
from eventsvc.core.settings import Settings
from eventsvc.inference.models import clip_backend
from projections.api import create_app
from projections.web.search import SEARCH_PAGE
from tests.api.conftest import ReadModel, h
from tests.clip.tiny import DIM, make_tiny_clip

from .pages import Library, build_library, links, tile_hashes

PHOTOS = 150  # every third is red: 50, one page and a bit


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    model = make_tiny_clip(tmp_path / "tiny")
    return Settings(data_dir=tmp_path / "data", nats_url=None, api_token=None,
                    clip_model_dir=model)  # fmt: skip


def _version(settings: Settings) -> str:
    async def go() -> str:
        backend = clip_backend(settings)
        try:
            return (await backend.info()).version
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.fixture
def lib(settings: Settings) -> Library:
    model = ReadModel(settings.readmodel_dir)
    version = _version(settings)
    for n in range(1, PHOTOS + 1):
        vec = [0.0] * DIM
        vec[0 if n % 3 == 0 else 2] = 1.0  # red (dimension 0) or blue (2)
        vec[5] = n / 1000  # distinct scores, so the order is well defined
        norm = sum(x * x for x in vec) ** 0.5
        model.add(ClipEncoded(content_hash=h(n), model_version=version, dim=DIM,
                              vector=[x / norm for x in vec]))  # fmt: skip
    return build_library(model, photos=PHOTOS)


@pytest.fixture
def client(settings: Settings, lib: Library) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def _api(client: TestClient[Any], **params: Any) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    cursor = None
    while True:
        q = {**params, "limit": SEARCH_PAGE, **({"cursor": cursor} if cursor else {})}
        body = client.get("/photos/search", params=q).json()
        out += [(i["content_hash"], i["score"]) for i in body["items"]]
        cursor = body["next"]
        if cursor is None:
            return out


def _scores(html: str) -> list[float]:
    return [float(s) for s in re.findall(r'<span class="score">([0-9.]+)</span>', html)]


def test_words_rank_like_the_api_with_scores_and_paging(client: TestClient[Any]) -> None:
    r = client.get("/search", params={"q": "red"})
    assert r.status_code == 200
    html = r.text
    first = tile_hashes(html)
    assert len(first) == SEARCH_PAGE
    assert 'id="no-model"' not in html
    more = [v for _, a, v in links(html).refs if a == "hx-get" and v.startswith("/web/search/page")]
    assert len(more) == 1
    rest_html = client.get(more[0]).text
    rest = tile_hashes(rest_html)
    expected = _api(client, q="red")
    assert first + rest == [x for x, _ in expected]
    assert len(expected) == PHOTOS // 3  # only the red ones pass the threshold
    assert _scores(html + rest_html) == [round(s, 3) for _, s in expected]
    assert all(int(x, 16) % 3 == 0 for x in first + rest)
    # a hit opens the photo view, whose Close goes back to this search
    hit = next(v for v in links(html).values("a", "href") if v.startswith(f"/photo/{first[0]}?"))
    assert "q=red" in hit
    ids = links(client.get(hit).text).by_id
    assert ids["back"]["href"] == "/search?q=red"
    assert "next" not in ids and "prev" not in ids  # the ranking is not a timeline


def test_words_with_filters(client: TestClient[Any]) -> None:
    html = client.get("/search", params={"q": "red", "model": "EOS R"}).text
    got = tile_hashes(html)
    assert got == [x for x, _ in _api(client, q="red", model="EOS R")]
    assert 0 < len(got) < PHOTOS // 3


def test_photo_view_offers_similar_when_embedded(client: TestClient[Any], lib: Library) -> None:
    html = client.get(f"/photo/{h(3)}").text
    similar = links(html).by_id["similar"]
    assert similar["data-url"] == f"/photos/{h(3)}/similar?limit=12"
    assert client.get(similar["data-url"]).status_code == 200
    video = client.get(f"/photo/{lib.video_hash}").text  # no embedding: no request made
    assert 'id="similar"' not in video
