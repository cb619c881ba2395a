"""POST /libraries, PATCH /libraries/{id}, DELETE /libraries/{id} (issue 16): library
configuration as events. The API checks a new root as configuration is checked (absolute,
normalised, an existing directory, not inside or around another library, not the data
dir) and publishes ``LibraryAdded`` / ``LibraryUpdated`` / ``LibraryRemoved``; every
component folds them (:mod:`eventsvc.core.library_config`). Write scope, JSON bodies and
``Idempotency-Key`` as every other write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, patch, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Parameter
from msgspec import Meta

from eventsvc.core.events import Event, LibraryAdded, LibraryRemoved, LibraryUpdated
from eventsvc.core.ids import LIBRARY_ID_RE, derive_library_id
from eventsvc.core.library_config import LibraryCatalog, load_catalog
from eventsvc.core.library_ids import log_library_ids
from projections.api.context import ApiContext, Ctx
from projections.api.errors import WRITES, ErrorDetail, bad_parameter, error_responses
from projections.api.idempotency import IdempotencyKey, decision_msg_id
from projections.api.params import BODY_SCHEMAS, body_operation, decode_body

__all__ = [
    "LibraryAccepted",
    "LibraryCreate",
    "LibraryPatch",
    "LibraryWritesController",
]

LibraryId = Annotated[str, Parameter(pattern=LIBRARY_ID_RE.pattern, description="A library id.")]


class LibraryCreate(msgspec.Struct, forbid_unknown_fields=True):
    root: Annotated[str, Meta(min_length=1, max_length=4096)]
    name: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    id: str | None = None
    excludes: list[Annotated[str, Meta(min_length=1, max_length=512)]] = []
    enabled: bool = True


class LibraryPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    excludes: list[Annotated[str, Meta(min_length=1, max_length=512)]] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class LibraryAccepted(msgspec.Struct):
    """Configuration changes are events: every component applies them once it has
    folded them (the scanner at once), the read model once the projector has (seq)."""

    library_id: Annotated[str, Meta(description="The library decided on.")]
    seqs: Annotated[list[int], Meta(description="Stream sequences of the published events.")]
    duplicate: Annotated[bool, Meta(description="A retry: nothing new was recorded.")]


_S, _B = OpenAPIType.STRING, OpenAPIType.BOOLEAN
_EXCLUDES = Schema(
    type=OpenAPIType.ARRAY, max_items=200,
    items=Schema(type=_S, min_length=1, max_length=512, pattern="^[^!]"),
    description="The library's own excludes: a name, or a path glob with '/' ('!' is not "
    "allowed here: a default exclude is dropped with EVENTSVC_EXCLUDE).",
)  # fmt: skip
BODY_SCHEMAS["LibraryCreate"] = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "root": Schema(type=_S, min_length=1, max_length=4096, pattern="^/",
                       description="Absolute root directory: an existing directory, "
                       "normalised, not inside or around another library or the data dir."),
        "name": Schema(type=_S, min_length=1, max_length=200, description="Display name."),
        "id": Schema(type=_S, pattern=LIBRARY_ID_RE.pattern,
                     description="Stable id (default: from the name, as for a libraries file)."),
        "excludes": _EXCLUDES,
        "enabled": Schema(type=_B, default=True, description="Scan it (default true)."),
    },
    required=["root"], additional_properties=False,
)  # fmt: skip
BODY_SCHEMAS["LibraryPatch"] = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "name": Schema(type=_S, min_length=1, max_length=200),
        "excludes": _EXCLUDES,
        "enabled": Schema(type=_B, description="false: disabled (not probed, watched or "
                          "scanned; its photos stay); true: scanned again."),
    },
    min_properties=1, additional_properties=False,
)  # fmt: skip

_RESPONSES = {
    **error_responses(400, 404, *WRITES),
    409: ResponseSpec(ErrorDetail, description="The id or the root is taken."),
    503: ResponseSpec(ErrorDetail, description="No NATS connection (or the publish failed)."),
}


def _check_excludes(values: list[str]) -> tuple[str, ...]:
    if len(values) > 200:
        raise bad_parameter("excludes", "at most 200 patterns")
    bad = [v for v in values if v.startswith("!")]
    if bad:
        raise bad_parameter("excludes", f"{bad[0]!r}: a default exclude is dropped with "
                            "EVENTSVC_EXCLUDE, not per library")  # fmt: skip
    return tuple(values)


async def _catalog(ctx: ApiContext) -> LibraryCatalog:
    return await load_catalog(ctx.require_log(), ctx.settings.data_dir)


async def _publish(ctx: ApiContext, ev: Event, key: str | None) -> LibraryAccepted:
    published = await ctx.require_log().publish(
        ev, msg_id=decision_msg_id(ev, key), dedupe_after=0 if key else None
    )
    return LibraryAccepted(ev.key, [published.seq], published.duplicate)  # type: ignore[attr-defined]


def _conflict(detail: str) -> ClientException:
    return ClientException(status_code=409, detail=detail)


class LibraryWritesController(Controller):
    path = "/libraries"
    tags = ("libraries",)

    @post(
        "/",
        status_code=202,
        summary="Add a library",
        description="Publishes LibraryAdded. The root must be an absolute, existing "
        "directory, not inside or around another library, not the data dir. The scanner "
        "scans it at once.",
        responses=_RESPONSES,
        operation_class=body_operation("LibraryCreate"),
    )
    async def add_library(
        self, ctx: Ctx, request: Request[Any, Any, Any], idempotency_key: IdempotencyKey = None
    ) -> LibraryAccepted:
        data = await decode_body(request, LibraryCreate)
        return await _publish(ctx, await _added(ctx, data, idempotency_key), idempotency_key)

    @patch(
        "/{library_id:str}",
        status_code=202,
        summary="Rename, disable or enable a library, or change its excludes",
        description="Publishes LibraryUpdated. A disabled library is no longer probed, "
        "watched or scanned (its photos stay, /libraries says 'disabled'); changed excludes "
        "apply at once: files newly excluded leave through the guarded missing path of a "
        "full scan.",
        responses=_RESPONSES,
        operation_class=body_operation("LibraryPatch"),
    )
    async def patch_library(
        self, ctx: Ctx, library_id: LibraryId, request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> LibraryAccepted:  # fmt: skip
        data = await decode_body(request, LibraryPatch)
        catalog = await _catalog(ctx)
        if library_id not in catalog.libraries:
            raise NotFoundException(detail=f"no configured library {library_id}")
        changes: dict[str, Any] = {}
        if data.name is not msgspec.UNSET:
            changes["name"] = data.name
        if data.excludes is not msgspec.UNSET:
            changes["excludes"] = _check_excludes(data.excludes)
        if data.enabled is not msgspec.UNSET:
            changes["enabled"] = data.enabled
        if not changes:
            raise bad_parameter("body", "give name, excludes and/or enabled")
        ev = LibraryUpdated(library_id=library_id, **changes)
        return await _publish(ctx, ev, idempotency_key)

    @delete(
        "/{library_id:str}",
        status_code=202,
        summary="Remove a library",
        description="Publishes LibraryRemoved: the library is no longer scanned and its "
        "locations leave every listing. What was derived from its content stays while "
        "another location holds it; the video clean-up no longer counts its files.",
        responses=_RESPONSES,
    )
    async def remove_library(
        self, ctx: Ctx, library_id: LibraryId, idempotency_key: IdempotencyKey = None
    ) -> LibraryAccepted:
        catalog = await _catalog(ctx)
        if library_id not in catalog.libraries and not (
            idempotency_key is not None and library_id in catalog.removed
        ):  # a retry of a removal answers duplicate=true
            raise NotFoundException(detail=f"no configured library {library_id}")
        return await _publish(ctx, LibraryRemoved(library_id=library_id), idempotency_key)


async def _added(ctx: ApiContext, data: LibraryCreate, key: str | None) -> LibraryAdded:
    """The LibraryAdded a POST asks for, checked as configuration is checked."""
    root = data.root
    if not os.path.isabs(root):
        raise bad_parameter("root", "must be an absolute path")
    root = root.rstrip("/") or "/"
    if os.path.normpath(root) != root:
        raise bad_parameter("root", "must be normalised (no '.', '..' or '//')")
    if not os.path.isdir(root):
        raise bad_parameter("root", "is not an existing directory on the API's host")
    excludes = _check_excludes(data.excludes)
    catalog = await _catalog(ctx)
    same_root = [c for c in catalog.libraries.values() if c.root == root]
    known = await log_library_ids(ctx.require_log())
    name = data.name or Path(root).name or root
    if data.id is not None:
        if not LIBRARY_ID_RE.fullmatch(data.id):
            raise bad_parameter("id", f"must match {LIBRARY_ID_RE.pattern}")
        lib_id = data.id
    elif same_root:
        lib_id = same_root[0].library_id
    elif root in known:
        lib_id = known[root]  # a root the log knows keeps its id
    else:
        taken = set(catalog.libraries) | set(catalog.removed) | set(known.values())
        lib_id = derive_library_id(name, Path(root), taken)
    cur = catalog.libraries.get(lib_id)
    if cur is not None and cur.root != root:
        raise _conflict(f"library {lib_id} exists with another root")
    if key is None and (cur is not None or same_root):
        raise _conflict(
            f"library {lib_id} exists" if cur is not None
            else f"{root} is already library {same_root[0].library_id}"
        )  # fmt: skip
    why = catalog.check(root, lib_id)
    if why is not None:
        raise bad_parameter("root", why)
    return LibraryAdded(
        library_id=lib_id, name=name, root=root, excludes=excludes, enabled=data.enabled
    )
