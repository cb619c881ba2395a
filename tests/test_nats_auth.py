"""Authenticated NATS: generated users, least privilege, per component (issue 11, finding 1).

Real nats-servers with the generated configuration; the refusals are the server's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from eventsvc.components import nats_access
from eventsvc.core.errors import DecodeError, LogError, LogUnavailable, PublishError
from eventsvc.core.events import (
    DerivationFailed,
    Event,
    ExifExtracted,
    FacesDetected,
    FileSeen,
    HashComputed,
    LibraryOnline,
    NotDuplicate,
    PersonCreated,
    PersonNamed,
    PlaylistReady,
    PlaylistRemoved,
    decode,
    encode,
    headers_for,
)
from eventsvc.core.log import EventLog
from eventsvc.core.natsauth import ROLES, cluster_authorization, load_credentials, permissions
from eventsvc.core.settings import Settings
from eventsvc.server import EmbeddedNats, find_nats_server, free_port
from tests.harness import cli, make_jpeg, make_video, wait_until

ROOT = Path(__file__).resolve().parent.parent
H = "ab" * 32


def _file_seen(n: int = 0) -> FileSeen:
    return FileSeen(
        library_id="lib",
        file_id=f"{n:032x}",
        path=f"x{n}.jpg",
        size=1,
        mtime_ns=n,
        media_kind="image",
    )


def _hash_computed() -> HashComputed:
    return HashComputed(
        content_hash=H,
        library_id="lib",
        file_id="0" * 32,
        path="x.jpg",
        size=1,
        mtime_ns=1,
        media_kind="image",
        causation=1,
    )


EVENTS: dict[str, Event] = {
    "FileSeen": _file_seen(),
    "LibraryOnline": LibraryOnline(library_id="evil", name="evil", root="/"),
    "HashComputed": _hash_computed(),
    "ExifExtracted": ExifExtracted(content_hash=H, fields={}, causation=2),
    "PersonCreated": PersonCreated(person_id="p1", founder=f"{H}-abcdef-0", causation=3),
    "PersonNamed": PersonNamed(person_id="p1", name="Mallory"),
    "NotDuplicate": NotDuplicate(a=H, b="cd" * 32),
    "FacesDetected": FacesDetected(content_hash=H, model="m", faces=[], causation=2),
    "PlaylistReady": PlaylistReady(
        content_hash=H,
        playlist_path="p",
        duration=1.0,
        segments=1,
        codecs="h264",
        mode="remux",
        causation=2,
    ),
    "PlaylistRemoved": PlaylistRemoved(content_hash=H, reason="x"),
    "DerivationFailed": DerivationFailed(
        stage="hasher", reason="x", input_subject="photos.file.x.FileSeen", file_id="0" * 32
    ),
}

# role: (may publish, is refused)
MATRIX: dict[str, tuple[list[str], list[str]]] = {
    "scanner": (["FileSeen", "LibraryOnline"], ["HashComputed", "PersonNamed"]),
    "hasher": (["HashComputed", "DerivationFailed"], ["LibraryOnline", "ExifExtracted"]),
    "media": (["ExifExtracted"], ["HashComputed", "FileSeen"]),
    "people": (["PersonCreated"], ["PersonNamed", "HashComputed"]),
    "api": (["PersonNamed", "NotDuplicate"], ["FileSeen", "PersonCreated"]),
    "projector": ([], ["FileSeen", "PersonNamed"]),
    "inspect": ([], ["FileSeen", "LibraryOnline"]),
    "admin": ([], ["FileSeen"]),
    # `eventsvc rederive --stage media|faces|playlist`: the facts it re-derives, no others
    "reencode": (
        ["ExifExtracted", "FacesDetected", "PlaylistReady"],
        ["HashComputed", "PlaylistRemoved", "PersonNamed"],
    ),
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    srv = EmbeddedNats(tmp_path / "data" / "nats", auth=True)
    srv.start()
    yield srv
    srv.stop()


async def _as(server: EmbeddedNats, role: str) -> EventLog:
    return await EventLog.connect(server.url, credentials=server.credentials(role))


@pytest.fixture
async def admin(server: EmbeddedNats) -> AsyncIterator[EventLog]:
    lg = await _as(server, "admin")
    await lg.ensure_stream()
    await lg.ensure_status_bucket()
    yield lg
    await lg.close()


async def _refused(lg: EventLog, ev: Event, wait: float = 1.5) -> bool:
    """Published without an ack (the server drops a publish the user may not make)."""
    try:
        await asyncio.wait_for(lg.publish(ev), wait)
    except (TimeoutError, PublishError):
        return True
    return False


async def _denied(call: Any, wait: float = 1.5) -> bool:
    """A JetStream API request the server drops (no permission): it never answers."""
    try:
        await asyncio.wait_for(call, wait)
    except (TimeoutError, nats.errors.TimeoutError):
        return True
    return False


def _violations(server: EmbeddedNats) -> list[str]:
    log = (server.store_dir / "nats-server.log").read_text(errors="replace")
    return [ln for ln in log.splitlines() if "Violation" in ln]


# ---------------------------------------------------------------- connecting


async def test_without_credentials_or_with_wrong_ones_nobody_connects(
    server: EmbeddedNats,
) -> None:
    with pytest.raises(LogUnavailable, match="refused the connection without credentials"):
        await EventLog.connect(server.url, connect_timeout=1)
    good = server.credentials("scanner")
    bad = type(good)(good.user, good.password + "x")
    with pytest.raises(LogUnavailable, match="refused the connection as scanner"):
        await EventLog.connect(server.url, credentials=bad, connect_timeout=1)
    lg = await _as(server, "scanner")  # and the right ones do
    await lg.close()


def test_generated_files_are_private(server: EmbeddedNats) -> None:
    store = server.store_dir
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE((store / "auth").stat().st_mode) == 0o700
    for f in [server.config_file, *(store / "auth").iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    names = {p.stem for p in (store / "auth").iterdir()}
    assert names == set(ROLES)
    passwords = {load_credentials(store / "auth" / f"{r}.json").password for r in ROLES}
    assert len(passwords) == len(ROLES)  # one secret per user
    assert all(len(p) >= 40 for p in passwords)


def test_credentials_survive_a_restart(tmp_path: Path) -> None:
    srv = EmbeddedNats(tmp_path / "nats", auth=True)
    srv.start()
    first = srv.credentials("api").password
    srv.stop()
    srv2 = EmbeddedNats(tmp_path / "nats", auth=True)
    srv2.start()
    try:
        assert srv2.credentials("api").password == first
    finally:
        srv2.stop()


# ---------------------------------------------------------------- permissions


async def test_inspect_reads_everything_and_changes_nothing(
    server: EmbeddedNats, admin: EventLog
) -> None:
    scanner = await _as(server, "scanner")
    await scanner.publish(EVENTS["FileSeen"])
    await scanner.put_status("scan.lib", {"files": 1})
    await scanner.close()
    inspect = await _as(server, "inspect")
    try:
        assert await inspect.last_seq() == 1
        got = [raw async for batch in inspect.read() for raw in batch]
        assert [decode(r.data, r.headers).type for r in got] == ["FileSeen"]
        assert await inspect.get_status("scan.lib") == {"files": 1}
        assert await inspect.has_subject(EVENTS["FileSeen"].subject())
        await inspect.js.consumers_info("PHOTOS")
        # no publishing, no stream or consumer changes
        assert await _refused(inspect, EVENTS["FileSeen"])
        assert await _refused(inspect, EVENTS["PersonNamed"])
        assert await _denied(inspect.js.delete_stream("PHOTOS"))
        assert await _denied(inspect.js.purge_stream("PHOTOS"))
        assert await _denied(inspect.js.add_consumer("PHOTOS", durable_name="sneaky"))
        # the nats CLI's way of reading: a named ordered consumer, pulled; not on a
        # worker's durable name
        for name, ok in (("view1", True), ("hasher", False)):
            cfg = {"name": name, "ack_policy": "none", "mem_storage": True,
                   "inactive_threshold": 5_000_000_000}  # fmt: skip
            req = json.dumps({"stream_name": "PHOTOS", "config": cfg}).encode()
            create = inspect.nc.request(f"$JS.API.CONSUMER.CREATE.PHOTOS.{name}", req, 2)
            if not ok:
                assert await _denied(create)
                continue
            assert "error" not in json.loads((await create).data)
            inbox = inspect.nc.new_inbox()  # a pull delivers under the message's subject
            sub = await inspect.nc.subscribe(inbox)
            await inspect.nc.publish(
                "$JS.API.CONSUMER.MSG.NEXT.PHOTOS.view1", b'{"batch": 1}', reply=inbox
            )
            nxt = await sub.next_msg(timeout=5)
            assert nxt.data == encode(EVENTS["FileSeen"])
            await sub.unsubscribe()
        with contextlib.suppress(TimeoutError):  # (it logs its own errors)
            await asyncio.wait_for(inspect.put_status("scan.lib", {"files": 0}), 1.5)
    finally:
        await inspect.close()
    assert await admin.last_seq() == 1
    assert await admin.get_status("scan.lib") == {"files": 1}


@pytest.mark.parametrize("role", sorted(MATRIX))
async def test_each_user_publishes_its_own_facts_only(
    server: EmbeddedNats, admin: EventLog, role: str
) -> None:
    allowed, refused = MATRIX[role]
    lg = await _as(server, role)
    try:
        for name in allowed:
            assert (await lg.publish(EVENTS[name])).seq > 0, name
        before = await admin.last_seq()
        results = await asyncio.gather(*(_refused(lg, EVENTS[n]) for n in refused))
        assert all(results), dict(zip(refused, results, strict=True))
        assert await admin.last_seq() == before
    finally:
        await lg.close()
    assert any(f'user:{role}"' in v for v in _violations(server))


async def test_a_worker_consumes_its_own_consumer_only(
    server: EmbeddedNats, admin: EventLog
) -> None:
    from eventsvc.components import hasher_spec, media_spec

    settings = Settings(data_dir=server.store_dir.parent)
    scanner = await _as(server, "scanner")
    await scanner.publish(EVENTS["FileSeen"])
    await scanner.close()
    hasher = await _as(server, "hasher")
    try:
        sub = await hasher.pull(hasher_spec(settings))
        [msg] = await sub.fetch(1, timeout=5)
        assert decode(msg.data, msg.headers).type == "FileSeen"
        await msg.ack()
        # another worker's consumer: neither created nor read nor acked
        assert await _denied(hasher.js.add_consumer("PHOTOS", media_spec(settings).config()))
        assert await _denied(hasher.js.delete_consumer("PHOTOS", "media"))
    finally:
        await hasher.close()
    # inspect may pull from consumers of its own, never from a worker's
    scanner = await _as(server, "scanner")
    await scanner.publish(_file_seen(1))
    await scanner.close()
    inspect = await _as(server, "inspect")
    try:
        inbox = inspect.nc.new_inbox()
        sub = await inspect.nc.subscribe(inbox)
        await inspect.nc.publish("$JS.API.CONSUMER.MSG.NEXT.PHOTOS.hasher", b"{}", reply=inbox)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=1.5)
    finally:
        await inspect.close()
    info = await admin.js.consumer_info("PHOTOS", "hasher")
    assert info.num_ack_pending == 0 and info.delivered.stream_seq == 1
    assert info.num_pending == 1
    names = [c.name for c in await admin.js.consumers_info("PHOTOS")]
    assert names == ["hasher"]


async def test_a_body_of_another_type_on_a_permitted_subject_is_refused(
    server: EmbeddedNats, admin: EventLog
) -> None:
    """Permissions are per subject: a scanner may write FileSeen subjects, so a
    PersonNamed body sent there must not count as a PersonNamed."""
    scanner = await _as(server, "scanner")
    forged = EVENTS["PersonNamed"]
    await scanner.publish_raw("photos.file.0000.FileSeen", encode(forged), headers_for(forged))
    await scanner.publish_raw("photos.file.0001.FileSeen", encode(forged))  # no headers
    await scanner.close()
    raws = [raw async for batch in admin.read() for raw in batch]
    assert len(raws) == 2
    for raw in raws:
        with pytest.raises(DecodeError, match="'PersonNamed' body where the subject says"):
            decode(raw.data, raw.headers)


# ---------------------------------------------------------------- another OS user


def _shared_tmp() -> Path:
    """A directory other users may enter (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="eventsvc-auth-"))
    d.chmod(0o755)
    return d


