"""Benchmarks: each measures one of our figures and its limit in the same run.

Run ``python -m bench NAME [--options]``; the last line of output is one JSON object
``{"bench", "value", "limit", "unit", "ratio", "goal", ...}``.
"""

from __future__ import annotations

__all__ = ["BENCHMARKS"]

BENCHMARKS: dict[str, tuple[str, str]] = {
    "hash": ("bench.hashing", "hash_file throughput vs b3sum on the same files (MB/s)"),
    "rescan": ("bench.rescan", "unchanged full re-scan of 100k files vs a bare scandir+stat walk"),
    "publish": ("bench.publish", "EventLog.publish_many vs raw js.publish_async (events/s)"),
    "rebuild": ("bench.rebuild", "read-model rebuild vs raw ordered read / raw SQLite inserts"),
    "search": ("bench.search", "/photos/search ranking p50/p95 vs a bare numpy product (ms)"),
    "search1m": (
        "bench.search_scale",
        "vector index at 1M x 512: p50, recall@50, filters vs exact scan",
    ),
    "clip": ("bench.clip", "clip worker images/s vs bare onnxruntime, random ViT-B/32"),
    "ingest": ("bench.ingest", "first ingest of 12 MP JPEGs vs a bare multiprocess loop (files/s)"),
    "faces": ("bench.faces", "faces worker vs bare dlib calls on the same images (images/s)"),
    "people": ("bench.people", "face clustering vs the bare numpy searches it needs (faces/s)"),
    "playlist": ("bench.playlist", "HLS jobs (remux, transcode) vs bare ffmpeg, same args"),
    "rederive": ("bench.rederive", "rederive --stage media after a version bump vs first ingest"),
    "soak": ("bench.soak", "up under random faults while the library changes vs a clean run"),
    "smallfiles": (
        "bench.smallfiles",
        "scan+hash of 100k 15 KB files vs bare blake3+publish_async",
    ),
    "thumbdisk": (
        "bench.thumbdisk",
        "thumbnail store bytes per content vs a bare Pillow save; WebP",
    ),
    "scale": ("bench.scale", "RSS of every process of up and its start-up on 100k/1M files (MB)"),
    "web": ("bench.web", "timeline page (first screen, scroll) vs JSON /photos, same items (ms)"),
}
