"""The distributed deployment files are valid, agree with each other and with the CLI
(issue 17 item 7): nats.conf passes `nats-server -t` as shipped; every compose service
runs a real `eventsvc` subcommand whose flags parse with our own argparse parser, sets
only real settings, and mounts what its command reads; every API replica has its own
projector and read model; no host path or host port is fixed twice."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventsvc.cli import build_parser
from eventsvc.components import FACTORIES
from eventsvc.core.settings import Settings
from eventsvc.server import find_nats_server

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APPS = {n: s for n, s in SERVICES.items() if not n.startswith("nats-")}
"""The services that run eventsvc."""


def _passwords() -> dict[str, str]:
    """nats.conf takes every user's password from the environment (it refuses to start
    without them: tests/test_nats_auth.py)."""
    from eventsvc.core.natsauth import ROLES

    return {f"EVENTSVC_NATS_{r.upper()}_PASSWORD": f"test-{r}" for r in ROLES}


def _nats_t(*extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_SERVER_NAME"}
    return subprocess.run(
        [find_nats_server(), "-t", "-c", str(ROOT / "nats.conf"), *extra],
        env={**env, **_passwords()},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_nats_conf_passes_nats_server_t_as_shipped() -> None:
    """No NATS_SERVER_NAME needed: the file's default name works, and a node's own
    name on the command line (as compose gives it) is accepted too."""
    out = _nats_t()
    assert out.returncode == 0, out.stderr + out.stdout
    assert "valid" in (out.stdout + out.stderr)
    out = _nats_t("--server_name", "nats-2")
    assert out.returncode == 0, out.stderr + out.stdout


def test_nats_nodes_have_unique_names_and_the_shared_conf() -> None:
    nodes = {n: s for n, s in SERVICES.items() if n.startswith("nats-")}
    assert set(nodes) == {"nats-1", "nats-2", "nats-3"}
    routes = re.findall(r"nats-route://([\w-]+):6222", (ROOT / "nats.conf").read_text())
    assert sorted(routes) == sorted(nodes)
    names = []
    for svc in nodes.values():
        cmd = svc["command"]
        assert cmd[:2] == ["-c", "/etc/nats/nats.conf"], cmd
        assert "./nats.conf:/etc/nats/nats.conf:ro" in svc["volumes"]
        names.append(cmd[cmd.index("--server_name") + 1] if "--server_name" in cmd else "nats-1")
        assert "NATS_SERVER_NAME" not in (svc.get("environment") or {})
    assert sorted(names) == sorted(nodes), "each node's server name is its service name"


@pytest.mark.parametrize("name", sorted(APPS))
def test_every_service_runs_a_real_subcommand_whose_flags_parse(name: str) -> None:
    cmd = APPS[name]["command"]
    try:
        args = build_parser().parse_args(cmd)  # the same CLI, or this raises SystemExit
    except SystemExit as exc:
        raise AssertionError(f"{name}: `eventsvc {' '.join(cmd)}` does not parse") from exc
    assert callable(args.func)
    if args.command == "worker":
        assert args.name in FACTORIES, f"{name}: no worker {args.name!r}"
    if getattr(args, "config", None) is not None:  # the file it reads is mounted
        assert str(args.config) in _volumes(APPS[name]), f"{name}: {args.config} is not mounted"


def test_every_environment_variable_is_a_real_setting() -> None:
    known = {f"EVENTSVC_{f.upper()}" for f in Settings.model_fields}
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        known |= set(getattr(alias, "choices", []) or [])
    for name, svc in APPS.items():
        env = svc.get("environment") or {}
        unknown = sorted(k for k in env if k not in known)
        assert not unknown, f"{name} sets {unknown}: no such settings"
        Settings(**{k[len("EVENTSVC_") :].lower(): v for k, v in env.items() if "${" not in v})
    # the NATS nodes' variables are the ones nats.conf reads
    conf = (ROOT / "nats.conf").read_text()
    for svc in (s for n, s in SERVICES.items() if n.startswith("nats-")):
        for var in svc.get("environment") or {}:
            assert f"${var}" in conf, f"nats.conf does not read {var}"


def test_compose_runs_the_components_against_the_cluster() -> None:
    commands = {build_parser().parse_args(s["command"]).command for s in APPS.values()}
    assert commands >= {"setup", "scan", "worker", "project", "api"}
    for name, svc in APPS.items():
        assert "nats-1:4222" in svc["environment"]["EVENTSVC_NATS_URL"], name
        assert svc["environment"]["EVENTSVC_STREAM_REPLICAS"] == "3", name


def _volumes(svc: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes."""
    out = {}
    for v in svc.get("volumes", []):
        source, target = v.split(":")[:2] if not v.startswith("${") else _split_env(v)
        out[target] = source
    return out


def _split_env(v: str) -> tuple[str, str]:
    source, rest = v[: v.index("}") + 1], v[v.index("}") + 2 :]
    return source, rest.split(":")[0]


def test_volumes_are_consistent_and_paths_not_hard_coded() -> None:
    declared = set(COMPOSE["volumes"])
    used: set[str] = set()
    for name, svc in SERVICES.items():
        for source in _volumes(svc).values():
            if source.startswith(("./", "${")):
                if source.startswith("${"):
                    assert ":-" in source, f"{name}: {source} has no default"
                continue
            assert not source.startswith("/"), f"{name}: hard-coded host path {source}"
            assert source in declared, f"{name}: volume {source} is not declared"
            used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"
    # the photos are at the same container path everywhere the libraries file is read
    example = tomllib.loads((ROOT / "libraries.example.toml").read_text())
    roots = [lib["root"] for lib in example["library"]]
    for name, svc in APPS.items():
        vols = _volumes(svc)
        if "/config/libraries.toml" in vols:
            assert all(any(r.startswith(t) for t in vols) for r in roots), name


def test_each_api_replica_has_its_own_projector_and_read_model() -> None:
    readmodel_dir = str(Settings(data_dir=Path("/data")).readmodel_dir)
    apis = {n: s for n, s in APPS.items() if s["command"][0] == "api"}
    projectors = {n: s for n, s in APPS.items() if s["command"][0] == "project"}
    assert len(apis) >= 2, "at least two API replicas show the scalable shape"
    models = {}
    for name, svc in apis.items():
        source = _volumes(svc).get(readmodel_dir)
        assert source, f"{name} has no read model volume at {readmodel_dir}"
        writers = [p for p, ps in projectors.items() if _volumes(ps).get(readmodel_dir) == source]
        assert len(writers) == 1, f"{name}'s read model {source} has projectors {writers}"
        assert writers[0] in svc.get("depends_on", []), name
        models[name] = source
    assert len(set(models.values())) == len(models), f"read models shared: {models}"
    # what workers write and the APIs serve is shared
    thumbs = str(Settings(data_dir=Path("/data")).thumbs_dir)
    assert all(
        _volumes(s).get(thumbs) == _volumes(APPS["media"]).get(thumbs) for s in apis.values()
    )
    assert all(
        _volumes(s).get("/videos") == _volumes(APPS["playlist"])["/videos"] for s in apis.values()
    )


def test_no_host_port_is_published_twice() -> None:
    published = []
    for svc in SERVICES.values():
        for p in svc.get("ports", []):
            host = str(p).rsplit(":", 1)[0]
            published.append(re.sub(r"\$\{\w+:-(\d+)\}", r"\1", host))
    assert len(published) == len(set(published)), published
