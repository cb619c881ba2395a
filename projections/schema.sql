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
    hash_seq     INTEGER
) WITHOUT ROWID;
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

-- Recorded failures (DerivationFailed), newest wins per (stage, subject key).
CREATE TABLE IF NOT EXISTS failures (
    seq           INTEGER PRIMARY KEY,
    stage         TEXT NOT NULL,
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
