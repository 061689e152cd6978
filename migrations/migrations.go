// Package migrations embeds the SQL migrations that create sqlws's own objects
// (all named sqlws_*). They are applied with goose by package store.
package migrations

import "embed"

// FS holds the goose SQL migrations, applied in file-name order.
//
//go:embed *.sql
var FS embed.FS
