"""API tokens with scopes (``read``, ``write``: write implies read), from the settings.

Sources, all optional and combined:

* ``EVENTSVC_API_TOKEN``: one token with the ``write`` scope (named ``api_token``);
* ``EVENTSVC_API_READ_TOKEN``: one token with the ``read`` scope (named ``api_read_token``);
* ``EVENTSVC_API_TOKENS_FILE``: a text file, one token a line::

      # scope  token                              name (optional, shown by /auth/me)
      write    9c1f0e7d5b2a4c3e8f6a1b0d2e4c6a8f   admin
      read     4b8e2a6c0d1f3e5a7c9b1d3f5e7a9c0b   tv-in-the-hall

  Blank lines and ``#`` comments are skipped. A file token has at least 16 characters
  and no white space; the file must not be readable or writable by others (``chmod 600``).

No token at all is the open mode: every caller gets ``write`` (loopback only, see
:func:`check_bind`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eventsvc.core.errors import ConfigError
from eventsvc.core.settings import Settings

__all__ = [
    "MIN_FILE_TOKEN",
    "SCOPES",
    "Scope",
    "Token",
    "TokenSet",
    "check_bind",
    "is_loopback",
    "load_tokens",
]

log = logging.getLogger(__name__)

Scope = Literal["read", "write"]
SCOPES: tuple[Scope, ...] = ("read", "write")
MIN_FILE_TOKEN = 16


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    scope: Scope
    digest: bytes
    """sha256 of the token: compared in constant time, the token itself is not kept."""

    def allows(self, scope: Scope) -> bool:
        return self.scope == "write" or scope == "read"


class TokenSet:
    """The configured tokens; ``match`` compares a given token with every one of them."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tuple(tokens)

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def match(self, given: str) -> Token | None:
        digest = _digest(given)
        found = None
        for token in self.tokens:  # no early exit: the time does not depend on which matched
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


def _check_file_mode(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read the API tokens file {path}: {exc}") from exc
    if mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise ConfigError(
            f"the API tokens file {path} is mode {stat.S_IMODE(mode):04o}: others may read or "
            f"change it; `chmod 600 {path}` (group read at most)"
        )
    if mode & stat.S_IRGRP:
        log.warning("the API tokens file %s is readable by its group", path)


def _parse_file(path: Path) -> list[Token]:
    _check_file_mode(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API tokens file {path}: {exc}") from exc
    tokens = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path}, line {n}"
        if len(fields) not in (2, 3):
            raise ConfigError(f"{where}: expected 'SCOPE TOKEN [NAME]', got {len(fields)} fields")
        scope, secret = fields[0].lower(), fields[1]
        if scope not in SCOPES:
            raise ConfigError(f"{where}: unknown scope {fields[0]!r} (read or write)")
        if len(secret) < MIN_FILE_TOKEN:
            raise ConfigError(f"{where}: token shorter than {MIN_FILE_TOKEN} characters")
        name = fields[2] if len(fields) == 3 else f"{path.name}:{n}"
        tokens.append(Token(name, scope, _digest(secret)))  # type: ignore[arg-type]
    return tokens


def load_tokens(settings: Settings) -> TokenSet:
    """Every configured token; a bad tokens file is a :class:`ConfigError`."""
    tokens: list[Token] = []
    if settings.api_token:
        tokens.append(Token("api_token", "write", _digest(settings.api_token)))
    if settings.api_read_token:
        tokens.append(Token("api_read_token", "read", _digest(settings.api_read_token)))
    if settings.api_tokens_file is not None:
        tokens += _parse_file(Path(settings.api_tokens_file))
    for name in ("api_token", "api_read_token"):
        value = getattr(settings, name)
        if value and len(value) < MIN_FILE_TOKEN:
            log.warning(
                "EVENTSVC_%s has fewer than %d characters: easy to guess (try "
                "`python -c 'import secrets; print(secrets.token_hex(16))'`)",
                name.upper(), MIN_FILE_TOKEN,
            )  # fmt: skip
    seen: dict[bytes, str] = {}
    for t in tokens:
        if t.digest in seen:
            raise ConfigError(f"API tokens {seen[t.digest]!r} and {t.name!r} are the same token")
        seen[t.digest] = t.name
    names = [t.name for t in tokens]
    if len(set(names)) != len(names):
        raise ConfigError(f"API token names must be unique: {sorted(names)}")
    return TokenSet(tokens)


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def check_bind(settings: Settings, tokens: TokenSet) -> None:
    """Refuse an open API (no token) on anything but loopback, unless asked for."""
    if tokens or is_loopback(settings.api_host) or settings.api_allow_unauthenticated:
        if not tokens and not is_loopback(settings.api_host):
            log.warning(
                "the API on %s has no token: anyone who can reach it may read and change "
                "everything (EVENTSVC_API_ALLOW_UNAUTHENTICATED is set)",
                settings.api_host,
            )
        return
    raise ConfigError(
        f"refusing to serve the API on {settings.api_host} without a token: anyone on the "
        "network could read every photo and change decisions. Set EVENTSVC_API_TOKEN or "
        "EVENTSVC_API_TOKENS_FILE, bind to 127.0.0.1, or pass --insecure-no-auth "
        "(EVENTSVC_API_ALLOW_UNAUTHENTICATED=true) to run it open anyway"
    )
