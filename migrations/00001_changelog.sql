-- +goose Up
-- The changelog: one row per captured row change, written by the capture triggers
-- inside the writer's transaction. AUTOINCREMENT keeps seq gapless in commit order
-- and never reuses a number after retention deletes old rows.
CREATE TABLE IF NOT EXISTS sqlws_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    -- OR, not IN: IN compiles to an ephemeral table built for every row written.
    op  TEXT NOT NULL CHECK (op = 'insert' OR op = 'update' OR op = 'delete'),
    pk  TEXT NOT NULL,
    old TEXT,
    new TEXT,
    ts  INTEGER NOT NULL
);

-- Stream metadata; stream_id identifies this database's change stream for resuming
-- clients, created once and never changed.
CREATE TABLE IF NOT EXISTS sqlws_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

INSERT OR IGNORE INTO sqlws_meta (key, value) VALUES ('stream_id', lower(hex(randomblob(16))));

-- +goose Down
DROP TABLE IF EXISTS sqlws_meta;
DROP TABLE IF EXISTS sqlws_changes;
