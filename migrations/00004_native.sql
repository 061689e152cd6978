-- +goose Up
-- The changelog laid out for capture that copies values as they are (capture/native.go):
-- seq without AUTOINCREMENT (a write to sqlite_sequence per change, the largest single
-- cost of capture to the writer); a shape id (sid) for rows whose images are in value
-- columns v0, v1, … that sqlws adds as wider tables are captured; pk nullable, since
-- native rows rebuild the key from the shape; and 'mark' rows, never delivered, which
-- hold a seq. seq is still never reused: retention never deletes the newest row, and if
-- there is none when this runs, a mark takes the last seq AUTOINCREMENT handed out.
--
-- Rows written before keep their JSON images and are read as they are. The rebuild
-- drops the old table and renames the new one in legacy mode, which leaves the capture
-- triggers' references to sqlws_changes alone: they write into the new table (in the
-- JSON layout) until sqlws syncs them.
PRAGMA legacy_alter_table = ON;
CREATE TABLE sqlws_changes_v4 (
    seq INTEGER PRIMARY KEY,
    tbl TEXT NOT NULL,
    op  TEXT NOT NULL CHECK (op = 'insert' OR op = 'update' OR op = 'delete' OR op = 'mark'),
    pk  TEXT,
    old TEXT,
    new TEXT,
    ts  INTEGER NOT NULL,
    sid INTEGER
);
INSERT INTO sqlws_changes_v4 (seq, tbl, op, pk, old, new, ts)
    SELECT seq, tbl, op, pk, old, new, ts FROM sqlws_changes;
INSERT INTO sqlws_changes_v4 (seq, tbl, op, ts)
    SELECT s.seq, '', 'mark', 0 FROM sqlite_sequence AS s
    WHERE s.name = 'sqlws_changes' AND s.seq > coalesce((SELECT max(seq) FROM sqlws_changes), 0);
DROP TABLE sqlws_changes;
ALTER TABLE sqlws_changes_v4 RENAME TO sqlws_changes;
PRAGMA legacy_alter_table = OFF;

-- Whoever deletes from the changelog (sqlws's retention, or an operator's DELETE in the
-- sqlite3 shell), the newest row stays: it is what the next seq follows. A delete of
-- it is skipped, not refused, so a "DELETE FROM sqlws_changes" empties all the rest.
-- Capture's trigger sync leaves triggers on sqlws's own tables alone.
-- +goose StatementBegin
CREATE TRIGGER sqlws_changes_keep_head BEFORE DELETE ON sqlws_changes
WHEN OLD.seq >= (SELECT max(seq) FROM sqlws_changes)
BEGIN
    SELECT RAISE(IGNORE);
END;
-- +goose StatementEnd

-- The shapes of native rows' images: table, members' names and declared types (JSON
-- arrays, in image order) and key positions. Written once per shape by the trigger
-- sync; read by every changelog reader.
CREATE TABLE IF NOT EXISTS sqlws_shapes (
    sid   INTEGER PRIMARY KEY,
    tbl   TEXT NOT NULL,
    cols  TEXT NOT NULL,
    key   TEXT NOT NULL,
    types TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS sqlws_shapes_by_def ON sqlws_shapes (tbl, cols, key, types);

-- +goose Down
-- Back to the AUTOINCREMENT layout. Native rows have no JSON images to take back, so
-- they go: a client resuming from before them is reset (pruned), never served a gap.
-- The counter is set to the head, so no seq is reused.
PRAGMA legacy_alter_table = ON;
CREATE TABLE sqlws_changes_v3 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    op  TEXT NOT NULL CHECK (op = 'insert' OR op = 'update' OR op = 'delete'),
    pk  TEXT NOT NULL,
    old TEXT,
    new TEXT,
    ts  INTEGER NOT NULL
);
INSERT INTO sqlws_changes_v3 (seq, tbl, op, pk, old, new, ts)
    SELECT seq, tbl, op, pk, old, new, ts FROM sqlws_changes
    WHERE sid IS NULL AND op != 'mark' AND pk IS NOT NULL;
DELETE FROM sqlite_sequence WHERE name = 'sqlws_changes_v3';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'sqlws_changes_v3', max(seq) FROM sqlws_changes HAVING max(seq) IS NOT NULL;
DROP TABLE sqlws_changes;
ALTER TABLE sqlws_changes_v3 RENAME TO sqlws_changes;
PRAGMA legacy_alter_table = OFF;
DROP TABLE IF EXISTS sqlws_shapes;
