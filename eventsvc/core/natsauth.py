"""Who may do what on NATS: one user per component, each with the narrowest permissions.

The model (``permissions``) is the one source for the embedded server's generated
configuration, for ``nats.conf`` of a cluster (``cluster_authorization``) and for the
documentation. NATS permissions are about *subjects*: publishing an event is a publish to
its subject, and every JetStream API call is a publish to a ``$JS.API.…`` subject, so a
user gets exactly the event subjects its component publishes and the API calls it makes.
Replies come back on a per-user inbox prefix (``_INBOX_<user>``), which only that user
may subscribe to.

Credentials of the embedded server live in ``<data dir>/nats/auth/<role>.json``
(``{"user", "password"}``), mode 0600 in a 0700 directory: only the data dir's owner (and
root) can read them, so the server's port is no longer enough to write the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eventsvc.core.errors import ConfigError

if TYPE_CHECKING:
    from eventsvc.core.settings import Settings

__all__ = [
    "DERIVERS",
    "ROLES",
    "STATUS_BUCKET",
    "AuthStore",
    "Credentials",
    "cluster_authorization",
    "credentials_for",
    "inbox_prefix",
    "library_config_subjects",
    "load_credentials",
    "nats_context",
    "permissions",
    "private_dir",
    "publishes",
    "server_users",
    "write_private",
]

STATUS_BUCKET = "EVENTSVC_STATUS"
"""The KV bucket of operational status (``EventLog.STATUS_BUCKET``)."""

DERIVERS = ("hasher", "media", "clip", "faces", "people", "playlist")
"""Workers, each a durable consumer of the same name and a user of the same name."""

REDERIVING = ("media", "faces", "playlist")
"""Derivers that re-derive in the background after a version change (durable
``<role>-rederive``, see :mod:`eventsvc.derive.rederive`)."""

_WORKER_DURABLES = (*DERIVERS, *(f"{r}-rederive" for r in REDERIVING))

ROLES = ("admin", "scanner", *DERIVERS, "reencode", "projector", "api", "inspect")
"""Every NATS user: ``admin`` sets up the stream, ``inspect`` only reads."""


def library_config_subjects(prefix: str = "photos") -> list[str]:
    """The library configuration events (LibraryAdded/Updated/Removed): the ``api`` user
    publishes them; workers and the scanner never do."""
    return [f"{prefix}.library.*.{t}" for t in ("LibraryAdded", "LibraryUpdated", "LibraryRemoved")]


def publishes(role: str, prefix: str = "photos") -> list[str]:
    """The event subjects ``role`` may publish (what its component writes), nothing else."""
    p = prefix
    failed = [f"{p}.content.*.DerivationFailed", f"{p}.stage.{role}.DerivationFailed"]
    table: dict[str, list[str]] = {
        "scanner": [
            f"{p}.file.*.FileSeen",
            f"{p}.file.*.FileMissing",
            f"{p}.library.*.LibraryOnline",
            f"{p}.library.*.LibraryStale",
        ],
        # the hasher's input is a file: its failures are recorded on the file
        "hasher": [
            f"{p}.content.*.HashComputed",
            f"{p}.file.*.DerivationFailed",
            f"{p}.stage.hasher.DerivationFailed",
        ],
        "media": [f"{p}.content.*.ExifExtracted", f"{p}.content.*.ThumbnailReady", *failed],
        "clip": [f"{p}.content.*.ClipEncoded.*", *failed],
        # backfills: `eventsvc reencode` (CLIP per model), `eventsvc rederive` (media,
        # faces, playlist)
        "reencode": [
            f"{p}.content.*.ClipEncoded.*",
            f"{p}.content.*.ExifExtracted",
            f"{p}.content.*.ThumbnailReady",
            f"{p}.content.*.FacesDetected.*",
            f"{p}.content.*.PlaylistReady",
            f"{p}.content.*.DerivationFailed",
            f"{p}.stage.*.DerivationFailed",  # its stage is clip-<model> or rederive-<stage>
        ],
        "faces": [f"{p}.content.*.FacesDetected.*", *failed],
        "people": [f"{p}.person.*.PersonCreated", f"{p}.face.*.FaceAssigned", *failed],
        "playlist": [f"{p}.content.*.PlaylistReady", f"{p}.content.*.PlaylistRemoved", *failed],
        "api": [
            f"{p}.person.*.PersonNamed",
            f"{p}.person.*.PersonHidden",
            f"{p}.person.*.PeopleMerged",
            f"{p}.face.*.FaceReassigned",
            f"{p}.face.*.FaceRejected",
            f"{p}.pair.*.NotDuplicate",
            # tags and favourites (issue 16)
            f"{p}.content.*.TagAdded",
            f"{p}.content.*.TagRemoved",
            f"{p}.content.*.Favorited",
            f"{p}.content.*.Unfavorited",
            # library configuration (issue 16): the API's endpoints and the start-up
            # reconcile of a TOML file / CLI roots (which publishes as the api user)
            *library_config_subjects(p),
        ],
    }
    if role not in ROLES:
        raise ConfigError(f"unknown NATS role {role!r}; known: {', '.join(ROLES)}")
    return list(table.get(role, []))


def inbox_prefix(user: str) -> str:
    """Replies to ``user`` arrive under this prefix, which only ``user`` may read."""
    return f"_INBOX_{user}"


def _reads(stream: str) -> list[str]:
    """JetStream API calls of a reader: stream info, ordered (ephemeral) consumers and
    their flow control, consumer info and lists, message gets, the status bucket."""
    kv = f"KV_{STATUS_BUCKET}"
    return [
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}",  # an ephemeral consumer: no name, no durable
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.API.CONSUMER.LIST.{stream}",
        f"$JS.API.CONSUMER.NAMES.{stream}",
        f"$JS.FC.{stream}.>",
        f"$JS.API.STREAM.INFO.{kv}",
        f"$JS.API.STREAM.MSG.GET.{kv}",
        f"$JS.API.DIRECT.GET.{kv}",
        f"$JS.API.DIRECT.GET.{kv}.>",
    ]


def _durable(stream: str, name: str) -> list[str]:
    """Creating, reading from and acking one durable pull consumer of its own."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}.{name}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{name}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{name}",
        f"$JS.API.CONSUMER.DELETE.{stream}.{name}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
        f"$JS.ACK.{stream}.{name}.>",
    ]


