-- +goose Up
-- Scratch rows for capturing REPLACE conflict deletes, which fire no DELETE trigger:
-- a BEFORE trigger notes the rows a new row conflicts with on a UNIQUE index, and the
-- AFTER trigger reports those that the statement removed. Rows here live only between
-- the two triggers of one row change.
CREATE TABLE IF NOT EXISTS sqlws_pending (
    tbl TEXT NOT NULL,
    rid INTEGER NOT NULL,
    pk  TEXT NOT NULL,
    old TEXT NOT NULL
);

-- +goose Down
DROP TABLE IF EXISTS sqlws_pending;
