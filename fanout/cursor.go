package fanout

import (
	"context"
	"math"

	"github.com/sqlws/sqlws/filter"
	"github.com/sqlws/sqlws/models"
)

// TableSet is the tables a cursor follows. Most name one table, and comparing one
// string is several times cheaper than a map lookup, which had been an eighth of the
// server's CPU when fanning out large batches to 1,000 subscribers.
type TableSet struct {
	one  string          // the table, when there is one
	many map[string]bool // the tables, when there are several
}

// NewTableSet is the set of tables; nil (every table) when tables is empty.
func NewTableSet(tables []string) *TableSet {
	switch len(tables) {
	case 0:
		return nil
	case 1:
		return &TableSet{one: tables[0]}
	}
	f := &TableSet{many: map[string]bool{}}
	for _, t := range tables {
		f.many[t] = true
	}
	return f
}

// match reports whether changes of table t pass; a nil set passes all.
func (f *TableSet) match(t string) bool {
	switch {
	case f == nil:
		return true
	case f.many != nil:
		return f.many[t]
	}
	return t == f.one
}

// Cursor is one subscription's position in the stream. It is not safe for
// concurrent use: its owner serialises every call that takes it.
type Cursor struct {
	tables *TableSet
	pos    int64 // seq of the last change delivered or skipped
	since  int64 // pos at the start
	// Table drops (see Window.dropLimit): how many of the window's drops were known
	// when the cursor started (dropBase) and when limit was last computed
	// (dropsSeen); limit is the seq where a dropped table it names ends (MaxInt64:
	// none), and dropTable that table.
	dropBase, dropsSeen int32
	limit               int64
	dropTable           string
	// filter narrows a filtered subscription (nil: none); group is where the window
	// keeps what the filter's subscribers receive (see filtered.go).
	filter *filter.Filter
	group  *group
	wake   func() // see NewFilteredCursor
}

// NewCursor returns a cursor over tables (empty: every table) that continues after
// seq since.
func (w *Window) NewCursor(tables []string, since int64) *Cursor {
	return &Cursor{tables: NewTableSet(tables), pos: since, since: since,
		dropBase: w.dropsN.Load(), dropsSeen: -1, limit: math.MaxInt64}
}

// Pos is the seq of the last change the cursor has delivered or skipped.
func (c *Cursor) Pos() int64 { return c.pos }

// Advance moves the cursor to pos, as History returned it.
func (c *Cursor) Advance(pos int64) { c.pos = pos }

// DroppedTable is the dropped table that ended the cursor (after Dropped).
func (c *Cursor) DroppedTable() string { return c.dropTable }

// Filter is the cursor's filter, nil for an unfiltered cursor.
func (c *Cursor) Filter() *filter.Filter { return c.filter }

// Status says what a read found.
type Status uint8

const (
	// Ready: the entries returned (none when the cursor is caught up).
	Ready Status = iota
	// Behind: the cursor is before the window; read History (it does I/O, so the
	// caller should not hold locks others wait on).
	Behind
	// Pruned: changes the cursor needs are no longer in the changelog; it cannot go
	// on and the subscriber must reload (a reset).
	Pruned
	// Dropped: a table the cursor names was dropped and the cursor has every change
	// it made; the subscription ends (DroppedTable says which).
	Dropped
	// Invalid: the cursor's filter no longer fits its table (a column it uses was
	// dropped or renamed); it has every change before that, and the subscription ends
	// with Filter().StaleError().
	Invalid
)

