-- The SQLite read model. Only the projector writes it; every row is a function of the log.
CREATE TABLE IF NOT EXISTS checkpoint (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  INTEGER NOT NULL
);
INSERT OR IGNORE INTO checkpoint (id, last_seq) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS libraries (
    library_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    root        TEXT NOT NULL,
    state       TEXT NOT NULL,          -- 'online' | 'stale'
    reason      TEXT,
    state_since TEXT NOT NULL,          -- occurred_at of the transition
    state_seq   INTEGER NOT NULL
);

-- One row per live file location (library, path). FileMissing deletes the row.
CREATE TABLE IF NOT EXISTS files (
    file_id      TEXT PRIMARY KEY,
    library_id   TEXT NOT NULL,
    path         TEXT NOT NULL,
    raw_path     TEXT,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    media_kind   TEXT NOT NULL,
    seen_seq     INTEGER NOT NULL,
    seen_at      TEXT NOT NULL,
    content_hash TEXT,
    hash_seq     INTEGER,
    name_date    TEXT,                  -- a date in the file name (IMG_20230102_…), local
    date_taken   TEXT,                  -- the date-taken waterfall's answer …
    date_source  TEXT                   -- … and where it came from
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_taken ON files (date_taken, file_id);
CREATE INDEX IF NOT EXISTS files_by_library_path ON files (library_id, path, file_id);
CREATE INDEX IF NOT EXISTS files_by_path ON files (path, file_id);
CREATE INDEX IF NOT EXISTS files_by_mtime ON files (mtime_ns, file_id);
CREATE INDEX IF NOT EXISTS files_by_library_mtime ON files (library_id, mtime_ns, file_id);
CREATE INDEX IF NOT EXISTS files_by_hash ON files (content_hash) WHERE content_hash IS NOT NULL;

-- One row per distinct content (blake3), whatever the number of locations.
CREATE TABLE IF NOT EXISTS content (
    content_hash TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    media_kind   TEXT NOT NULL,
    phash        TEXT,
    dhash        TEXT,
    width        INTEGER,
    height       INTEGER,
    decode_error TEXT,
    first_seq    INTEGER NOT NULL
) WITHOUT ROWID;

-- Recorded failures (DerivationFailed): the stage (worker) that failed and what it was doing.
CREATE TABLE IF NOT EXISTS failures (
    seq           INTEGER PRIMARY KEY,
    stage         TEXT NOT NULL,
    operation     TEXT NOT NULL,
    reason        TEXT NOT NULL,
    permanent     INTEGER NOT NULL,
    input_subject TEXT NOT NULL,
    deliveries    INTEGER NOT NULL,
    file_id       TEXT,
    content_hash  TEXT,
    library_id    TEXT,
    occurred_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_stage ON failures (stage, seq);

-- What the media deriver read from a content's bytes (ExifExtracted), one row per content.
CREATE TABLE IF NOT EXISTS media (
    content_hash  TEXT PRIMARY KEY,
    media_kind    TEXT NOT NULL,
    make          TEXT,
    model         TEXT,
    lens          TEXT,
    width         INTEGER,
    height        INTEGER,
    orientation   INTEGER,
    gps_lat       REAL,
    gps_lon       REAL,
    gps_alt       REAL,
    focal_length  REAL,
    f_number      REAL,
    exposure_time REAL,
    iso           INTEGER,
    date_original TEXT,
    date_digitized TEXT,
    utc_offset    TEXT,
    duration      REAL,
    video_codec   TEXT,
    audio_codec   TEXT,
    rotation      INTEGER,
    creation_time TEXT,
    date_taken    TEXT,
    date_source   TEXT,
    warnings      TEXT,
    exif_seq      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS media_by_camera ON media (make, model);
CREATE INDEX IF NOT EXISTS media_by_gps ON media (gps_lat, gps_lon) WHERE gps_lat IS NOT NULL;

CREATE TABLE IF NOT EXISTS thumbnails (
    content_hash TEXT PRIMARY KEY,
    sizes        TEXT NOT NULL,         -- JSON: size name -> path under the thumbnail root
    width        INTEGER,
    height       INTEGER,
    seq          INTEGER NOT NULL
) WITHOUT ROWID;

-- "Not a duplicate" decisions (a < b), from NotDuplicate events.
CREATE TABLE IF NOT EXISTS not_duplicates (
    a   TEXT NOT NULL,
    b   TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (a, b)
) WITHOUT ROWID;

-- ---------------------------------------------------------------- CLIP semantic search
-- One image embedding per (model, content), from ClipEncoded: float32 little-endian bytes.
CREATE TABLE IF NOT EXISTS clip_vectors (
    model_version TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    dim           INTEGER NOT NULL,
    vector        BLOB NOT NULL,
    seq           INTEGER NOT NULL,
    PRIMARY KEY (model_version, content_hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS clip_vectors_by_seq ON clip_vectors (seq);

-- ---------------------------------------------------------------- faces and people
-- Contents analysed for faces, per model (faces = 0 is the fact "no faces").
CREATE TABLE IF NOT EXISTS face_scans (
    content_hash TEXT NOT NULL,
    model        TEXT NOT NULL,
    faces        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (content_hash, model)
) WITHOUT ROWID;

-- One row per detected face (FacesDetected); person_id from FaceAssigned or decisions.
CREATE TABLE IF NOT EXISTS faces (
    face_id      TEXT PRIMARY KEY,      -- <content_hash>-<model token>-<index>
    content_hash TEXT NOT NULL,
    model        TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    box          TEXT NOT NULL,         -- JSON [left, top, right, bottom], relative
    area         REAL NOT NULL,         -- relative box area (cover choice)
    score        REAL NOT NULL,
    landmarks    TEXT NOT NULL,         -- JSON [[x, y] * 5], relative
    person_id    TEXT,                  -- the person now (merges resolved)
    assigned_by  TEXT,                  -- 'auto' | 'user' (a user's decision wins)
    distance     REAL,
    rejected     INTEGER NOT NULL DEFAULT 0,
    seq          INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS faces_by_person ON faces (person_id, content_hash)
    WHERE person_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS faces_by_content ON faces (content_hash);

-- People: created by the clusterer or a split; merged ones point at their target.
CREATE TABLE IF NOT EXISTS people (
    person_id    TEXT PRIMARY KEY,
    name         TEXT,
    hidden       INTEGER NOT NULL DEFAULT 0,
    merged_into  TEXT,
    founder      TEXT,
    created_seq  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS people_by_name ON people (name) WHERE name IS NOT NULL;

-- Every human decision on people and faces, in order (an audit trail).
CREATE TABLE IF NOT EXISTS people_decisions (
    seq          INTEGER PRIMARY KEY,
    type         TEXT NOT NULL,
    subject      TEXT NOT NULL,         -- the person or face decided on
    detail       TEXT NOT NULL,         -- JSON of the event's fields
    occurred_at  TEXT NOT NULL
);

-- ---------------------------------------------------------------- video playlists
-- HLS playlists (PlaylistReady), one row per content; paths relative to the video root.
CREATE TABLE IF NOT EXISTS playlists (
    content_hash  TEXT PRIMARY KEY,
    playlist_path TEXT NOT NULL,
    duration      REAL NOT NULL,
    segments      INTEGER NOT NULL,
    codecs        TEXT NOT NULL,
    mode          TEXT NOT NULL,        -- 'remux' | 'transcode'
    reason        TEXT,
    width         INTEGER,
    height        INTEGER,
    poster        TEXT,
    preview       TEXT,
    seq           INTEGER NOT NULL
) WITHOUT ROWID;

-- ---------------------------------------------------------------- deriver versions
-- The deriver version of a once-only fact now in the read model, when above 1 (no row:
-- version 1). A fact of an older version arriving later never replaces a newer one.
CREATE TABLE IF NOT EXISTS fact_versions (
    fact    TEXT NOT NULL,                  -- the event type (ExifExtracted, ...)
    key     TEXT NOT NULL,                  -- content hash, or content:model
    version INTEGER NOT NULL,
    PRIMARY KEY (fact, key)
) WITHOUT ROWID;

-- ---------------------------------------------------------------- tags and favourites
-- A user's tags on a content (TagAdded / TagRemoved; issue 16): one row per content and
-- case-folded name, holding the latest spelling. Person names are tags too, derived
-- from faces and people at read time (never stored here).
CREATE TABLE IF NOT EXISTS user_tags (
    content_hash TEXT NOT NULL,
    tag_key      TEXT NOT NULL,             -- eventsvc.core.events.tag_key(name)
    name         TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (content_hash, tag_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS user_tags_by_key ON user_tags (tag_key, content_hash);

-- Favourite contents (Favorited / Unfavorited).
CREATE TABLE IF NOT EXISTS favorites (
    content_hash TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL
) WITHOUT ROWID;

-- Library configuration (issue 16): LibraryAdded / LibraryUpdated / LibraryRemoved.
-- A removed library keeps its row (removed = 1) and its locations are deleted from files.
CREATE TABLE IF NOT EXISTS library_config (
    library_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    root        TEXT NOT NULL,
    excludes    TEXT NOT NULL DEFAULT '[]',   -- JSON list of the library's own excludes
    enabled     INTEGER NOT NULL DEFAULT 1,
    removed     INTEGER NOT NULL DEFAULT 0,
    config_seq  INTEGER NOT NULL,
    config_since TEXT NOT NULL
);
