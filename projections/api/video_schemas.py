"""Response schemas of the video endpoints (msgspec Structs, separate from events).

(No ``from __future__ import annotations`` here: the Annotated metadata is read at runtime.)
"""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = ["VideoInfo", "VideoNotReady", "VideoState"]

VideoState = Literal["ready", "pending", "failed", "removed", "not_video", "unknown"]
STATE = (
    "'ready' (playlist made), 'pending' (not made yet), 'failed' (see reason), "
    "'removed' (no live file holds the content; a playlist made before was cleaned up), "
    "'not_video' (the content is an image), 'unknown' (no such content)."
)


class VideoNotReady(msgspec.Struct):
    """The 404 body of the video endpoints: why there is nothing to serve."""

    detail: Annotated[str, Meta(description="What is missing and why.")]
    state: Annotated[VideoState, Meta(description=STATE)]
    reason: Annotated[str | None, Meta(description="The recorded failure, if any.")] = None


class VideoInfo(msgspec.Struct):
    """A video content's playlist facts and URLs."""

    content_hash: Annotated[str, Meta(description="BLAKE3 of the video's bytes.")]
    state: Annotated[VideoState, Meta(description=STATE)]
    reason: Annotated[
        str | None, Meta(description="Why it failed, or why it was remuxed/transcoded.")
    ] = None
    playlist: Annotated[str | None, Meta(description="URL path of the HLS playlist.")] = None
    poster: Annotated[str | None, Meta(description="URL path of the poster JPEG.")] = None
    preview: Annotated[str | None, Meta(description="URL path of the muted preview MP4.")] = None
    duration: Annotated[float | None, Meta(description="Seconds (sum of segments).")] = None
    segments: Annotated[int | None, Meta(description="Number of HLS segments.")] = None
    codecs: Annotated[str | None, Meta(description="RFC 6381 codecs of the playlist.")] = None
    mode: Annotated[
        Literal["remux", "transcode"] | None,
        Meta(description="'remux' (streams copied) or 'transcode' (re-encoded)."),
    ] = None
    width: Annotated[int | None, Meta(description="Coded width of the output.")] = None
    height: Annotated[int | None, Meta(description="Coded height of the output.")] = None
