// Package capture puts every row change of the tracked tables into the changelog,
// inside the transaction that makes it. It reads the live schema (Schema),
// generates the AFTER INSERT/UPDATE/DELETE triggers that copy each change into
// sqlws_changes and keeps them matching the schema (Syncer), pauses capture around
// schema changes SQLite would refuse (Pause, Resume), records tables that stop
// existing, and owns the private value format the triggers write: the SQL that
// encodes each value inside SQLite (encode.go, also used by REST reads) and the Go
// that decodes it for clients (decode.go, key.go). The affinity rules of SQLite
// columns live here too, since the encoding depends on them.
package capture
