package ws

import (
	"encoding/json"
	"net"

	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// frame is the changes message nextFrameLocked builds for one subscription. Changes
// from the window are copied into buf: live frames are small, and the pump writes
// them without blocking. Changes from history pages are gathered instead (vec) and
// written with writev straight from the pages shared by every subscriber catching
// up, so a subscriber that is behind costs no copy of what it is sent; the pages'
// memory stays leased until the write is done.
type frame struct {
	batch []models.Encoded
	buf   *[]byte // the copied frame: frameHeaderMax bytes of room, then the payload
	vec   net.Buffers
	head  []byte // a gathered frame's header and message head
	lease fanout.Lease
}

// sep and tail are a gathered frame's separators and end, shared by every frame.
var (
	sep  = []byte(protocol.ChangesSep)
	tail = []byte(protocol.ChangesTail)
)

// copyChanges builds a copied frame of entries for subscription id.
func (f *frame) copyChanges(id json.RawMessage, entries []models.Encoded) {
	if f.buf == nil {
		f.buf = framePool.Get().(*[]byte)
	}
	*f.buf = protocol.AppendChanges((*f.buf)[:frameHeaderMax], id, entries)
	f.vec = f.vec[:0]
}

// gatherChanges builds a gathered frame of entries for subscription id, leased.
func (f *frame) gatherChanges(id json.RawMessage, entries []models.Encoded, lease fanout.Lease) {
	n := protocol.ChangesLen(id, entries)
	f.head = f.head[:frameHeaderMax]
	start := frameHeader(f.head, n)
	f.head = protocol.AppendChangesHead(f.head, id)
	f.vec = append(f.vec[:0], f.head[start:])
	for i, e := range entries {
		if i > 0 {
			f.vec = append(f.vec, sep)
		}
		f.vec = append(f.vec, e.JSON)
	}
	f.vec = append(f.vec, tail)
	f.lease = lease
}

// gathered reports whether the frame built last is a gathered one.
func (f *frame) gathered() bool { return len(f.vec) > 0 }

// done releases what the frame held once written (or abandoned), keeping its
// buffers for the next frame.
func (f *frame) done() {
	f.lease.Release()
	clear(f.vec) // drop references to the pages
	f.vec = f.vec[:0]
	clear(f.batch)
	f.batch = f.batch[:0]
}

// free returns the frame's copy buffer to the pool.
func (f *frame) free() {
	f.done()
	if f.buf != nil {
		framePool.Put(f.buf)
		f.buf = nil
	}
}