def permissions(
    role: str, *, user: str | None = None, stream: str = "PHOTOS", prefix: str = "photos"
) -> dict[str, dict[str, list[str]]]:
    """NATS ``permissions`` of ``role`` (``user`` names its inbox; default the role)."""
    user = user or role
    allow = publishes(role, prefix)
    deny: list[str] = []
    kv = f"$KV.{STATUS_BUCKET}"
    if role == "admin":
        # streams and consumers, no events: $JS.API.> never reaches the stream's subjects
        allow += ["$JS.API.>", f"$JS.FC.{stream}.>"]
    else:
        allow += _reads(stream)
    if role in DERIVERS:
        allow += _durable(stream, role)
        if role in REDERIVING:
            allow += _durable(stream, f"{role}-rederive")  # its background re-derivation
        if role in ("clip", "faces"):
            allow.append(f"{kv}.worker.{role}")  # a paused worker says why
        if role == "faces":
            allow.append(f"{kv}.worker.faces-rederive")  # and its re-derivation
    elif role == "reencode":
        # a consumer per model (clip-<model>): any name but another worker's
        allow += _durable(stream, "*")
        allow.append(f"{kv}.worker.*")
        deny += [s for d in _WORKER_DURABLES for s in _durable(stream, d)]
    elif role == "scanner":
        allow += [f"{kv}.scan.*", f"{kv}.watch.*"]  # last scan and watch state per library
    elif role == "inspect":
        # the `nats` CLI: stream lists, and ordered consumers the way nats.go makes them
        # (named, pulled); never on a worker's durable (a pull there would steal its
        # messages, a create would retarget it)
        allow += [
            "$JS.API.STREAM.NAMES",
            "$JS.API.STREAM.LIST",
            f"$JS.API.CONSUMER.CREATE.{stream}.*",
            f"$JS.API.CONSUMER.CREATE.{stream}.*.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        ]
        deny += [s for d in _WORKER_DURABLES for s in _durable(stream, d)]
    # nobody but the components above writes events (deny wins over any allow)
    if role in ("admin", "projector", "inspect"):
        deny.append(f"{prefix}.>")
    perms: dict[str, dict[str, list[str]]] = {
        "publish": {"allow": allow},
        "subscribe": {"allow": [f"{inbox_prefix(user)}.>"]},
    }
    if deny:
        perms["publish"]["deny"] = deny
    return perms


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.user)

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(user={self.user!r})"


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (created 0700, tightened if
    looser and ours)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (no window where it is
    readable), replacing it atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AuthStore:
    """Generated per-role credentials of an embedded server: ``<dir>/<role>.json``."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def path(self, role: str) -> Path:
        if role not in ROLES:
            raise ConfigError(f"unknown NATS role {role!r}; known: {', '.join(ROLES)}")
        return self.dir / f"{role}.json"

    def ensure(self) -> dict[str, Credentials]:
        """Every role's credentials, generating the missing ones (kept across restarts)."""
        private_dir(self.dir)
        out: dict[str, Credentials] = {}
        for role in ROLES:
            path = self.path(role)
            if not path.exists():
                creds = Credentials(role, secrets.token_urlsafe(32))
                write_private(path, json.dumps({"user": creds.user, "password": creds.password}))
            else:
                if path.stat().st_mode & 0o077:
                    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
                creds = self.load(role)
            out[role] = creds
        return out

    def load(self, role: str) -> Credentials:
        return load_credentials(self.path(role))


