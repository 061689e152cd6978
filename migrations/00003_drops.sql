-- +goose Up
-- Tables that stopped existing while captured: dropped, renamed away, or dropped and
-- created again (which makes a different table of the same name). seq is the
-- changelog head when sqlws noticed, so every change of the old table has seq <= it.
-- A subscription that names the table receives the old table's changes up to seq and
-- then ends with error table_dropped, instead of running on into the new table.
CREATE TABLE IF NOT EXISTS sqlws_drops (
    seq INTEGER NOT NULL,
    tbl TEXT NOT NULL
);

-- +goose Down
DROP TABLE IF EXISTS sqlws_drops;
