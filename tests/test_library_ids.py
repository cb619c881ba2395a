"""Excludes add to the defaults; library ids come from names (unique, stable, and never
changed under a data dir or log that already knows the root); ``--library`` and
``--type`` of ``eventsvc events`` take names and say when they name nothing."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from eventsvc.cli import main
from eventsvc.cli_support import UP_LIBRARIES
from eventsvc.cli_support import keep_libraries as _keep_libraries
from eventsvc.cli_support import libraries_for as _libraries
from eventsvc.core.errors import ConfigError
from eventsvc.core.events import FileSeen, LibraryOnline
from eventsvc.core.ids import (
    LIBRARY_ID_RE,
    file_id,
    library_id_for_root,
    library_ids_named,
    slug,
)
from eventsvc.core.library_ids import log_library_ids
from eventsvc.core.log import EventLog
from eventsvc.core.settings import (
    DEFAULT_EXCLUDES,
    Library,
    Settings,
    load_libraries,
)
from eventsvc.scanner import Scanner
from eventsvc.server import EmbeddedNats
from tests.harness import Pipeline, make_jpeg

# ------------------------------------------------------------------ excludes


def test_env_excludes_are_added_to_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().exclude == list(DEFAULT_EXCLUDES)
    monkeypatch.setenv("EVENTSVC_EXCLUDE", '["*.xmp", "Private"]')
    got = Settings().exclude
    assert got == [*DEFAULT_EXCLUDES, "*.xmp", "Private"]
    assert "@eaDir" in got and ".Trash-*" in got
    # '!PATTERN' drops a default; a '!' of no default is an error naming the defaults
    monkeypatch.setenv("EVENTSVC_EXCLUDE", '["!@eaDir", "*.xmp"]')
    got = Settings().exclude
    assert "@eaDir" not in got and "#recycle" in got and got[-1] == "*.xmp"
    monkeypatch.setenv("EVENTSVC_EXCLUDE", '["!nope"]')
    with pytest.raises(ValidationError, match=r"drops a default exclude.*@eaDir"):
        Settings()
    # given again (a copy of a whole list), nothing doubles
    assert Settings(exclude=Settings(exclude=["*.xmp"]).exclude).exclude == [
        *DEFAULT_EXCLUDES,
        "*.xmp",
    ]


def test_a_bad_exclude_setting_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVENTSVC_EXCLUDE", '["!thumbs"]')
    assert main(["status", "--data-dir", str(tmp_path)]) == 2
    assert "drops a default exclude" in capsys.readouterr().err


def test_a_libraries_file_cannot_drop_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "libs.toml"
    cfg.write_text(f'exclude = ["!@eaDir"]\n[[library]]\nroot = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match="EVENTSVC_EXCLUDE"):
        load_libraries([], cfg)
    cfg.write_text(f'[[library]]\nroot = "{tmp_path}"\nexclude = "x"\n')
    with pytest.raises(ConfigError, match="list of strings"):
        load_libraries([], cfg)


async def test_the_scanner_keeps_default_excludes_beside_the_env_ones(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report of the issue: EVENTSVC_EXCLUDE given, Synology thumbnails indexed."""
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    make_jpeg(lib / "@eaDir" / "a.jpg" / "SYNOPHOTO_THUMB_XL.jpg", 1)  # default exclude
    make_jpeg(lib / "skip" / "b.jpg", 2)  # the env's exclude
    monkeypatch.setenv("EVENTSVC_EXCLUDE", '["skip"]')
    env_settings = Settings(data_dir=settings.data_dir, nats_url=settings.nats_url, watch=False)
    libs, extra = load_libraries([str(lib)])
    scanner = Scanner(event_log, libs, env_settings, extra_excludes=extra)
    await scanner.load()
    [report] = await scanner.tick(full=True)
    assert report.state == "online"
    seen = [e.path for _, e in await Pipeline(event_log, settings, libs).events("FileSeen")]
    assert seen == ["a.jpg"]


# ------------------------------------------------------------------ ids from names


def test_ids_come_from_root_names_unique_and_stable(tmp_path: Path) -> None:
    roots = [tmp_path / "a" / "Photos", tmp_path / "b" / "photos", tmp_path / "Été 2020!"]
    libs, _ = load_libraries([str(r) for r in roots])
    ids = [lib.id for lib in libs]
    suffix = library_id_for_root(str(roots[1]))[4:10]
    assert ids == ["photos", f"photos-{suffix}", "ete-2020"]
    assert [lib.name for lib in libs] == ["Photos", "photos", "Été 2020!"]
    assert all(LIBRARY_ID_RE.fullmatch(i) for i in ids)
    # the same roots again: the same ids (a restart); the suffix is the root's own
    assert [lib.id for lib in load_libraries([str(r) for r in roots])[0]] == ids
    alone, _ = load_libraries([str(roots[1])])
    assert [lib.id for lib in alone] == ["photos"]
    # a TOML library without id gets one from its name; ids given are kept and reserved
    cfg = tmp_path / "libs.toml"
    cfg.write_text(
        f'[[library]]\nid = "photos"\nroot = "{tmp_path / "x"}"\n'
        f'[[library]]\nname = "Family Photos"\nroot = "{tmp_path / "y"}"\n'
    )
    libs, _ = load_libraries([str(roots[0])], cfg)
    assert [lib.id for lib in libs] == [
        "photos",
        "family-photos",
        f"photos-{library_id_for_root(str(roots[0]))[4:10]}",
    ]


