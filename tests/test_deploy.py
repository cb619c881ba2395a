"""The distributed deployment files are valid and run the same commands."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from eventsvc.cli import build_parser
from eventsvc.server import find_nats_server

ROOT = Path(__file__).resolve().parent.parent


def _passwords() -> dict[str, str]:
    """nats.conf takes every user's password from the environment (it refuses to start
    without them: tests/test_nats_auth.py)."""
    from eventsvc.core.natsauth import ROLES

    return {f"EVENTSVC_NATS_{r.upper()}_PASSWORD": f"test-{r}" for r in ROLES}


def test_nats_conf_passes_nats_server_t() -> None:
    out = subprocess.run(
        [find_nats_server(), "-t", "-c", str(ROOT / "nats.conf")],
        env={**os.environ, "NATS_SERVER_NAME": "nats-1", **_passwords()},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "valid" in (out.stdout + out.stderr)


def test_compose_services_run_eventsvc_commands_against_the_cluster() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"nats-1", "nats-2", "nats-3"} <= set(services)
    parser = build_parser()
    commands = {}
    for name, svc in services.items():
        if name.startswith("nats-"):
            assert "/etc/nats/nats.conf" in " ".join(svc["command"])
            continue
        args = parser.parse_args(svc["command"])  # the same CLI, or this raises SystemExit
        commands[name] = args.command
        assert "nats-1:4222" in svc["environment"]["EVENTSVC_NATS_URL"]
    assert set(commands.values()) >= {"scan", "worker", "project", "api"}
