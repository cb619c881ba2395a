"""Settings: flags first, then ``EVENTSVC_*`` environment variables, then defaults.

Nothing is built at import time: call ``Settings()`` (or ``Settings(**overrides)``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventsvc.core.errors import ConfigError
from eventsvc.core.ids import LIBRARY_ID_RE, derive_library_id, library_id_for_root

__all__ = [
    "DEFAULT_EXCLUDES",
    "Library",
    "Settings",
    "load_libraries",
    "merge_excludes",
]

DEFAULT_EXCLUDES: tuple[str, ...] = (
    "@eaDir",
    "#recycle",
    "#snapshot",
    ".Trash-*",
    ".Trashes",
    ".Spotlight-V100",
    ".fseventsd",
    ".thumbnails",
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "*.partial",
    "*.tmp",
    "*.crdownload",
)


def merge_excludes(given: list[str] | tuple[str, ...]) -> list[str]:
    """``DEFAULT_EXCLUDES`` plus ``given``; ``!PATTERN`` in ``given`` drops that default."""
    drop = {p[1:] for p in given if p.startswith("!")}
    unknown = sorted(drop - set(DEFAULT_EXCLUDES))
    if unknown:
        raise ValueError(
            f"{', '.join('!' + u for u in unknown)}: '!' drops a default exclude, and "
            f"{'these are' if len(unknown) > 1 else 'this is'} none "
            f"(defaults: {', '.join(DEFAULT_EXCLUDES)})"
        )
    out = [p for p in DEFAULT_EXCLUDES if p not in drop]
    for p in given:
        if not p.startswith("!") and p not in out:
            out.append(p)
    return out


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "eventsvc"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTSVC_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default_factory=_default_data_dir)
    api_host: str = "127.0.0.1"
    api_port: int = 8470
    # ---- API access (issue 11: scopes, browser sessions, cross-site writes, bind rule)
    api_token: str | None = None
    """A token with the ``write`` scope (reads and changes): ``Authorization: Bearer``."""
    api_read_token: str | None = None
    """A token with the ``read`` scope only."""
    api_tokens_file: Path | None = None
    """More tokens, one a line: ``SCOPE TOKEN [NAME]`` (mode 600; see projections/api/tokens)."""
    api_allow_unauthenticated: bool = False
    """Serve an API without any token on a non-loopback address (``--insecure-no-auth``)."""
    api_allowed_origins: list[str] = Field(default_factory=list)
    """Origins (``https://photos.example``) besides the API's own whose pages may write."""
    api_session_ttl: float = 7 * 86400.0
    """Seconds a browser session (``POST /auth/login``) lasts."""
    api_cookie_secure: bool | None = None
    """Session cookies with ``Secure``: None: when the request came over https."""
    # ---- end API access
    # ---- Prometheus metrics (issue 14: GET /metrics, a port per process without an API)
    metrics_port: int | None = None
    """``eventsvc worker``/``scan --loop``/``project``: serve ``/metrics`` on this port
    (0: any free one); None: none. ``up`` and ``api`` serve it on the API."""
    metrics_host: str = "127.0.0.1"
    """Where ``metrics_port`` listens (loopback: set e.g. 0.0.0.0 for a remote scraper;
    that server has no authentication)."""
    metrics_open_on_loopback: bool | None = None
    """The API's ``GET /metrics`` without a token for a client on loopback. None: only
    when the API itself binds loopback; False: a ``read`` token always (e.g. behind a
    reverse proxy on the same host, whose requests all come from loopback)."""
    # ---- end Prometheus metrics
    nats_url: str | None = None
    """An existing NATS server; None starts the embedded one in the data dir."""
    # ---- embedded NATS ports (issue 14: NATS for people)
    nats_port: int = 4222
    """Client port of the embedded nats-server (loopback): stable, so that the ``nats`` CLI
    context of `eventsvc nats-context` keeps working; a free port instead (with a warning)
    when it is in use. 0: any free port at each start."""
    nats_monitor_port: int = 8222
    """HTTP monitoring port (``/varz``, ``/jsz``, ``/connz``) of the embedded server, on
    ``nats_monitor_host``; a free port instead when in use. 0: no monitoring endpoint."""
    nats_monitor_host: str = "127.0.0.1"
    """Where the monitoring endpoint listens (unauthenticated: keep it on loopback)."""
    # ---- end embedded NATS ports
    # ---- nats memory (issue 18: the embedded nats-server's memory)
    nats_memory_limit: str | None = Field(
        default="256MiB", pattern=r"^([0-9]+(B|KiB|MiB|GiB|TiB)?|off)?$"
    )
    """Soft memory limit of the embedded nats-server's Go runtime (``GOMEMLIMIT``): the
    collector runs harder near it instead of letting the heap double (GOGC), so idle
    memory stays near what the stream's index needs. Never a hard cap: a larger log
    still gets what it needs. ``off`` (or empty): no limit, Go's default."""
    nats_gogc: int | None = None
    """The embedded nats-server's ``GOGC`` (percent of live heap the heap may grow by
    before a collection; 0: off, with ``nats_memory_limit`` as the only trigger). None:
    Go's 100."""
    # ---- end nats memory
    # ---- NATS credentials (issue 11: authenticated NATS, least privilege)
    nats_user: str | None = None
    """User on an external NATS (``nats_url``) for every connection of this process."""
    nats_password: SecretStr | None = None
    nats_password_file: Path | None = None
    """A file holding ``nats_password`` (e.g. a Docker secret); wins over nats_password."""
    nats_creds_dir: Path | None = None
    """A directory of ``<role>.json`` files (``{"user", "password"}``), one per component
    (scanner, hasher, …, api, admin, inspect): ``eventsvc up`` against an external NATS
    then connects each component as its own user. The embedded server needs none of
    these: its generated credentials are read from ``<data_dir>/nats/auth/``."""
    # ---- faults (issue 17 items 1, 2)
    nats_reconnect_wait: float = 0.5
    """Seconds between reconnect attempts after the NATS connection is lost (attempts
    never end: a component waits out an outage of any length)."""
    # ---- end faults
    stream: str = "PHOTOS"
    stream_replicas: int = 1
    """JetStream replicas of the stream (3 on the compose cluster)."""
    subject_prefix: str = "photos"
    libraries_file: Path | None = None
    # ---- excludes (issue 13: added to the defaults)
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDES))
    """Global glob excludes. A value given (``EVENTSVC_EXCLUDE='["*.xmp"]'``) is *added
    to* ``DEFAULT_EXCLUDES``; ``"!@eaDir"`` drops that default. After validation the
    list is the whole global set (defaults first)."""
    # ---- end excludes
    quick_interval: float = 60.0
    """Quick scans (no deletions) between full ones; inotify covers the gaps."""
    full_interval: float = 3600.0
    missing_share: float = 0.5
    """A full scan that would mark more than this share of a library missing: stale."""
    missing_min_files: int = 10
    """The share rule applies only to libraries with at least this many known files."""
    missing_cap: int = 5000
    """At most this many FileMissing per library per tick; the rest next tick."""
    watch: bool = True
    # ---- file watching (issue 11: inotify per library, bytes paths)
    watch_debounce: float = 0.2
    """Notifications are grouped for at most this many seconds before they are handled."""
    watch_retry: float = 1.0
    """First wait before a library whose watch failed is watched again (then doubling)."""
    watch_retry_max: float = 60.0
    """Longest wait between attempts to watch a failed library again."""
    # ---- end of file watching
    # ---- settled files and watched deletions (issue 13)
    settle_seconds: float = 2.0
    """A new or changed file is published once its size and mtime have not changed for this
    long (its mtime is at least this old, or it was seen unchanged for this long)."""
    watch_delete_window: float = 2.0
    """Deletions and moves-out seen by the watcher are gathered until none came for this
    long, then judged together like a full scan's (missing_share of the library as of the
    first one, missing_cap per tick)."""
    # ---- end of settled files and watched deletions
    hash_concurrency: int = 2
    # ---- small files end to end (issue 18 goal 3)
    hash_batch: int = Field(default=128, ge=1)
    """FileSeen messages the hasher takes per batch (``hash_concurrency`` batches in hand):
    read and hashed in few thread hops, their HashComputed published together and the
    inputs acked after them. 1: one message at a time, as before."""
    # ---- end of small files end to end
    media_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 2)
    """Parallel EXIF + thumbnail + perceptual-hash jobs (decoding is the cost)."""
    # ---- re-derivation after a deriver version change (issue 13, item 9)
    rederive_background: bool = True
    """``up``'s media, faces and playlist workers re-derive, in the background, contents
    whose facts an older version of their deriver made (consumers ``media-rederive``,
    ``faces-rederive``, ``playlist-rederive``; progress in /pipeline)."""
    rederive_concurrency: int = 1
    """Handlers of a re-derivation (low priority beside the main worker)."""
    # ---- end of re-derivation
    # ---- memories ("on this day", issue 16)
    memories_burst_seconds: float = Field(default=10.0, ge=0)
    """GET /memories shows one photo per burst: photos of one day taken within this many
    seconds of the previous one belong to one burst."""
    memories_near_distance: int = Field(default=6, ge=0, le=64)
    """... as do photos of one day whose pHashes are within this Hamming distance
    (near-duplicates, as GET /duplicates?kind=near's default)."""
    # ---- end of memories
    max_in_flight: int = 64
    max_deliver: int = 5
    ack_wait: float = 30.0
    backoff: list[float] = Field(default_factory=lambda: [1.0, 5.0, 30.0, 120.0])
    projector_batch: int = 2000
    workers: list[str] = Field(
        default_factory=lambda: ["hasher", "media", "clip", "faces", "people", "playlist"]
    )
    """The workers ``eventsvc up`` runs (EVENTSVC_WORKERS='["hasher","media"]')."""
    # ---- faces and people
    faces_detector: str = "hog"
    """'hog' (fast, CPU) or 'cnn' (dlib's MMOD detector: better on small/turned faces, slow
    without a GPU)."""
    faces_upsample: int = 1
    """Times the image is upsampled before detection (each doubles the size: finds faces
    half as big, costs about 4x)."""
    faces_min_size: int = 40
    """Faces narrower than this many pixels of the analysed image are dropped."""
    faces_min_score: float = 0.3
    """Detector score below which a detection is dropped (HOG: SVM margin; CNN: confidence)."""
    faces_max_edge: int = 1024
    """Images are analysed at most this many pixels on the long edge."""
    faces_num_jitters: int = 0
    """Descriptor re-sampling (0: one pass; 10: ~10x slower, slightly more stable)."""
    faces_concurrency: int = 1
    """Parallel face jobs (dlib keeps the GIL in places; one per core at most)."""
    faces_inference_url: str | None = None
    """An `eventsvc inference` service doing the detection (None: in-process dlib)."""
    faces_recheck_interval: float = 60.0
    """Longest wait between checks of a paused worker's model or inference host (the
    first comes after 1 s, then twice as long each time, up to this)."""
    people_threshold: float = 0.5
    """Largest face-descriptor distance (Euclidean) between a face and a person's centroid
    for the face to join that person; also the neighbourhood radius for new people."""
    people_min_samples: int = 3
    """Unassigned faces (of distinct photos, the face itself included) within the
    threshold of one another that found a new person."""
    video_root: Path | None = None
    """HLS playlists, posters and previews (default ``<data_dir>/videos``)."""
    video_max_height: int = 720
    """Transcodes are scaled down to at most this height (remuxes keep their size)."""
    video_segment_seconds: float = 2.0
    video_preset: str = "veryfast"
    """x264 preset of transcodes (tests use ultrafast)."""
    video_crf: int = 23
    playlist_concurrency: int = 1
    playlist_timeout: float = 1800.0
    """Seconds one playlist job may take; ffmpeg is killed after that."""
    preview_seconds: float = 3.0
    preview_height: int = 240
    playlist_cleanup_interval: float = 3600.0
    """Seconds between orphan clean-up ticks (it acts only on the second healthy one)."""
    playlist_cleanup_max: int = 500
    """At most this many directories removed per clean-up tick."""
    # ---- logs, progress, tracing (issue 14: one log format)
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING, ERROR: every component and library (``--log-level``)."""
    log_format: str = "text"
    """``text`` (one line per record) or ``json`` (one JSON object per line, for log
    shippers: ts, level, logger, msg and extra fields) (``--log-format``)."""
    log_levels: str = ""
    """Per-logger overrides ``NAME=LEVEL,…`` (e.g. ``watchfiles=INFO``); third-party
    loggers are otherwise kept at WARNING."""
    otlp_endpoint: str | None = None
    """OpenTelemetry: export derivation spans over OTLP/HTTP to this URL (e.g.
    ``http://127.0.0.1:4318``); needs the ``tracing`` extra. Unset: no tracing."""
    # ---- file access (trust boundary): only configured library roots are ever read
    follow_symlinks: bool = True
    """Follow symlinks inside a library while they stay inside its root (scanner, workers,
    API). False: no symlink is followed at all (a path through one is refused)."""
    # ---- CLIP semantic search
    clip_model: str = "immich-app/ViT-B-32__openai"
    """A hub id fetched into <data_dir>/models on first use, or a local directory."""
    clip_model_dir: Path | None = None
    """A local model directory in the Immich layout; overrides clip_model (offline use)."""
    clip_extra_models: list[str] = Field(default_factory=list)
    """More models (ids or directories) the API may encode queries with (see reencode)."""
    # (renamed, issue 15: clip_inference_url was inference_url, clip_recheck_interval was
    # clip_recheck, as the faces_ settings are named; the old env names still work)
    clip_inference_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("EVENTSVC_CLIP_INFERENCE_URL", "EVENTSVC_INFERENCE_URL"),
    )
    """Use `eventsvc inference` at this URL instead of in-process ONNX Runtime
    (``EVENTSVC_CLIP_INFERENCE_URL``; the old ``EVENTSVC_INFERENCE_URL`` still works)."""
    inference_timeout: float = 30.0
    inference_retries: int = 3
    clip_batch: int = 16
    """Images per CLIP batch."""
    clip_batch_window: float = 0.05
    """Seconds a partial batch waits for more images."""
    clip_concurrency: int = 1
    """CLIP batches in flight at once."""
    clip_recheck_interval: float = Field(
        default=60.0,
        validation_alias=AliasChoices("EVENTSVC_CLIP_RECHECK_INTERVAL", "EVENTSVC_CLIP_RECHECK"),
    )
    """Longest wait between checks of a paused worker's model or inference host (the
    first comes after 1 s, then twice as long each time, up to this;
    ``EVENTSVC_CLIP_RECHECK_INTERVAL``, the old ``EVENTSVC_CLIP_RECHECK`` still works)."""
    clip_threads: int = 0
    """ONNX Runtime intra-op threads (0: its default)."""
    clip_text_cache: int = 1024
    """Query embeddings kept per API process."""
    # ---- vector index of CLIP search (issue 18, "vindex")
    vector_ann_min: int = Field(default=50_000, ge=1)
    """Vectors of one model from which search is approximate (faiss IVF with 8-bit codes,
    exact re-rank of the best candidates; ~0.52 KB a 512-d vector instead of 2 KB). Below:
    exact float32 ranking. Without faiss-cpu installed search stays exact."""
    vector_nprobe: int = Field(default=32, ge=1)
    """Inverted lists probed per approximate query (of up to 1024); more: higher recall,
    slower. Filtered queries probe more lists the smaller the filtered share."""
    vector_rerank: float = Field(default=1.5, ge=1.0)
    """Approximate candidates re-ranked exactly (float32 from the read model) per result
    wanted (at least 16 more): scores returned are exact cosines; more: higher recall."""
    vector_persist: bool = True
    """Save the vector index next to the read model (<readmodel_dir>/vectors/) so a
    restarted API does not re-index."""
    vector_persist_rows: int = Field(default=10_000, ge=1)
    """New vectors folded in before the saved index is rewritten."""
    # ---- bounded decoding (issue 11: decodes of untrusted images run in child processes)
    decode_max_pixels: int = Field(default=64_000_000, ge=1)
    """Largest image decoded, in pixels held by the decoder, judged from the header before
    any decode: width x height, or for a baseline JPEG the size at the DCT scale it is
    decoded at (1/2..1/8), so 100+ MP camera JPEGs still pass. Above it: a permanent
    failure naming the size."""
    decode_max_memory_mb: int = Field(default=1024, ge=0)
    """Address space (RLIMIT_AS) of each decoder process; a decode over it fails
    permanently ('memory'). At least 256; 0: no limit."""
    decode_timeout: float = Field(default=60.0, gt=0)
    """Seconds one decode may take; then its process is killed (SIGKILL) and replaced and
    the file fails permanently ('timeout')."""
    decode_processes: int = Field(default=0, ge=0)
    """Decoder processes shared by the media, faces and clip workers of one process
    (0: one per CPU). They start on first use."""
    decode_idle_seconds: float = Field(default=30.0, ge=0)
    """A decoder process idle this long exits (issue 18: ~60 MB each while nothing
    changes); the next decode starts one again (~0.3 s). 0: they stay."""

    @field_validator("exclude", mode="after")
    @classmethod
    def _add_to_default_excludes(cls, value: list[str]) -> list[str]:
        return merge_excludes(value)

    @property
    def api_has_tokens(self) -> bool:
        """Any API token configured (responses are then private to their caller)."""
        return bool(self.api_token or self.api_read_token or self.api_tokens_file)

    @property
    def readmodel_dir(self) -> Path:
        return self.data_dir / "readmodel"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def videos_dir(self) -> Path:
        return self.video_root if self.video_root is not None else self.data_dir / "videos"

    @property
    def nats_store_dir(self) -> Path:
        return self.data_dir / "nats"


