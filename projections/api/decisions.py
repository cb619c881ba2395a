"""Publishing a user's decisions (people, tags): the one way the API writes, as events
with an idempotency key's message id, and the responses such an endpoint documents."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from eventsvc.core.events import Event
from projections.api.context import ApiContext
from projections.api.errors import WRITES, error_responses
from projections.api.idempotency import decision_msg_id
from projections.api.schemas import ErrorDetail

__all__ = ["DECISION_RESPONSES", "publish_decisions"]

DECISION_RESPONSES = {
    **error_responses(400, 404, *WRITES),
    503: ResponseSpec(
        ErrorDetail, description="No NATS connection (or the publish failed), or no read model."
    ),
}
"""The responses of an endpoint that publishes a decision."""


async def publish_decisions(
    ctx: ApiContext, events: list[Event], key: str | None = None
) -> tuple[list[int], bool]:
    """Publish ``events`` in order; (their stream sequences, whether every one was a
    duplicate publish)."""
    event_log = ctx.require_log()  # LogError: 503 (projections.api.errors)
    seqs, dup = [], True
    for ev in events:
        published = await event_log.publish(
            ev, msg_id=decision_msg_id(ev, key), dedupe_after=0 if key else None
        )
        seqs.append(published.seq)
        dup = dup and published.duplicate
    return seqs, dup
