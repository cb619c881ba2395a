"""One log format (issue 14): the configuration survives Litestar and uvicorn, JSON lines
parse, third-party chatter is quiet, repeated conditions are counted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventsvc.core.logs import Repeats, sentence_cut, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_parse_one_by_one_with_extra_fields(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("DEBUG", "json", stream=out)
    lg = logging.getLogger("eventsvc.test")
    lg.debug("hello %s", "world", extra={"library_id": "lib", "seq": 7})
    lg.info('quotes " and\nnewlines')
    try:
        raise ValueError("boom")
    except ValueError:
        lg.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert records[0]["msg"] == "hello world"
    assert records[0]["level"] == "DEBUG"
    assert records[0]["logger"] == "eventsvc.test"
    assert records[0]["library_id"] == "lib" and records[0]["seq"] == 7
    assert records[0]["ts"].endswith("+00:00")
    assert records[1]["msg"] == 'quotes " and\nnewlines'
    assert "ValueError: boom" in records[2]["exc"]


def test_level_and_third_party_chatter(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("INFO", "text", levels="httpx=INFO", stream=out)
    logging.getLogger("eventsvc.x").debug("hidden debug")
    logging.getLogger("eventsvc.x").info("shown info")
    logging.getLogger("watchfiles.main").info("1 change detected")
    logging.getLogger("nats.aio.client").info("nats chatter")
    logging.getLogger("httpx").info("asked for")
    logging.getLogger("watchfiles.main").warning("a real problem")
    text = out.getvalue()
    assert "hidden debug" not in text and "shown info" in text
    assert "1 change detected" not in text and "nats chatter" not in text
    assert "asked for" in text  # the override
    assert "a real problem" in text
    with pytest.raises(ValueError):
        setup_logging("LOUD", "text", stream=out)
    with pytest.raises(ValueError):
        setup_logging("INFO", "xml", stream=out)
    with pytest.raises(ValueError):
        setup_logging("INFO", "text", levels="httpx", stream=out)


async def test_building_and_serving_the_api_keeps_the_configuration(
    restore_logging: None,
) -> None:
    from litestar import Litestar, get
    from litestar.testing import AsyncTestClient

    from eventsvc.core.logs import litestar_logging

    out = io.StringIO()
    setup_logging("DEBUG", "json", stream=out)
    root = logging.getLogger()
    before = list(root.handlers)

    @get("/boom", sync_to_thread=False)
    def boom() -> None:
        raise RuntimeError("inside the API")

    app = Litestar([boom], logging_config=litestar_logging(), debug=True)
    async with AsyncTestClient(app) as client:
        assert (await client.get("/boom")).status_code == 500
    assert root.handlers == before and root.level == logging.DEBUG
    logging.getLogger("eventsvc.after").debug("after the API")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any(r["logger"] == "litestar" and "inside the API" in r.get("exc", "") for r in records)
    assert records[-1]["msg"] == "after the API"


def test_a_repeated_condition_is_logged_once_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lg = logging.getLogger("eventsvc.repeats")
    repeats = Repeats(lg)
    with caplog.at_level(logging.INFO, logger="eventsvc.repeats"):
        for _ in range(19):
            repeats.log(logging.INFO, "dl", "clip: downloading %s (first use)", "m")
        repeats.log(logging.WARNING, "other", "something else")
        assert repeats.count("dl") == 18
        repeats.clear("dl")
        repeats.clear("dl")  # nothing more to say
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [
        "clip: downloading m (first use)",
        "something else",
        "clip: downloading m (first use) (repeated 18 times)",
    ]


def test_a_long_repetition_is_summed_up_now_and_then(caplog: pytest.LogCaptureFixture) -> None:
    lg = logging.getLogger("eventsvc.repeats2")
    repeats = Repeats(lg, every=0.0)
    with caplog.at_level(logging.INFO, logger="eventsvc.repeats2"):
        for _ in range(3):
            repeats.log(logging.ERROR, "k", "paused: %s", "no model")
    assert [r.getMessage() for r in caplog.records] == [
        "paused: no model",
        "paused: no model (repeated 1 time)",
        "paused: no model (repeated 1 time)",
    ]


def test_the_unavailable_reason_keeps_whole_sentences() -> None:
    hub = (
        "An error happened while trying to locate the files on the Hub and we cannot find "
        "the appropriate snapshot folder for the specified revision on the local disk. "
        "Please check your internet connection and try again."
    )
    assert sentence_cut(hub, 500) == hub
    cut = sentence_cut(hub * 3, 300)
    assert len(cut) <= 300 and cut.endswith(". …")
    assert sentence_cut("word " * 100, 50).endswith("word …")


def test_offline_model_rechecks_log_the_download_once_and_the_whole_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Offline (HF_HUB_OFFLINE=1, tests/conftest.py): each recheck tries the download."""
    from eventsvc.core.errors import ModelUnavailable
    from eventsvc.inference.models import resolve_model_dir

    reasons = []
    with caplog.at_level(logging.INFO, logger="eventsvc.inference.models"):
        for _ in range(5):
            with pytest.raises(ModelUnavailable) as info:
                resolve_model_dir("nobody-here/no-such-model", tmp_path / "models")
            reasons.append(str(info.value))
    downloads = [r for r in caplog.records if "downloading" in r.getMessage()]
    assert len(downloads) == 1, [r.getMessage() for r in downloads]
    assert "could not be fetched" in reasons[0]
    inner = reasons[0].split("could not be fetched (", 1)[1]
    # the library's own message comes whole: up to the end of its sentence
    assert ": " in inner and not inner.split("); ")[0].endswith((" the", " and", " on"))
    assert inner.split("); ")[0].endswith((".", "…", ")")), reasons[0]
