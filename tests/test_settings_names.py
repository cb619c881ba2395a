"""Renamed settings (issue 15, names): the new names and the old env names both work."""

from __future__ import annotations

import pytest

from eventsvc.core.settings import Settings


@pytest.mark.parametrize(
    ("field", "new", "old", "value", "expect"),
    [
        ("clip_inference_url", "EVENTSVC_CLIP_INFERENCE_URL", "EVENTSVC_INFERENCE_URL",
         "http://gpu:8471", "http://gpu:8471"),
        ("clip_recheck_interval", "EVENTSVC_CLIP_RECHECK_INTERVAL", "EVENTSVC_CLIP_RECHECK",
         "7", 7.0),
    ],
)  # fmt: skip
def test_renamed_settings_keep_their_old_env_names(
    monkeypatch: pytest.MonkeyPatch, field: str, new: str, old: str, value: str, expect: object
) -> None:
    default = getattr(Settings(), field)
    assert default != expect
    monkeypatch.setenv(old, value)
    assert getattr(Settings(), field) == expect  # the old name, as deployed
    monkeypatch.setenv(new, "0" if isinstance(expect, float) else "http://other")
    assert getattr(Settings(), field) != expect  # the new name wins
    monkeypatch.delenv(new)
    monkeypatch.delenv(old)
    monkeypatch.setenv(old.removeprefix("EVENTSVC_"), value)  # never without the prefix
    assert getattr(Settings(), field) == default
    assert getattr(Settings(**{field: expect}), field) == expect  # flags: the field name