// Next appends c's next changes from the window to dst, advancing c: at most a frame's
// worth (FrameBytes, or maxBytes when smaller and not 0), skipping changes of other
// tables. It does no I/O.
func (w *Window) Next(c *Cursor, dst []models.Encoded, maxBytes int) ([]models.Encoded, Status) {
	for {
		limit := c.dropLimitFrom(w)
		if c.pos >= limit {
			return dst, Dropped
		}
		from := c.pos
		var out []models.Encoded
		var pos int64
		if c.group != nil {
			// Nothing in the group past the cursor: caught up to the head, without the
			// lock. The head is read first: every record up to it was appended, and
			// quiet moved, before it was stored.
			h := w.headA.Load()
			if q := c.group.quiet.Load(); c.pos >= q {
				c.pos = max(c.pos, min(h, limit))
				if c.pos >= limit {
					continue // at a dropped table's end: the loop says Dropped
				}
				return dst, Ready
			}
			var st Status
			w.mu.RLock()
			out, pos, st = w.nextFilteredLocked(c, dst, limit, maxBytes)
			w.mu.RUnlock()
			if st != Ready {
				return dst, st
			}
		} else {
			var behind bool
			out, pos, behind = w.read(dst, from, c.tables, limit, maxBytes)
			if behind {
				return dst, Behind
			}
		}
		c.pos = pos
		if len(out) > len(dst) || pos == from {
			return out, Ready // changes, or caught up
		}
		// Skipped other tables' changes without finding one: keep going.
	}
}

// dropLimitFrom is the last seq c may read (see Window.dropLimit), recomputed only
// when the window has learned of a drop.
func (c *Cursor) dropLimitFrom(w *Window) int64 {
	if c.tables == nil {
		return math.MaxInt64 // every table: drops end nothing
	}
	if n := w.dropsN.Load(); n != c.dropsSeen {
		c.dropsSeen = n
		c.limit, c.dropTable = w.dropLimit(c)
	}
	return c.limit
}

// Lease keeps the memory of changes History returned in use until Release: they
// are shared with every other cursor reading the same page, and the memory budget
// counts them until then. The zero Lease releases nothing.
type Lease struct {
	ps *pages
	p  *page
}

// Release gives the changes back; they must not be used afterwards.
func (l *Lease) Release() {
	if l.p != nil {
		l.ps.release(l.p)
		l.p = nil
	}
}

// History reads c's next changes, for a cursor that is behind the window, from the
// pages of the changelog shared by every cursor (read from the Source once each),
// appending them to dst, and returns the position to Advance c to. It does not change
// c, so the caller may run it without the lock that guards c, provided nothing else
// uses c meanwhile; the caller writes the changes and then releases the Lease. It
// returns as soon as it has matching changes, or once the position reaches the
// window, which serves the rest without I/O; Pruned when the changes after the
// position are gone.
func (w *Window) History(ctx context.Context, c *Cursor, dst []models.Encoded) ([]models.Encoded, int64, Status, Lease, error) {
	pos, limit := c.pos, c.limit
	n := len(dst)
	for pos < limit {
		p, err := w.pages.get(ctx, pos+1)
		if err == errPagePruned {
			return dst, pos, Pruned, Lease{}, nil
		}
		if err != nil {
			return dst, pos, Ready, Lease{}, err
		}
		if p == nil {
			// Nothing after pos in the changelog. Right if pos is at the head; else
			// what the window holds after pos was removed before it could be read.
			if pos >= w.Head() {
				return dst, pos, Ready, Lease{}, nil
			}
			return dst, pos, Pruned, Lease{}, nil
		}
		bytes := 0
		for _, e := range p.entries[pos+1-p.entries[0].Seq:] {
			if e.Seq > limit || len(dst)-n >= w.opts.FrameChanges || (len(dst) > n && bytes+len(e.JSON) > w.opts.FrameBytes) {
				break
			}
			if e.JSON != nil && c.tables.match(e.Table) { // no JSON: a mark, which holds a seq only
				rec, deliver, stale := historyFilter(c, e)
				if stale {
					if len(dst) > n {
						return dst, pos, Ready, Lease{ps: w.pages, p: p}, nil
					}
					w.pages.release(p)
					return dst, pos, Invalid, Lease{}, nil
				}
				if deliver {
					dst = append(dst, rec)
					bytes += len(rec.JSON)
				}
			}
			pos = e.Seq
		}
		if len(dst) > n {
			return dst, pos, Ready, Lease{ps: w.pages, p: p}, nil
		}
		w.pages.release(p)
		if w.inWindow(pos) {
			return dst, pos, Ready, Lease{}, nil
		}
	}
	return dst, pos, Ready, Lease{}, nil
}

// PageStats returns the catch-up page cache's figures.
func (w *Window) PageStats() PageStats { return w.pages.stats() }
