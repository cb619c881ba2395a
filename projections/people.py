"""Appliers for faces and people: automatic results, and human decisions that win.

- A merged person's id resolves to its target (``people.merged_into``), for the faces
  it had and for every later FaceAssigned naming it.
- A face reassigned by hand (FaceReassigned) or rejected (FaceRejected) has
  ``assigned_by = 'user'``: later automatic assignments leave it alone.
Each applier is a pure function of the event and the rows (replay gives the same rows).
"""

from __future__ import annotations

import json
import sqlite3

from eventsvc.core.events import (
    Event,
    FaceAssigned,
    FaceBox,
    FaceReassigned,
    FaceRejected,
    FacesDetected,
    PeopleMerged,
    PersonCreated,
    PersonHidden,
    PersonNamed,
    face_id,
)

__all__ = ["APPLIERS", "replace_faces", "resolve_person"]


def resolve_person(conn: sqlite3.Connection, person_id: str) -> str:
    """Follow merges to the person that is now meant."""
    seen = set()
    while person_id not in seen:
        seen.add(person_id)
        row = conn.execute(
            "SELECT merged_into FROM people WHERE person_id = ?", (person_id,)
        ).fetchone()
        if row is None or row[0] is None:
            break
        person_id = row[0]
    return person_id


def _ensure(conn: sqlite3.Connection, person_id: str, seq: int, founder: str | None = None) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO people (person_id, founder, created_seq) VALUES (?, ?, ?)",
        (person_id, founder, seq),
    )


def _decision(conn: sqlite3.Connection, seq: int, e: Event, subject: str) -> None:
    detail = e.model_dump(mode="json", exclude={"occurred_at", "causation", "type", "v"})
    conn.execute(
        "INSERT OR REPLACE INTO people_decisions (seq, type, subject, detail, occurred_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (seq, e.type, subject, json.dumps(detail, sort_keys=True), e.occurred_at.isoformat()),  # type: ignore[attr-defined]
    )


def _faces_detected(conn: sqlite3.Connection, seq: int, e: FacesDetected) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO face_scans (content_hash, model, faces, seq) VALUES (?, ?, ?, ?)",
        (e.content_hash, e.model, len(e.faces), seq),
    )
    for i, f in enumerate(e.faces):
        conn.execute(
            """INSERT OR IGNORE INTO faces (face_id, content_hash, model, idx, box, area, score,
                                            landmarks, seq)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (face_id(e.content_hash, e.model, i), e.content_hash, e.model, i, *_geometry(f), seq),
        )


def _geometry(f: FaceBox) -> tuple[str, float, float, str]:
    """(box, area, score, landmarks) of a detected face as the faces table holds them."""
    left, top, right, bottom = f.box
    return (
        json.dumps(list(f.box)),
        max(right - left, 0.0) * max(bottom - top, 0.0),
        f.score,
        json.dumps([list(p) for p in f.landmarks]),
    )


def replace_faces(conn: sqlite3.Connection, e: FacesDetected) -> None:
    """A newer face deriver's result replaces the older scan: the count, the faces it no
    longer finds, and the geometry of those it finds at the same index (their ids, and so
    any person they belong to, stay)."""
    conn.execute(
        "DELETE FROM face_scans WHERE content_hash = ? AND model = ?", (e.content_hash, e.model)
    )
    conn.execute(
        "DELETE FROM faces WHERE content_hash = ? AND model = ? AND idx >= ?",
        (e.content_hash, e.model, len(e.faces)),
    )
    for i, f in enumerate(e.faces):
        conn.execute(
            "UPDATE faces SET box = ?, area = ?, score = ?, landmarks = ? WHERE face_id = ?",
            (*_geometry(f), face_id(e.content_hash, e.model, i)),
        )


def _person_created(conn: sqlite3.Connection, seq: int, e: PersonCreated) -> None:
    _ensure(conn, e.person_id, seq, e.founder)


def _face_assigned(conn: sqlite3.Connection, seq: int, e: FaceAssigned) -> None:
    target = resolve_person(conn, e.person_id)
    _ensure(conn, target, seq)
    conn.execute(
        "UPDATE faces SET person_id = ?, assigned_by = 'auto', distance = ?"
        " WHERE face_id = ? AND rejected = 0 AND coalesce(assigned_by, '') != 'user'",
        (target, e.distance, e.face_id),
    )


def _face_reassigned(conn: sqlite3.Connection, seq: int, e: FaceReassigned) -> None:
    target = resolve_person(conn, e.person_id)
    _ensure(conn, target, seq)
    conn.execute(
        "UPDATE faces SET person_id = ?, assigned_by = 'user', distance = NULL, rejected = 0"
        " WHERE face_id = ?",
        (target, e.face_id),
    )
    _decision(conn, seq, e, e.face_id)


def _face_rejected(conn: sqlite3.Connection, seq: int, e: FaceRejected) -> None:
    conn.execute(
        "UPDATE faces SET person_id = NULL, assigned_by = 'user', distance = NULL, rejected = 1"
        " WHERE face_id = ?",
        (e.face_id,),
    )
    _decision(conn, seq, e, e.face_id)


def _people_merged(conn: sqlite3.Connection, seq: int, e: PeopleMerged) -> None:
    _decision(conn, seq, e, e.source)
    src, dst = resolve_person(conn, e.source), resolve_person(conn, e.target)
    if src == dst:
        return
    _ensure(conn, src, seq)
    _ensure(conn, dst, seq)
    conn.execute(
        "UPDATE people SET name = coalesce(name, (SELECT name FROM people WHERE person_id = ?))"
        " WHERE person_id = ?",
        (src, dst),
    )
    conn.execute(
        "UPDATE people SET merged_into = ? WHERE person_id = ? OR merged_into = ?", (dst, src, src)
    )
    conn.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (dst, src))


def _person_named(conn: sqlite3.Connection, seq: int, e: PersonNamed) -> None:
    target = resolve_person(conn, e.person_id)
    _ensure(conn, target, seq)
    name = e.name.strip() if e.name else None
    conn.execute("UPDATE people SET name = ? WHERE person_id = ?", (name or None, target))
    _decision(conn, seq, e, e.person_id)


def _person_hidden(conn: sqlite3.Connection, seq: int, e: PersonHidden) -> None:
    target = resolve_person(conn, e.person_id)
    _ensure(conn, target, seq)
    conn.execute("UPDATE people SET hidden = ? WHERE person_id = ?", (int(e.hidden), target))
    _decision(conn, seq, e, e.person_id)


APPLIERS = {
    FacesDetected: _faces_detected,
    PersonCreated: _person_created,
    FaceAssigned: _face_assigned,
    FaceReassigned: _face_reassigned,
    FaceRejected: _face_rejected,
    PeopleMerged: _people_merged,
    PersonNamed: _person_named,
    PersonHidden: _person_hidden,
}
