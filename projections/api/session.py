"""Browser sessions: a random id in an HttpOnly cookie, its scope kept in this process.

``POST /auth/login`` with a token creates one carrying that token's name and scope;
``POST /auth/logout`` drops it. Sessions live in memory only: a restart logs everyone
out, and a session can never outlive the tokens the process was started with.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from projections.api.tokens import Scope

__all__ = ["COOKIE", "MAX_SESSIONS", "Session", "SessionStore"]

COOKIE = "eventsvc_session"
MAX_SESSIONS = 10_000
"""The oldest sessions are dropped beyond this many."""


@dataclass(frozen=True, slots=True)
class Session:
    token_name: str
    scope: Scope
    expires_at: float
    """Unix time."""


def _key(sid: str) -> bytes:
    # The store is keyed by a hash: a dict lookup's timing then says nothing about ids.
    return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).digest()


class SessionStore:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._now = time.time
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, token_name: str, scope: Scope) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(token_name, scope, self._now() + self.ttl)
        with self._lock:
            self._sessions[_key(sid)] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return sid, session

    def get(self, sid: str) -> Session | None:
        key = _key(sid)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires_at <= self._now():
                del self._sessions[key]
                return None
        return session

    def drop(self, sid: str) -> bool:
        with self._lock:
            return self._sessions.pop(_key(sid), None) is not None

    def __len__(self) -> int:
        return len(self._sessions)