def test_slugs_fit_the_id_rule() -> None:
    for text in ("", "/", "__", "-x-", "Ça va?", "日本", "a" * 200, "My  Photos (2024)"):
        assert LIBRARY_ID_RE.fullmatch(slug(text)), text
    assert slug("My  Photos (2024)") == "my-photos-2024"
    assert slug("日本") == "lib" and len(slug("a" * 200)) == 48


def test_the_same_root_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="given twice"):
        load_libraries([str(tmp_path / "p"), str(tmp_path / "p")])


def test_a_root_the_data_dir_knows_keeps_its_old_id(tmp_path: Path) -> None:
    """A data dir made by an older version: `up` kept its libraries with opaque ids."""
    settings = Settings(data_dir=tmp_path / "data")
    old_root, new_root = tmp_path / "Photos", tmp_path / "Photos2"
    old_id = library_id_for_root(str(old_root))
    _keep_libraries(settings, [Library(id=old_id, name="Photos", root=old_root)], [])
    args = argparse.Namespace(paths=[str(new_root), str(old_root)])
    libs, _ = _libraries(args, settings)
    assert [(lib.id, lib.root) for lib in libs] == [("photos2", new_root), (old_id, old_root)]
    # what the log knows counts too (a data dir without kept libraries, a new read model)
    (settings.data_dir / UP_LIBRARIES).unlink()
    libs, _ = _libraries(args, settings, {str(old_root): "family"})
    assert [lib.id for lib in libs] == ["photos2", "family"]
    libs, _ = _libraries(args, settings)  # nothing recorded: ids from names
    assert [lib.id for lib in libs] == ["photos2", "photos"]


def test_a_known_id_is_not_taken_by_a_new_root_before_it(tmp_path: Path) -> None:
    first, second = tmp_path / "x" / "photos", tmp_path / "y" / "photos"
    libs, _ = load_libraries([str(first), str(second)], known={str(second): "photos"})
    assert [lib.id for lib in libs] == [
        f"photos-{library_id_for_root(str(first))[4:10]}",
        "photos",
    ]


async def test_the_log_tells_which_id_a_root_had(tmp_path: Path, event_log: EventLog) -> None:
    root = tmp_path / "Photos"
    await event_log.publish(LibraryOnline(library_id="lib-0123456789ab", name="P", root=str(root)))
    await event_log.publish(LibraryOnline(library_id="other", name="O", root="/elsewhere"))
    known = await log_library_ids(event_log)
    assert known == {str(root): "lib-0123456789ab", "/elsewhere": "other"}
    settings = Settings(data_dir=tmp_path / "data")
    libs, _ = _libraries(argparse.Namespace(paths=[str(root)]), settings, known)
    assert [lib.id for lib in libs] == ["lib-0123456789ab"]


def test_names_resolve_to_ids() -> None:
    known = {"fam": "Family Photos", "fam-2": "family photos ", "misc": "fam"}
    assert library_ids_named("fam", known) == ["fam"]  # an id wins over misc's name
    assert library_ids_named("FAMILY PHOTOS", known) == ["fam", "fam-2"]
    assert library_ids_named(" Fam ", known) == ["misc"]
    assert library_ids_named("nobody", known) == []


# ------------------------------------------------------------------ eventsvc events


def test_an_unknown_event_type_is_exit_2_without_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["events", "--type", "Bogus", "--data-dir", str(tmp_path / "d")]
    assert main([*args, "--nats-url", "nats://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "unknown event type 'Bogus'" in err and "FileSeen" in err and "PersonNamed" in err


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsvc", *args, "--nats-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_events_by_library_name_and_unknown_ones(
    tmp_path: Path, event_log: EventLog, nats_server: EmbeddedNats
) -> None:
    for lib_id, name in (("fam", "Family"), ("work", "Work")):
        await event_log.publish(LibraryOnline(library_id=lib_id, name=name, root=f"/{lib_id}"))
        await event_log.publish(
            FileSeen(
                library_id=lib_id,
                file_id=file_id(lib_id, b"a.jpg"),
                path="a.jpg",
                size=1,
                mtime_ns=1,
                media_kind="image",
            )
        )
    data = ["--data-dir", str(tmp_path / "data")]
    for token in ("fam", "family", "FAMILY"):
        out = _cli("events", "--library", token, "--type", "fileseen", *data, url=nats_server.url)
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [(x["type"], x["library_id"]) for x in lines] == [("FileSeen", "fam")], token
    out = _cli("events", "--library", "Holidays", *data, url=nats_server.url)
    assert out.returncode == 2 and out.stdout == ""
    assert "unknown library 'Holidays'" in out.stderr and "fam (Family)" in out.stderr
    out = _cli("events", "--type", "FileSen", *data, url=nats_server.url)
    assert out.returncode == 2 and "unknown event type 'FileSen'" in out.stderr