@dataclass(frozen=True, slots=True)
class Library:
    id: str
    name: str
    root: Path
    enabled: bool = True
    exclude: tuple[str, ...] = ()


def _check_id(lib_id: str) -> str:
    if not LIBRARY_ID_RE.fullmatch(lib_id):
        raise ConfigError(
            f"library id {lib_id!r} must match {LIBRARY_ID_RE.pattern} (it goes into subjects)"
        )
    return lib_id


def _excludes(values: object, where: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
        raise ConfigError(f"{where}: exclude must be a list of strings")
    dropped = [x for x in values if x.startswith("!")]
    if dropped:
        raise ConfigError(
            f"{where}: {dropped[0]!r}: a default exclude is dropped with EVENTSVC_EXCLUDE "
            f"(e.g. EVENTSVC_EXCLUDE='[\"{dropped[0]}\"]'), not in a libraries file"
        )
    return list(values)


def load_libraries(
    paths: list[str] | None = None,
    libraries_file: Path | None = None,
    *,
    known: Mapping[str, str] | None = None,
    legacy_ids: bool = False,
) -> tuple[list[Library], list[str]]:
    """Libraries from command-line roots and/or a TOML file; returns (libraries, excludes).

    TOML layout::

        exclude = ["*.xmp"]            # global, added to the defaults
        [[library]]
        id = "family"                  # [a-z0-9_-], stable: it is in every subject
        name = "Family photos"
        root = "/mnt/nas/photos"
        enabled = true
        exclude = ["Private", "**/cache/*"]

    A library without ``id`` (every PATH argument) gets, in this order: the id ``known``
    (root -> id: what this data dir recorded before) has for its root; with
    ``legacy_ids``, the old opaque ``lib-<hash of root>``; else one derived from its name
    (``derive_library_id``), unique among the libraries given, in their order.
    """
    entries: list[tuple[str | None, str, Path, bool, tuple[str, ...]]] = []
    extra_excludes: list[str] = []
    if libraries_file is not None:
        try:
            data = tomllib.loads(Path(libraries_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read libraries file {libraries_file}: {exc}") from exc
        extra_excludes = _excludes(data.get("exclude", []), str(libraries_file))
        for entry in data.get("library", []):
            if "root" not in entry:
                raise ConfigError(f"library entry without root in {libraries_file}: {entry}")
            root = Path(os.path.expanduser(entry["root"])).absolute()
            lib_id = str(entry["id"]) if entry.get("id") else None
            entries.append(
                (
                    _check_id(lib_id) if lib_id is not None else None,
                    str(entry.get("name") or root.name or str(root)),
                    root,
                    bool(entry.get("enabled", True)),
                    tuple(_excludes(entry.get("exclude", []), f"{libraries_file}: {root}")),
                )
            )
    for p in paths or []:
        root = Path(os.path.expanduser(p)).absolute()
        entries.append((None, root.name or str(root), root, True, ()))
    seen: set[str] = set()
    for lib_id, *_ in entries:
        if lib_id is not None:
            if lib_id in seen:
                raise ConfigError(f"library id {lib_id!r} given twice")
            seen.add(lib_id)
    derived_roots: set[str] = set()
    for lib_id, _, root, *_ in entries:
        if lib_id is None:
            if str(root) in derived_roots:
                raise ConfigError(f"library root {root} given twice")
            derived_roots.add(str(root))
    ids: list[str | None] = [e[0] for e in entries]
    for k, (lib_id, _, root, *_) in enumerate(entries):  # what this data dir knows first
        if lib_id is None:
            old = (known or {}).get(str(root))
            if old is None and legacy_ids:
                old = library_id_for_root(str(root))
            if old is not None and LIBRARY_ID_RE.fullmatch(old) and old not in seen:
                ids[k] = old
                seen.add(old)
    for k, (_, name, root, *_) in enumerate(entries):  # then new ones, in order
        if ids[k] is None:
            new_id = derive_library_id(name, root, seen)
            if new_id in seen:
                raise ConfigError(f"cannot make a unique id for library {root}: give it one")
            ids[k] = new_id
            seen.add(new_id)
    libs = [
        Library(id=str(ids[k]), name=name, root=root, enabled=enabled, exclude=exclude)
        for k, (_, name, root, enabled, exclude) in enumerate(entries)
    ]
    return libs, extra_excludes


# ---- end library ids
