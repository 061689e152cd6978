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

// Decode decodes the whole record. The returned PK, Old and New are copies, not
// views of Raw. Old or New is the JSON literal null when the operation has no such
// image.
func (c Change) Decode() (models.Change, error) {
	var m models.Change
	if err := json.Unmarshal(c.Raw, &m); err != nil {
		return models.Change{}, fmt.Errorf("sqlws client: decode change %d: %w", c.Seq, err)
	}
	// The scanned fields are authoritative (encoding/json matches keys without
	// regard to case, the scanner exactly, as the protocol is written).
	m.Seq, m.Table, m.Op = c.Seq, c.Table, c.Op
	return m, nil
}
