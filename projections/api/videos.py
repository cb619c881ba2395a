"""GET /videos/{content_hash} (state and facts) and the files of its HLS playlist:
/videos/{content_hash}/index.m3u8, its init.mp4 and seg_NNNNN.m4s segments, poster.jpg
and preview.mp4, with byte ranges. A hash with nothing to serve answers 404 with the
pipeline state (pending, failed + reason, removed, not a video, unknown)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from eventsvc.core.layout import PLAYLIST, POSTER, PREVIEW, SERVABLE_RE, playlist_dir
from projections.api import db
from projections.api.context import ApiContext, Ctx
from projections.api.errors import bad_parameter, error_responses
from projections.api.params import HASH_PATTERN, SERVABLE_PATTERN, binary_operation
from projections.api.photos import check_hash
from projections.api.redact import redacted
from projections.api.schemas import ErrorDetail
from projections.api.sendfile import send_file
from projections.api.video_schemas import VideoInfo, VideoNotReady

__all__ = ["CONTENT_TYPES", "VideosController", "video_state"]

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def video_state(conn: sqlite3.Connection, h: str) -> VideoInfo:
    row = conn.execute("SELECT * FROM playlists WHERE content_hash = ?", (h,)).fetchone()
    base = f"/videos/{h}"
    if row is not None:
        return VideoInfo(
            content_hash=h, state="ready", reason=row["reason"], playlist=f"{base}/{PLAYLIST}",
            poster=f"{base}/{POSTER}" if row["poster"] else None,
            preview=f"{base}/{PREVIEW}" if row["preview"] else None,
            duration=row["duration"], segments=row["segments"], codecs=row["codecs"],
            mode=row["mode"], width=row["width"], height=row["height"],
        )  # fmt: skip
    kind = conn.execute("SELECT media_kind FROM content WHERE content_hash = ?", (h,)).fetchone()
    if kind is None:
        kind = conn.execute(
            "SELECT media_kind FROM files WHERE content_hash = ? LIMIT 1", (h,)
        ).fetchone()
    if kind is None:
        return VideoInfo(content_hash=h, state="unknown")
    if kind["media_kind"] != "video":
        return VideoInfo(content_hash=h, state="not_video")
    failure = conn.execute(
        "SELECT reason FROM failures WHERE stage = 'playlist' AND content_hash = ?"
        " ORDER BY seq DESC LIMIT 1",
        (h,),
    ).fetchone()
    if failure is not None:
        return VideoInfo(content_hash=h, state="failed", reason=failure["reason"])
    live = conn.execute("SELECT 1 FROM files WHERE content_hash = ? LIMIT 1", (h,)).fetchone()
    if live is None:
        return VideoInfo(content_hash=h, state="removed")
    return VideoInfo(content_hash=h, state="pending")


def _not_ready(info: VideoInfo, what: str) -> Response[Any]:
    h = info.content_hash
    detail = {
        "ready": f"{what} of {h} is missing from the video store (removed by the clean-up?)",
        "pending": f"the playlist for {h} is pending (not made yet)",
        "failed": f"the playlist for {h} failed: {info.reason}",
        "removed": f"no live file holds {h}: there is no playlist (any made was cleaned up)",
        "not_video": f"{h} is not a video",
        "unknown": f"unknown content_hash {h}",
    }[info.state]
    body = VideoNotReady(detail=detail, state=info.state, reason=info.reason)
    return Response(body, status_code=404, media_type="application/json")


def _open(root: Path, h: str, name: str) -> tuple[BinaryIO, os.stat_result] | None:
    path = playlist_dir(root, h) / name
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    f = os.fdopen(fd, "rb", buffering=0)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        return None
    return f, st


async def _state(ctx: ApiContext, h: str) -> VideoInfo:
    return await db.read(
        ctx.settings.readmodel_dir,
        lambda c: redacted(ctx.settings, c, video_state(c, h), "reason"),
        VideoInfo(content_hash=h, state="unknown"),
    )


_RESPONSES = {
    404: ResponseSpec(VideoNotReady, description="Nothing to serve; `state` says why."),
    206: ResponseSpec(None, description="The requested byte range."),
    304: ResponseSpec(None, description="If-None-Match matched the ETag."),
    416: ResponseSpec(
        ErrorDetail, description="The range is beyond the end; Content-Range: bytes */size."
    ),
}


class VideosController(Controller):
    path = "/videos"
    tags = ("videos",)

    @get(
        "/{content_hash:str}",
        summary="A video's playlist state",
        description="Whether the content's HLS playlist is ready (with its duration, "
        "segments, codecs, remux/transcode and URLs), pending, failed (with the reason), "
        "or why there is none (removed: no live file holds it; not a video; unknown).",
        responses=error_responses(400),
    )
    async def get_video(
        self,
        ctx: Ctx,
        content_hash: Annotated[
            str, Parameter(description="BLAKE3 hex of the content.", pattern=HASH_PATTERN)
        ],
    ) -> VideoInfo:
        check_hash(content_hash)
        return await _state(ctx, content_hash)

    @get(
        "/{content_hash:str}/{name:str}",
        summary="A playlist file",
        description="`index.m3u8` (application/vnd.apple.mpegurl), its `init.mp4` and "
        "`seg_NNNNN.m4s` fMP4 segments (video/iso.segment), `poster.jpg` and "
        "`preview.mp4`. Byte ranges, ETag and If-None-Match are honoured. 404 carries "
        "the pipeline state: pending, failed (reason), removed, not_video, unknown.",
        response_description="The file; its content type follows from its name.",
        responses={**error_responses(400), **_RESPONSES},
        operation_class=binary_operation(sorted(set(CONTENT_TYPES.values()))),
    )
    async def get_file(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        content_hash: Annotated[
            str, Parameter(description="BLAKE3 hex of the content.", pattern=HASH_PATTERN)
        ],
        name: Annotated[
            str,
            Parameter(
                description="index.m3u8, init.mp4, a segment, poster.jpg or preview.mp4.",
                pattern=SERVABLE_PATTERN,
            ),
        ],
    ) -> Response[Any]:
        check_hash(content_hash)
        if not SERVABLE_RE.fullmatch(name):
            raise bad_parameter(
                "name", "must be index.m3u8, init.mp4, seg_NNNNN.m4s, poster.jpg or preview.mp4"
            )
        opened = await asyncio.to_thread(_open, ctx.settings.videos_dir, content_hash, name)
        if opened is None:
            return _not_ready(await _state(ctx, content_hash), name)
        f, st = opened
        etag = f'"{content_hash[:32]}-{name}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        cache = ("private, " if ctx.settings.api_has_tokens else "public, ") + "max-age=86400"
        return send_file(
            request, f, size=st.st_size, etag=etag, headers={"Cache-Control": cache},
            media_type=CONTENT_TYPES[os.path.splitext(name)[1]],
        )  # fmt: skip
