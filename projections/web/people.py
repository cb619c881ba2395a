"""``/web/people``: people as cover crops (rename inline, hide, select several to merge),
and ``/web/people/{person_id}``: one person's photos, where a face is moved out (a new
person: the split), moved to another person, or rejected (not a face).

Rendered from the read model with the same queries as ``GET /people`` and
``GET /people/{id}/photos``; every action is a write of the JSON API from
``static/people.js`` (``PATCH /people/{id}``, ``POST /people/{id}/merge``,
``POST /faces/{id}/reassign``, ``POST /faces/{id}/reject``), then the page reloads once
the projector has applied the event.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import Redirect, Template

from projections.api import db
from projections.api.context import Ctx
from projections.api.people import check_person
from projections.api.people_queries import get_person, list_people, person_photos
from projections.api.people_schemas import Person, PersonPhoto
from projections.web.common import page

__all__ = ["MAX_PEOPLE", "MAX_PHOTOS", "PeoplePages"]

MAX_PEOPLE = 1000
"""People shown on one page (most faces first); the rest are counted, not shown."""
MAX_PHOTOS = 500
"""Photos shown on a person's page."""


class PeoplePages(Controller):
    path = "/web/people"
    include_in_schema = False

    @get("/", name="web-people")
    async def people(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        hidden: Annotated[bool, Parameter(description="List hidden people too.")] = False,
    ) -> Template:
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: list_people(c, hidden, None, None, MAX_PEOPLE + 1),
            [],
        )
        return page(
            request, "people.html", "people", people=found[:MAX_PEOPLE],
            more=len(found) > MAX_PEOPLE, show_hidden=hidden,
        )  # fmt: skip

    @get("/{person_id:str}", name="web-person")
    async def person(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        person_id: Annotated[str, Parameter(description="A person id (p-<16 hex>).")],
    ) -> Template | Redirect:
        check_person(person_id)

        def load(c: sqlite3.Connection) -> tuple[Person, list[PersonPhoto], list[Person]] | None:
            p = get_person(c, person_id)
            if p is None:
                return None
            photos = person_photos(c, p.person_id, None, MAX_PHOTOS + 1) or []
            others = [
                o
                for o in list_people(c, True, None, None, MAX_PEOPLE)
                if o.person_id != p.person_id
            ]
            return p, photos, others

        found = await db.read(ctx.settings.readmodel_dir, load, None)
        if found is None:
            raise NotFoundException(detail=f"unknown person {person_id}")
        person, photos, others = found
        if person.person_id != person_id:  # merged: the person it went into
            return Redirect(f"/web/people/{person.person_id}", status_code=303)
        return page(
            request, "person.html", "people", person=person, photos=photos[:MAX_PHOTOS],
            more=len(photos) > MAX_PHOTOS, others=others,
        )  # fmt: skip
