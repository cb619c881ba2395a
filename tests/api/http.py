"""Small HTTP assertions shared by the API tests."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

__all__ = ["bad", "ok"]


def ok(c: TestClient[Any], url: str, **params: Any) -> dict[str, Any]:
    r = c.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def bad(c: TestClient[Any], url: str, status: int = 400, **params: Any) -> str:
    r = c.get(url, params=params)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"detail"}
    return r.json()["detail"]  # type: ignore[no-any-return]
