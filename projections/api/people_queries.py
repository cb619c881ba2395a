"""The read model's people and faces: the SQL behind GET /people, /faces and the face
crops (:mod:`projections.api.people` is the HTTP side, :mod:`projections.api.crops` the
crop files)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from projections.api.people_schemas import Face, Person, PersonPhoto
from projections.api.sendfile import rel_bytes

__all__ = [
    "crop_sources",
    "face",
    "get_face",
    "get_person",
    "list_faces",
    "list_people",
    "person_photos",
    "resolve_person",
]

_FACE_COLS = "face_id, content_hash, model, box, score, landmarks, person_id, assigned_by, rejected"


def face(r: sqlite3.Row) -> Face:
    return Face(
        face_id=r["face_id"], content_hash=r["content_hash"], model=r["model"],
        box=json.loads(r["box"]), score=r["score"], landmarks=json.loads(r["landmarks"]),
        person_id=r["person_id"], assigned_by=r["assigned_by"], rejected=bool(r["rejected"]),
        thumbnail=f"/faces/{r['face_id']}/thumbnail",
    )  # fmt: skip


def resolve_person(conn: sqlite3.Connection, person_id: str) -> sqlite3.Row | None:
    """The person row meant by an id (merges followed), or None."""
    row = conn.execute(
        "SELECT coalesce(merged_into, person_id) AS pid FROM people WHERE person_id = ?",
        (person_id,),
    ).fetchone()
    if row is None:
        return None
    return conn.execute(  # type: ignore[no-any-return]
        "SELECT person_id, name, hidden FROM people WHERE person_id = ?", (row["pid"],)
    ).fetchone()


def _person_of(conn: sqlite3.Connection, p: sqlite3.Row, n: int, photos: int) -> Person:
    cover = conn.execute(
        f"SELECT {_FACE_COLS} FROM faces WHERE person_id = ? AND rejected = 0"
        " ORDER BY area * score DESC, face_id LIMIT 1",
        (p["person_id"],),
    ).fetchone()
    return Person(
        person_id=p["person_id"], name=p["name"], hidden=bool(p["hidden"]), face_count=n,
        photo_count=photos, cover=face(cover) if cover is not None else None,
    )  # fmt: skip


def list_people(
    conn: sqlite3.Connection,
    hidden: bool,
    named: bool | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[Person]:
    where = ["p.merged_into IS NULL"]
    if not hidden:
        where.append("p.hidden = 0")
    if named is not None:
        where.append(f"p.name IS {'NOT ' if named else ''}NULL")
    having, params = "", []
    if after is not None:
        having = " HAVING n < ? OR (n = ? AND p.person_id > ?)"
        params = [after[0], after[0], after[1]]
    found = conn.execute(
        "SELECT p.person_id, p.name, p.hidden, count(*) AS n,"
        " count(DISTINCT f.content_hash) AS photos FROM people AS p"
        " JOIN faces AS f ON f.person_id = p.person_id AND f.rejected = 0"
        f" WHERE {' AND '.join(where)} GROUP BY p.person_id{having}"
        " ORDER BY n DESC, p.person_id LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [_person_of(conn, r, r["n"], r["photos"]) for r in found]


def get_person(conn: sqlite3.Connection, person_id: str) -> Person | None:
    p = resolve_person(conn, person_id)
    if p is None:
        return None
    n, photos = conn.execute(
        "SELECT count(*), count(DISTINCT content_hash) FROM faces"
        " WHERE person_id = ? AND rejected = 0",
        (p["person_id"],),
    ).fetchone()
    return _person_of(conn, p, n, photos)


def person_photos(
    conn: sqlite3.Connection, person_id: str, after: str | None, limit: int
) -> list[PersonPhoto] | None:
    p = resolve_person(conn, person_id)
    if p is None:
        return None
    found = conn.execute(
        f"SELECT {_FACE_COLS} FROM faces WHERE person_id = ? AND rejected = 0"
        + (" AND content_hash > ?" if after else "")
        + " ORDER BY content_hash, face_id",
        [p["person_id"], *([after] if after else [])],
    )
    by_content: dict[str, list[Face]] = {}
    for r in found:
        if r["content_hash"] not in by_content and len(by_content) == limit:
            break
        by_content.setdefault(r["content_hash"], []).append(face(r))
    out = []
    for h, faces in by_content.items():
        t = conn.execute("SELECT sizes FROM thumbnails WHERE content_hash = ?", (h,)).fetchone()
        taken = conn.execute(
            "SELECT min(date_taken) FROM files WHERE content_hash = ?", (h,)
        ).fetchone()[0]
        sizes = json.loads(t["sizes"]) if t is not None else {}
        thumb = f"/photos/{h}/thumbnail?size=small" if "small" in sizes else None
        out.append(PersonPhoto(content_hash=h, thumbnail=thumb, date_taken=taken, faces=faces))
    return out


def list_faces(
    conn: sqlite3.Connection,
    person: str | None,
    content_hash: str | None,
    unassigned: bool | None,
    after: str | None,
    limit: int,
) -> list[Face] | None:
    where, params = [], []
    if person is not None:
        p = resolve_person(conn, person)
        if p is None:
            return None
        where.append("person_id = ?")
        params.append(p["person_id"])
    if content_hash is not None:
        where.append("content_hash = ?")
        params.append(content_hash)
    if unassigned is not None:
        where.append(f"person_id IS {'' if unassigned else 'NOT '}NULL AND rejected = 0")
    if after is not None:
        where.append("face_id > ?")
        params.append(after)
    sql = f"SELECT {_FACE_COLS} FROM faces" + (f" WHERE {' AND '.join(where)}" if where else "")
    return [face(r) for r in conn.execute(sql + " ORDER BY face_id LIMIT ?", [*params, limit])]


def get_face(conn: sqlite3.Connection, face_id: str) -> Face | None:
    r = conn.execute(f"SELECT {_FACE_COLS} FROM faces WHERE face_id = ?", (face_id,)).fetchone()
    return face(r) if r is not None else None


def crop_sources(conn: sqlite3.Connection, face_id: str) -> dict[str, Any] | None:
    r = conn.execute("SELECT content_hash, box FROM faces WHERE face_id = ?", (face_id,)).fetchone()
    if r is None:
        return None
    t = conn.execute(
        "SELECT sizes FROM thumbnails WHERE content_hash = ?", (r["content_hash"],)
    ).fetchone()
    locs = conn.execute(
        "SELECT f.library_id, f.path, f.raw_path, f.size, f.mtime_ns, l.root FROM files AS f"
        " LEFT JOIN libraries AS l USING (library_id) WHERE f.content_hash = ?"
        " ORDER BY f.library_id, f.path",
        (r["content_hash"],),
    ).fetchall()
    return {
        "content_hash": r["content_hash"],
        "box": json.loads(r["box"]),
        "sizes": json.loads(t["sizes"]) if t is not None else {},
        "locations": [dict(x) | {"rel": rel_bytes(x)} for x in locs],
    }
