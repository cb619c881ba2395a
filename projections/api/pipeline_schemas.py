"""Response schemas of /pipeline (msgspec Structs, every field documented).

(No ``from __future__ import annotations`` here: the Annotated metadata is read at runtime.)
"""

from typing import Annotated, Any

import msgspec
from msgspec import Meta

__all__ = [
    "ConsumerStatus",
    "Failure",
    "FailureSummary",
    "NatsStatus",
    "PipelineStatus",
    "ProjectorStatus",
    "StreamStatus",
]


class NatsStatus(msgspec.Struct, omit_defaults=True):
    """The API's own NATS connection."""

    connected: Annotated[bool, Meta(description="Whether the API holds a NATS connection.")]
    error: Annotated[str | None, Meta(description="Why not (absent when connected).")] = None
    since: Annotated[
        str | None, Meta(description="Since when it is up (ISO 8601, UTC; absent when not).")
    ] = None


class StreamStatus(msgspec.Struct, omit_defaults=True):
    """The JetStream stream, or ``{name, error}`` when it cannot be read."""

    name: Annotated[str, Meta(description="Stream name.")]
    last_seq: Annotated[int | None, Meta(description="Sequence of the last event.")] = None
    messages: Annotated[int | None, Meta(description="Events held.")] = None
    bytes: Annotated[int | None, Meta(description="Bytes held.")] = None
    error: Annotated[
        str | None, Meta(description="Why the stream could not be read (only on failure).")
    ] = None
    differs: Annotated[
        list[str] | None,
        Meta(
            description="Configuration fields that differ from this version's (an admin "
            "updates them with `eventsvc setup`; nothing else changes the stream)."
        ),
    ] = None


class ProjectorStatus(msgspec.Struct):
    """The read model's position in the log."""

    generation: Annotated[
        str | None, Meta(description="Current read-model generation file; null if none yet.")
    ]
    checkpoint: Annotated[int, Meta(description="Last stream sequence applied to it.")]
    lag: Annotated[
        int | None, Meta(description="Stream last_seq - checkpoint; null without the stream.")
    ]


class ConsumerStatus(msgspec.Struct):
    """A durable JetStream consumer (a deriver or worker)."""

    name: Annotated[str, Meta(description="Durable name.")]
    pending: Annotated[int, Meta(description="Messages not yet delivered (num_pending).")]
    ack_pending: Annotated[int, Meta(description="Delivered, not yet acknowledged.")]
    redelivered: Annotated[int, Meta(description="Messages delivered more than once.")]
    last_delivered: Annotated[int, Meta(description="Stream sequence last delivered.")]


class Failure(msgspec.Struct):
    """A recorded DerivationFailed."""

    seq: Annotated[int, Meta(description="Stream sequence of the DerivationFailed event.")]
    stage: Annotated[
        str, Meta(description="The stage (worker) that failed, e.g. 'hasher', 'media', 'faces'.")
    ]
    operation: Annotated[
        str,
        Meta(
            description="What it was doing: the media stage's 'exif' or 'thumbnail', "
            "else the stage's name."
        ),
    ]
    reason: Annotated[str, Meta(description="Why (truncated to 2000 characters).")]
    permanent: Annotated[bool, Meta(description="False when retries were exhausted.")]
    input_subject: Annotated[str, Meta(description="Subject of the event that failed.")]
    deliveries: Annotated[int, Meta(description="Deliveries before giving up.")]
    file_id: Annotated[str | None, Meta(description="File location concerned, if any.")]
    content_hash: Annotated[str | None, Meta(description="Content concerned, if any.")]
    library_id: Annotated[str | None, Meta(description="Library concerned, if any.")]
    occurred_at: Annotated[str, Meta(description="When it was recorded (ISO 8601).")]


class FailureSummary(msgspec.Struct):
    """Recorded derivation failures."""

    total: Annotated[int, Meta(description="Failures recorded.")]
    by_stage: Annotated[dict[str, int], Meta(description="Failures per stage.")]
    by_operation: Annotated[dict[str, int], Meta(description="Failures per '<stage>:<operation>'.")]
    recent: Annotated[list[Failure], Meta(description="The 20 latest, newest first.")]


class PipelineStatus(msgspec.Struct):
    """How far the pipeline has come: stream, projector, consumers, failures."""

    nats: Annotated[NatsStatus, Meta(description="The API's NATS connection.")]
    stream: Annotated[StreamStatus, Meta(description="The event stream.")]
    projector: Annotated[ProjectorStatus, Meta(description="The read model's position.")]
    consumers: Annotated[
        list[ConsumerStatus], Meta(description="Durable consumers on the stream, by name.")
    ]
    failures: Annotated[FailureSummary, Meta(description="Recorded derivation failures.")]
    extra: Annotated[
        dict[str, Any] | None,
        Meta(description="Status from the hosting process (e.g. workers); null if none."),
    ]
    consumers_error: Annotated[
        str | None,
        Meta(description="Why the consumers could not be listed (then the list is empty)."),
    ] = None