def load_credentials(path: Path) -> Credentials:
    """``{"user": …, "password": …}`` from a file; a clear error when it cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
        return Credentials(str(data["user"]), str(data["password"]))
    except PermissionError as exc:
        raise ConfigError(
            f"cannot read NATS credentials {path}: permission denied (they belong to the "
            "data dir's owner; run as that user, or give EVENTSVC_NATS_USER/PASSWORD)"
        ) from exc
    except FileNotFoundError as exc:
        raise ConfigError(f"no NATS credentials at {path}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"bad NATS credentials file {path}: {exc!r}") from exc


def credentials_for(
    settings: Settings, role: str, store: AuthStore | None = None
) -> Credentials | None:
    """How ``role`` logs in, first found: ``nats_user``/``nats_password(_file)`` (every
    connection of the process as that user), ``nats_creds_dir/<role>.json`` (a user per
    role), the embedded server's ``store``; else None (a server without authorization)."""
    if role not in ROLES:
        raise ConfigError(f"unknown NATS role {role!r}; known: {', '.join(ROLES)}")
    if settings.nats_user:
        if settings.nats_password_file is not None:
            try:
                password = settings.nats_password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read nats_password_file {settings.nats_password_file}: {exc}"
                ) from exc
        elif settings.nats_password is not None:
            password = settings.nats_password.get_secret_value()
        else:
            raise ConfigError("nats_user is set without nats_password(_file)")
        return Credentials(settings.nats_user, password)
    if settings.nats_creds_dir is not None:
        return load_credentials(settings.nats_creds_dir / f"{role}.json")
    if store is not None:
        return store.load(role)
    return None


# ---------------------------------------------------------------- rendering


def server_users(
    creds: dict[str, Credentials], *, stream: str = "PHOTOS", prefix: str = "photos"
) -> list[dict[str, object]]:
    """The ``authorization.users`` of a server configuration."""
    return [
        {
            "user": c.user,
            "password": c.password,
            "permissions": permissions(role, user=c.user, stream=stream, prefix=prefix),
        }
        for role, c in creds.items()
    ]


def _wrap(items: list[str], indent: str, width: int = 92) -> str:
    """A JSON list of strings, wrapped under ``indent``."""
    lines, line = [], ""
    for q in (json.dumps(i) for i in items):
        if line and len(indent) + len(line) + len(q) + 2 > width:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {q}" if line else q
    lines.append(line)
    return "[\n" + "\n".join(indent + ln for ln in lines) + "\n" + indent[:-2] + "]"


def cluster_authorization(stream: str = "PHOTOS", prefix: str = "photos") -> str:
    """The ``authorization`` block of ``nats.conf``: every role's user, its password from
    ``$EVENTSVC_NATS_<ROLE>_PASSWORD`` (a node refuses to start while one is unset)."""
    lines = ["authorization {", "  users: ["]
    for role in ROLES:
        perms = permissions(role, stream=stream, prefix=prefix)
        pub = perms["publish"]
        lines.append(f"    {{user: {role}, password: $EVENTSVC_NATS_{role.upper()}_PASSWORD")
        lines.append("      permissions: {")
        lines.append("        publish: {")
        lines.append(f"          allow: {_wrap(pub['allow'], ' ' * 12)}")
        if "deny" in pub:
            lines.append(f"          deny: {_wrap(pub['deny'], ' ' * 12)}")
        lines.append("        }")
        lines.append(f"        subscribe: {{allow: {json.dumps(perms['subscribe']['allow'])}}}")
        lines.append("      }}")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def nats_context(url: str, creds: Credentials, description: str = "") -> dict[str, str]:
    """A ``nats`` CLI context (``~/.config/nats/context/<name>.json``)."""
    return {
        "description": description or f"eventsvc, read-only user {creds.user}",
        "url": url,
        "user": creds.user,
        "password": creds.password,
        "inbox_prefix": creds.inbox_prefix,
    }
