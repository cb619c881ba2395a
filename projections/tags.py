"""Appliers for the user's tags and favourites (issue 16): pure functions of the event
and the rows, so a replay gives the same rows. A tag is stored once per content and
case-folded name (the latest spelling wins); removing one that is not there, or
unfavouriting a content that is no favourite, changes nothing."""

from __future__ import annotations

import sqlite3

from eventsvc.core.events import Favorited, TagAdded, TagRemoved, Unfavorited, tag_key

__all__ = ["APPLIERS"]


def _tag_added(conn: sqlite3.Connection, seq: int, e: TagAdded) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO user_tags (content_hash, tag_key, name, seq) VALUES (?, ?, ?, ?)",
        (e.content_hash, tag_key(e.tag), e.tag, seq),
    )


def _tag_removed(conn: sqlite3.Connection, seq: int, e: TagRemoved) -> None:
    conn.execute(
        "DELETE FROM user_tags WHERE content_hash = ? AND tag_key = ?",
        (e.content_hash, tag_key(e.tag)),
    )


def _favorited(conn: sqlite3.Connection, seq: int, e: Favorited) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO favorites (content_hash, seq) VALUES (?, ?)", (e.content_hash, seq)
    )


def _unfavorited(conn: sqlite3.Connection, seq: int, e: Unfavorited) -> None:
    conn.execute("DELETE FROM favorites WHERE content_hash = ?", (e.content_hash,))


APPLIERS = {
    TagAdded: _tag_added,
    TagRemoved: _tag_removed,
    Favorited: _favorited,
    Unfavorited: _unfavorited,
}