def _as_nobody(code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
         sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
async def test_another_os_user_can_neither_read_the_credentials_nor_connect() -> None:
    shared = _shared_tmp()
    try:
        settings = Settings(data_dir=shared / "data")
        async with nats_access(settings) as access:
            await access.setup()
            url = access.url
            auth = settings.nats_store_dir / "auth"
            out = _as_nobody(f"""
                import asyncio, json, pathlib, nats
                res = {{}}
                for p in ["{auth}/scanner.json", "{auth}/inspect.json",
                          "{settings.nats_store_dir}/nats-server.conf",
                          "{settings.nats_store_dir}/nats.url"]:
                    try:
                        pathlib.Path(p).read_text(); res[p] = "read"
                    except PermissionError:
                        res[p] = "denied"
                async def main():
                    seen = []
                    async def err(exc):
                        seen.append(str(exc))
                    try:
                        await asyncio.wait_for(nats.connect(
                            "{url}", max_reconnect_attempts=0, connect_timeout=2,
                            error_cb=err), 5)
                        return "connected"
                    except Exception as exc:
                        return repr(exc) + " ".join(seen[:1])
                res["connect"] = asyncio.run(main())
                print(json.dumps(res))
            """)
            assert out.returncode == 0, out.stderr
            res = json.loads(out.stdout.strip().splitlines()[-1])
            assert res.pop("connect").count("Authorization Violation") == 1
            assert set(res.values()) == {"denied"}, res
            # the CLI as that user: a clear refusal, nothing started
            cmd = _as_nobody(f"""
                import sys
                from eventsvc.cli import main
                sys.exit(main(["status", "--json", "--data-dir", "{settings.data_dir}"]))
            """)
            assert cmd.returncode == 1, cmd.stdout + cmd.stderr
            assert "data dir" in cmd.stderr and "Permission denied" in cmd.stderr
            assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# ---------------------------------------------------------------- the whole service


def _eventsvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsvc", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def _node(conf: Path) -> subprocess.Popen[bytes]:
    """A nats-server on ``conf``, every user's password in its environment."""
    pw = {f"EVENTSVC_NATS_{r.upper()}_PASSWORD": f"pw-{r}" for r in ROLES}
    return subprocess.Popen(
        [find_nats_server(), "-c", str(conf)],
        env={**os.environ, **pw},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _post(url: str, payload: Any) -> Any:
    body = json.dumps(payload).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


async def test_up_with_auth_indexes_end_to_end_without_a_single_violation(
    tmp_path: Path,
) -> None:
    """Every worker (clip without a model pauses and says so in the status bucket), a
    video, a decision through the API: each as its own user, none ever refused."""
    lib = tmp_path / "lib"
    for i in range(3):
        make_jpeg(lib / f"p{i}.jpg", seed=i, exif=True)
    make_video(lib / "v.mp4")
    data = tmp_path / "data"
    port = free_port()
    env = {"EVENTSVC_LOG_LEVEL": "WARNING", "EVENTSVC_VIDEO_PRESET": "ultrafast"}
    proc = cli("up", str(lib), "--data-dir", str(data), "--port", str(port), "--no-watch", env=env)
    api = f"http://127.0.0.1:{port}"
    try:

        def indexed() -> list[dict[str, Any]] | None:
            try:
                items = _get(f"{api}/photos?limit=50")["items"]
            except OSError:
                return None
            ok = len(items) == 4 and all(i["content_hash"] for i in items)
            return items if ok else None

        items = await wait_until(indexed, 120, 0.3)

        def settled() -> bool:
            consumers = _get(f"{api}/pipeline")["consumers"]
            busy = [c for c in consumers if c["pending"] or c["ack_pending"]]
            return len(consumers) == 6 and [c["name"] for c in busy] in ([], ["clip"])

        await wait_until(settled, 180, 0.5)
        video = next(i["content_hash"] for i in items if i["media_kind"] == "video")
        assert _get(f"{api}/videos/{video}")["state"] == "ready"
        photos = sorted(i["content_hash"] for i in items if i["media_kind"] == "image")
        made_by_api = _post(f"{api}/duplicates/not-duplicate", {"a": photos[0], "b": photos[1]})
        assert made_by_api["seq"] > 0  # the api user's decision
        pipeline = _get(f"{api}/pipeline")
        assert pipeline["failures"]["total"] == 0, pipeline["failures"]
        # `eventsvc rederive` (as the reencode user) on the running server: all current
        redo = await asyncio.to_thread(
            _eventsvc, "rederive", "--stage", "media", "--data-dir", str(data)
        )
        assert redo.returncode == 0, redo.stderr
        assert json.loads(redo.stdout)["current"] == 4, redo.stdout
        for stage in ("faces", "playlist"):  # their own consumers, the same user
            redo = await asyncio.to_thread(
                _eventsvc, "rederive", "--stage", stage, "--data-dir", str(data)
            )
            assert redo.returncode == 0, redo.stderr
            assert json.loads(redo.stdout)["current"] == 4, redo.stdout
        # read-only commands use the inspect user on the running embedded server
        status = await asyncio.to_thread(_eventsvc, "status", "--json", "--data-dir", str(data))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["stream"]["last_seq"] >= 7
        ctx_dir = tmp_path / "ctx"
        made = await asyncio.to_thread(
            _eventsvc, "nats-context", "--data-dir", str(data), "--dir", str(ctx_dir)
        )
        assert made.returncode == 0, made.stderr
        assert "nats --context eventsvc stream view PHOTOS" in made.stdout
        ctx_file = ctx_dir / "eventsvc.json"
        assert stat.S_IMODE(ctx_file.stat().st_mode) == 0o600
        ctx = json.loads(ctx_file.read_text())
        assert ctx["user"] == "inspect" and ctx["password"] in made.stdout
        assert ctx["url"] == (data / "nats" / "nats.url").read_text()
        # the context's credentials read and cannot write
        nc = await nats.connect(
            ctx["url"], user=ctx["user"], password=ctx["password"],
            inbox_prefix=ctx["inbox_prefix"], max_reconnect_attempts=0,
        )  # fmt: skip
        try:
            js = nc.jetstream(timeout=2)
            last = (await js.stream_info("PHOTOS")).state.last_seq
            with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
                await js.publish("photos.library.evil.LibraryOnline", b"{}")
            assert (await js.stream_info("PHOTOS")).state.last_seq == last
        finally:
            await nc.close()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    log = (data / "nats" / "nats-server.log").read_text()
    violations = [ln for ln in log.splitlines() if "Violation" in ln]
    # the one refused publish above is the inspect user's; no component was ever refused
    assert violations and all('user:inspect"' in v for v in violations), violations


# ---------------------------------------------------------------- the cluster example


def test_nats_conf_carries_the_same_users_and_permissions() -> None:
    conf = (ROOT / "nats.conf").read_text()
    assert cluster_authorization() in conf
    for role in ROLES:
        assert f"$EVENTSVC_NATS_{role.upper()}_PASSWORD" in conf


def test_nats_conf_validates_with_passwords_and_refuses_to_start_without() -> None:
    env = {**os.environ, "NATS_SERVER_NAME": "nats-1"}
    env = {k: v for k, v in env.items() if not k.startswith("EVENTSVC_NATS_")}
    run = [find_nats_server(), "-t", "-c", str(ROOT / "nats.conf")]
    bare = subprocess.run(run, env=env, capture_output=True, text=True, timeout=30)
    assert bare.returncode != 0 and "EVENTSVC_NATS_" in bare.stderr
    pw = {f"EVENTSVC_NATS_{r.upper()}_PASSWORD": f"pw-{r}" for r in ROLES}
    ok = subprocess.run(run, env={**env, **pw}, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "valid" in ok.stdout + ok.stderr, ok.stderr


async def test_the_cluster_users_behave_like_the_embedded_ones(tmp_path: Path) -> None:
    """nats.conf's authorization block on a real single node: the same refusals."""
    port = free_port()
    conf = tmp_path / "node.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {json.dumps(str(tmp_path))} }}\n"
        + cluster_authorization()
    )
    proc = _node(conf)
    try:
        from eventsvc.server import wait_for_port

        assert wait_for_port("127.0.0.1", port, 10)
        url = f"nats://127.0.0.1:{port}"
        creds_dir = tmp_path / "creds"
        creds_dir.mkdir()
        for r in ROLES:
            (creds_dir / f"{r}.json").write_text(json.dumps({"user": r, "password": f"pw-{r}"}))
        # without the admin's credentials nobody creates the stream: a clear error
        no_admin = tmp_path / "no-admin"
        shutil.copytree(creds_dir, no_admin)
        (no_admin / "admin.json").unlink()
        lone = Settings(data_dir=tmp_path / "d", nats_url=url, nats_creds_dir=no_admin)
        async with nats_access(lone) as access:
            await access.setup()  # skipped: no admin
            with pytest.raises(LogError, match="does not exist; create it with the admin"):
                await access.connect("scanner")
        settings = Settings(data_dir=tmp_path / "d", nats_url=url, nats_creds_dir=creds_dir)
        async with nats_access(settings) as access:
            await access.setup()
            scanner = await access.connect("scanner")
            api = await access.connect("api")
            assert (await scanner.publish(EVENTS["FileSeen"])).seq == 1
            assert (await api.publish(EVENTS["PersonNamed"])).seq == 2
            assert await _refused(scanner, EVENTS["PersonNamed"])
            assert await _refused(api, EVENTS["FileSeen"])
            assert await api.last_seq() == 2
            # a single user for the process (EVENTSVC_NATS_USER / _PASSWORD)
        single = Settings(
            data_dir=tmp_path / "d", nats_url=url, nats_user="inspect", nats_password="pw-inspect"
        )
        async with nats_access(single) as access:
            lg = await access.connect("scanner")  # whatever the role: that user
            assert await lg.last_seq() == 2
            assert await _refused(lg, EVENTS["FileSeen"])
    finally:
        proc.terminate()
        proc.wait(10)


def test_permissions_of_every_role_are_disjoint_for_event_subjects() -> None:
    """No two components may publish the same event subject (decisions and derived facts
    each have exactly one writer), and readers publish none."""
    owners: dict[str, str] = {}
    for role in ROLES:
        if role == "reencode":  # the clip worker's backfill: clip's subjects
            continue
        for subj in permissions(role)["publish"]["allow"]:
            if subj.startswith("photos.") and ".DerivationFailed" not in subj:
                assert subj not in owners, (subj, role, owners.get(subj))
                owners[subj] = role
    for role in ("admin", "projector", "inspect"):
        allow = permissions(role)["publish"]["allow"]
        assert not [s for s in allow if s.startswith("photos.")]
        assert "photos.>" in permissions(role)["publish"]["deny"]


def test_nats_context_of_a_server_without_users_is_a_clear_error(nats_server: EmbeddedNats) -> None:
    out = _eventsvc("nats-context", "--nats-url", nats_server.url, "--dir", "/nonexistent")
    assert out.returncode == 1
    assert "no users" in out.stderr
    assert not Path("/nonexistent").exists()


async def test_clip_and_reencode_under_auth(tmp_path: Path) -> None:
    """The clip worker encodes as `clip`; `eventsvc reencode` backfills a second model as
    `reencode` (a consumer of its own) while `up` runs; `events` reads as `inspect`."""
    from tests.clip.tiny import colour_image, make_tiny_clip

    model_a = make_tiny_clip(tmp_path / "tiny-a")
    model_b = make_tiny_clip(tmp_path / "tiny-b", variant=1)
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("red", "green", "blue"):
        colour_image(name).save(lib / f"{name}.jpg")
    data = tmp_path / "data"
    port = free_port()
    env = {
        "EVENTSVC_LOG_LEVEL": "WARNING",
        "EVENTSVC_WORKERS": '["hasher","clip"]',
        "EVENTSVC_CLIP_MODEL_DIR": str(model_a),
    }
    proc = cli("up", str(lib), "--data-dir", str(data), "--port", str(port), "--no-watch", env=env)
    api = f"http://127.0.0.1:{port}"
    try:

        def encoded() -> bool:
            try:
                consumers = _get(f"{api}/pipeline")["consumers"]
            except OSError:
                return False
            clip = [c for c in consumers if c["name"] == "clip"]
            return bool(clip) and clip[0]["last_delivered"] >= 3 and not clip[0]["ack_pending"]

        await wait_until(encoded, 120, 0.5)
        out = await asyncio.to_thread(
            _eventsvc, "reencode", "--model", str(model_b), "--data-dir", str(data)
        )
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["encoded"] == 3 and result["failed"] == 0, result
        events = await asyncio.to_thread(
            _eventsvc, "events", "--type", "ClipEncoded", "--data-dir", str(data)
        )
        assert events.returncode == 0, events.stderr
        assert len(events.stdout.strip().splitlines()) == 6  # 3 images x 2 models
    finally:
        proc.terminate()
        out_up, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out_up.decode(errors="replace")[-3000:]
    log = (data / "nats" / "nats-server.log").read_text()
    assert "Violation" not in log, [ln for ln in log.splitlines() if "Violation" in ln]


async def test_a_worker_restores_its_consumer_when_a_reader_retargets_it(
    server: EmbeddedNats, admin: EventLog
) -> None:
    """JetStream lets any user allowed to create ephemeral consumers (every reader) name
    an existing consumer and change it; permissions cannot see that. The worker's pull
    subscription notices and restores its consumer within CONSUMER_CHECK seconds."""
    from eventsvc.components import hasher_spec

    spec = hasher_spec(Settings(data_dir=server.store_dir.parent))
    hasher = await _as(server, "hasher")
    hasher.CONSUMER_CHECK = 0.3  # type: ignore[misc]
    inspect = await _as(server, "inspect")
    try:
        sub = await hasher.pull(spec)
        cfg = {"name": "hasher", "filter_subject": "photos.nothing", "ack_policy": "explicit",
               "max_deliver": spec.max_deliver, "deliver_policy": "all"}  # fmt: skip
        req = json.dumps({"stream_name": "PHOTOS", "config": cfg}).encode()
        reply = await inspect.nc.request("$JS.API.CONSUMER.CREATE.PHOTOS", req, 2)
        assert "error" not in json.loads(reply.data)  # the server took it
        info = await admin.js.consumer_info("PHOTOS", "hasher")
        assert info.config.filter_subject == "photos.nothing"

        async def restored() -> bool:  # the worker keeps fetching meanwhile
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                await sub.fetch(1, timeout=0.2)
            cfg = (await admin.js.consumer_info("PHOTOS", "hasher")).config
            return cfg.durable_name == "hasher" and cfg.filter_subjects == [*spec.filter_subjects]

        await wait_until(restored, 10, 0.05)
        assert await hasher.guard_consumer(spec) is False  # as configured again
        scanner = await _as(server, "scanner")
        await scanner.publish(_file_seen(7))
        await scanner.close()
        got = await sub.fetch(1, timeout=5)
        assert decode(got[0].data, got[0].headers).file_id == _file_seen(7).file_id
        await got[0].ack()
        await sub.unsubscribe()
    finally:
        await inspect.close()
        await hasher.close()


async def test_an_api_that_connects_by_itself_logs_in_as_the_api_user(
    server: EmbeddedNats, admin: EventLog, tmp_path: Path
) -> None:
    """``create_app`` without a connection (``eventsvc api`` against an external NATS)
    logs in with the settings' credentials; wrong ones are reported in /pipeline."""
    from litestar.testing import AsyncTestClient

    from projections.app import create_app

    api = server.credentials("api")
    good = Settings(
        data_dir=tmp_path / "api", nats_url=server.url, nats_user=api.user,
        nats_password=api.password,
    )  # fmt: skip
    async with AsyncTestClient(create_app(good), base_url="http://127.0.0.1") as c:
        await wait_until(lambda: c.app.state.ctx.event_log is not None, 10)
        r = await c.get("/pipeline")  # stream and consumers, read as the api user
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["nats"]["connected"] is True and body["stream"]["name"] == "PHOTOS"
    assert not _violations(server)
    bad = Settings(
        data_dir=tmp_path / "api", nats_url=server.url, nats_user=api.user,
        nats_password="wrong-" + api.password,
    )  # fmt: skip
    async with AsyncTestClient(create_app(bad), base_url="http://127.0.0.1") as c:
        await wait_until(lambda: c.app.state.ctx.nats_error is not None, 15)
        assert c.app.state.ctx.event_log is None
