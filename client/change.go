package client

import (
	"encoding/json"
	"fmt"

	"github.com/sqlws/sqlws/models"
)

// Change is one change record as the server sent it. Seq, Table and Op are read when
// the frame arrives, because they are what a consumer dispatches on; the row images
// stay in Raw until Decode is called, because most consumers either forward the
// record (sqlws tail prints Raw as it is) or need only some of them.
type Change struct {
	// Seq is the record's position in the stream: strictly increasing within a
	// subscription, never delivered twice.
	Seq int64
	// Table is the table name exactly as declared.
	Table string
	// Op is models.OpInsert, models.OpUpdate or models.OpDelete.
	Op string
	// Raw is the whole record, byte for byte as the server sent it: always a valid
	// JSON object. It shares a buffer with other records of the same subscription,
	// so keeping a Change alive keeps up to a few tens of KiB alive with it: copy Raw
	// (bytes.Clone) or Decode before storing changes for long.
	Raw json.RawMessage
}

// Decode decodes the whole record. PK, Old and New are copies (one allocation for
// the three), not views of Raw, so a decoded change can be kept without keeping
// the client's buffers alive. Old or New is the JSON literal null when the
// operation has no such image. Keys are matched exactly, as the protocol spells
// them.
func (c Change) Decode() (models.Change, error) {
	m, err := decodeRecord(c.Raw)
	if err != nil {
		return models.Change{}, fmt.Errorf("sqlws client: decode change %d: %w", c.Seq, err)
	}
	m.Seq, m.Table, m.Op = c.Seq, c.Table, c.Op
	return m, nil
}
