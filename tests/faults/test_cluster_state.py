"""The quorum arithmetic of a stream's Raft group as a (stale) leader reports it, and the
status service's memory of when quorum was lost and came back (issue 17 item 4)."""

from __future__ import annotations

from types import SimpleNamespace

from nats.js.api import ClusterInfo, PeerInfo

from eventsvc.core.stream import ClusterState, StreamState, cluster_state_of
from projections.status import PipelineState, ProjectorPosition, QuorumWatch

NOW = 1_800_000_000.0


def _info(leader: str, *peers: tuple[str, bool, float]) -> SimpleNamespace:
    return SimpleNamespace(
        cluster=ClusterInfo(
            leader=leader,
            name="c",
            replicas=[
                PeerInfo(name=n, current=True, offline=off, active=int(ago * 1e9))
                for n, off, ago in peers
            ],
        )
    )


def test_one_of_three_online_has_no_quorum_since_the_last_peer_was_lost() -> None:
    c = cluster_state_of(_info("n1", ("n2", True, 30.0), ("n3", True, 12.0)), 3, NOW)
    assert c is not None and not c.quorum and c.online == 1 and c.offline == ("n2", "n3")
    assert c.lost_since == NOW - 12.0
    assert c.problem is not None and c.problem.startswith("no quorum: 1 of 3 replicas online")


def test_two_of_three_and_a_leader_is_a_quorum() -> None:
    c = cluster_state_of(_info("n1", ("n2", True, 5.0), ("n3", False, 0.1)), 3, NOW)
    assert c is not None and c.quorum and c.problem is None and c.lost_since is None


def test_no_leader_is_no_quorum() -> None:
    c = cluster_state_of(_info("", ("n2", False, 0.1), ("n3", False, 0.1)), 3, NOW)
    assert c is not None and not c.quorum and c.leader is None
    assert c.problem is not None and "no stream leader" in c.problem


def test_a_single_server_has_no_cluster_state() -> None:
    assert cluster_state_of(SimpleNamespace(cluster=None), 1, NOW) is None


def _stream(cluster: ClusterState | None) -> StreamState:
    return StreamState(name="PHOTOS", exists=True, replicas=3, cluster=cluster)


def test_the_watch_remembers_since_when_and_reports_recovery() -> None:
    w = QuorumWatch()
    ok = ClusterState(replicas=3, online=3, leader="n1")
    lost = ClusterState(replicas=3, online=1, leader="n1", quorum=False, lost_since=NOW - 5)
    w.saw(_stream(ok), None, NOW - 10)
    assert w.lost_since is None and w.recovered_at is None
    w.saw(_stream(lost), None, NOW)
    assert w.lost_since == NOW - 5
    w.saw(None, "cannot read stream PHOTOS: timed out", NOW + 5)  # unreadable: still lost
    assert w.lost_since == NOW - 5
    c = w.cluster(None)
    assert c is not None and not c.quorum and c.problem is not None
    w.saw(_stream(ok), None, NOW + 20)
    assert w.lost_since is None and w.recovered_at == NOW + 20


def test_problems_make_the_pipeline_degraded() -> None:
    lost = ClusterState(replicas=3, online=1, leader="n1", quorum=False, lost_since=NOW)
    state = PipelineState(
        connected=True, connected_since=NOW, nats_error=None, stream=_stream(lost),
        stream_error=None, consumers=(), consumers_error=None,
        projector=ProjectorPosition(None, 0), cluster=lost, quorum_lost_since=NOW,
    )  # fmt: skip
    assert state.health == "degraded"
    assert any("no quorum" in p and "since" in p for p in state.problems)
    fine = PipelineState(
        connected=True, connected_since=NOW, nats_error=None, stream=_stream(None),
        stream_error=None, consumers=(), consumers_error=None,
        projector=ProjectorPosition(None, 0),
    )  # fmt: skip
    assert fine.health == "ok" and fine.problems == []
