"""`eventsvc events --catalog` (issue 14): every subject and event type with one example,
generated from the declarations; docs/events.md is that output, kept in sync here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eventsvc.cli_catalog import catalog_entries, catalog_markdown
from eventsvc.core.events import CURRENT_VERSION, EVENT_TYPES, decode, encode
from eventsvc.core.events.wire import headers_for

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "events.md"


def test_docs_events_md_is_the_generated_catalog() -> None:
    """Regenerate with `eventsvc events --catalog > docs/events.md`."""
    assert DOC.read_text() == catalog_markdown(), (
        "docs/events.md is out of date: run `python -m eventsvc events --catalog > docs/events.md`"
    )


def test_every_event_type_once_with_its_current_version() -> None:
    entries = catalog_entries()
    assert [e["type"] for e in entries] == list(EVENT_TYPES)
    assert {e["type"]: e["version"] for e in entries} == CURRENT_VERSION
    doc = DOC.read_text()
    for etype in EVENT_TYPES:
        assert f"\n## {etype}\n" in doc


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(<[^>]+>)", pattern)
    return re.compile("".join("[^.]+" if p.startswith("<") else re.escape(p) for p in parts))


@pytest.mark.parametrize("prefix", ["photos", "other"])
def test_each_example_is_a_valid_event_on_its_declared_subject(prefix: str) -> None:
    for e in catalog_entries(prefix):
        ex = e["example"]
        cls = EVENT_TYPES[e["type"]]
        event = decode(json.dumps(ex["body"]).encode(), ex["headers"])
        assert type(event) is cls
        assert event.subject(prefix) == ex["subject"]
        assert json.loads(encode(event)) == ex["body"]  # what the publisher writes
        assert any(_pattern_regex(s).fullmatch(ex["subject"]) for s in e["subjects"]), e
        assert all(s.startswith(f"{prefix}.") for s in e["subjects"])
        required = {n for n, f in cls.model_fields.items() if f.is_required()}
        assert required <= set(ex["body"]), (e["type"], required - set(ex["body"]))
        hdrs = headers_for(event)
        assert ex["headers"]["Eventsvc-Type"] == hdrs["Eventsvc-Type"] == e["type"]
        assert ex["headers"]["Eventsvc-Version"] == str(e["version"])
        if "Eventsvc-Causation" in ex["headers"]:
            assert int(ex["headers"]["Eventsvc-Causation"]) == event.causation


def test_the_cli_prints_the_catalog_without_nats(tmp_path: Path) -> None:
    """No NATS, no data dir needed: it is generated from the code."""
    env = {"EVENTSVC_DATA_DIR": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    md = subprocess.run(
        [sys.executable, "-m", "eventsvc", "events", "--catalog"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip
    assert md.returncode == 0, md.stderr
    assert md.stdout == catalog_markdown()
    js = subprocess.run(
        [sys.executable, "-m", "eventsvc", "events", "--catalog", "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout) == catalog_entries()
    assert not (tmp_path / "none" / "nats").exists()  # no server was started
