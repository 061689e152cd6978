// Package fanout decides what each subscriber receives next, without knowing how it
// is sent. A Window keeps the most recent changes in memory, each encoded once; a
// subscription is only a Cursor into it. A cursor that falls behind the window reads
// the changelog through a Source instead and rejoins the window when it catches up,
// so no change is ever dropped and no per-subscriber queue grows. Anything that calls
// Publish in seq order can feed a Window; package ws serves it over WebSocket.
package fanout

import (
	"context"
	"math"
	"sync"
	"sync/atomic"

	"github.com/sqlws/sqlws/models"
)

// Source is the change history behind the window, and the stream's identity.
type Source interface {
	// StreamID identifies the change stream; stable for the life of the database.
	StreamID() string
	// Position is the committed head and oldest retained seq, read fresh.
	Position(ctx context.Context) (models.Position, error)
	// ReadChanges returns up to limit changes with seq > after, consecutive and in
	// seq order; at a hole it returns what came before it and models.ErrGap.
	ReadChanges(ctx context.Context, after int64, limit, maxBytes int) ([]models.Encoded, error)
}

// Options configure a Window. Zero values take the defaults shown.
type Options struct {
	// WindowChanges and WindowBytes bound the in-memory window (defaults 100,000
	// changes and 64 MiB). A larger window serves more lagging subscribers from memory
	// at the cost of resident memory.
	WindowChanges int
	WindowBytes   int
	// FrameChanges and FrameBytes bound what one read returns for one subscription
	// (defaults 256 and 256 KiB): the changes of one frame. A subscriber that is behind
	// gets frames this large; each writer holds a frame's entries and write vectors
	// (about 128 bytes per change) while it writes, so with many subscribers catching
	// up at once, larger frames cost memory the budget does not see.
	FrameChanges int
	FrameBytes   int
	// MemoryBudget bounds the memory of the window, of the pages of changelog shared
	// by subscribers catching up, and of the frames being written (default 256 MiB).
	// The window takes at most a quarter of it (and no more than WindowBytes), the
	// pages half; the last quarter is for frames in flight (which reference the
	// window's and the pages' changes rather than copy them, save small live frames)
	// and the collector's headroom; records built for filtered subscriptions take at
	// most a sixteenth of it from that quarter. When pages in use fill their half, catching up
	// waits for memory rather than taking more: delivery slows, memory does not grow.
	// Connections' own memory (a few tens of kilobytes each) is not counted.
	MemoryBudget int64
}

func (o *Options) setDefaults() {
	if o.WindowChanges <= 0 {
		o.WindowChanges = 100_000
	}
	if o.WindowBytes <= 0 {
		o.WindowBytes = 64 << 20
	}
	if o.FrameChanges <= 0 {
		o.FrameChanges = 256
	}
	if o.FrameBytes <= 0 {
		o.FrameBytes = 256 << 10
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = DefaultMemoryBudget
	}
	o.WindowBytes = int(min(int64(o.WindowBytes), o.MemoryBudget/4))
}

// DefaultMemoryBudget is Options.MemoryBudget's default.
const DefaultMemoryBudget = 256 << 20

// Window holds the newest changes, and what it knows of dropped tables.
type Window struct {
	src   Source
	opts  Options
	pages *pages

	mu    sync.RWMutex
	ring  []models.Encoded // circular buffer; ring[start] holds seq first
	start int
	n     int
	bytes int
	first int64 // seq of the oldest change in the window; head+1 when empty
	head  int64 // seq of the newest published change
	// headA is head for readers without the lock, stored after the change's filter
	// groups were brought up to date (see Window.Next's filtered fast path).
	headA atomic.Int64

	// drops are the captured tables that stopped existing, in the order the window
	// learned of them (under mu); dropsN is their number, read without the lock on
	// every frame to see whether anything changed.
	drops  []models.Drop
	dropsN atomic.Int32

	// filters are the filtered subscriptions' groups (filtered.go), under mu.
	filters filters
}

// NewWindow returns a window whose stream is at head: the next change it expects is
// head+1.
func NewWindow(src Source, head int64, opts Options) *Window {
	opts.setDefaults()
	w := &Window{
		src: src, opts: opts,
		pages: newPages(src, opts.MemoryBudget/2),
		ring:  make([]models.Encoded, 0, min(opts.WindowChanges, 1024)),
		first: head + 1, head: head,
	}
	w.headA.Store(head)
	return w
}

// Source is the window's history.
func (w *Window) Source() Source { return w.src }

// Options are the window's options, defaults filled in.
func (w *Window) Options() Options { return w.opts }

// Head is the seq of the newest change published.
func (w *Window) Head() int64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.head
}

// Publish appends changes, which must be in seq order, to the window. It never
// blocks on a subscriber. A batch that does not continue the window (seq jumped:
// another process pruned changes the tailer never read, or deleted some) restarts
// the window; cursors before the jump then go to the Source, which reports the hole.
func (w *Window) Publish(batch []models.Encoded) {
	w.mu.Lock()
	w.publishLocked(batch)
	var wakes []func()
	if len(w.filters.touched) > 0 {
		wakes = w.wakesLocked(nil)
	}
	w.mu.Unlock()
	for _, wake := range wakes {
		wake()
	}
}

func (w *Window) publishLocked(batch []models.Encoded) {
	for _, e := range batch {
		if e.Seq <= w.head {
			continue // already have it
		}
		if e.Seq != w.head+1 {
			w.clearLocked()
			w.first = e.Seq
			w.resetFiltersLocked(e.Seq)
		}
		w.pushLocked(e)
		w.head = e.Seq
		if len(w.filters.byTable) > 0 {
			w.filterLocked(e)
		}
		w.headA.Store(e.Seq)
	}
}

func (w *Window) clearLocked() {
	clear(w.ring)
	w.ring = w.ring[:0]
	w.start, w.n, w.bytes = 0, 0, 0
}

func (w *Window) pushLocked(e models.Encoded) {
	for w.n > 0 && (w.n >= w.opts.WindowChanges || w.bytes+len(e.JSON) > w.opts.WindowBytes) {
		old := &w.ring[w.start]
		w.bytes -= len(old.JSON)
		*old = models.Encoded{}
		w.start = (w.start + 1) % len(w.ring)
		w.n--
		w.first++
	}
	if w.n == 0 {
		w.first = e.Seq
	}
	switch {
	case w.n < len(w.ring):
		w.ring[(w.start+w.n)%len(w.ring)] = e
	case len(w.ring) == w.opts.WindowChanges: // full at its bound; eviction made room
		w.ring[(w.start+w.n)%len(w.ring)] = e
	case w.start == 0 && len(w.ring) < cap(w.ring):
		w.ring = append(w.ring, e)
	default:
		// Grow into a new array with start at 0, so no stale entry stays reachable.
		grown := make([]models.Encoded, 0, min(max(2*w.n, 1024), w.opts.WindowChanges))
		grown = append(grown, w.ring[w.start:]...)
		grown = append(grown, w.ring[:w.start]...)
		w.ring = append(grown, e)
		w.start = 0
	}
	w.n++
	w.bytes += len(e.JSON)
}

// TableDropped tells the window that captured tables stopped existing (see
// models.Drop): a cursor naming one reads its changes up to the drop's seq and then
// ends with Dropped. Cursors over every table go on.
func (w *Window) TableDropped(drops []models.Drop) {
	if len(drops) == 0 {
		return
	}
	w.mu.Lock()
	w.drops = append(w.drops, drops...)
	w.dropsN.Store(int32(len(w.drops)))
	w.mu.Unlock()
}

// dropLimit is where c must stop because a table it names was dropped: the lowest
// seq of the drops that apply to it, and that table; math.MaxInt64 if none. A drop
// the window learned of after c started applies (c was following the old table); one
// it knew of before applies only if c started before the drop's seq (it resumes from
// the old table's history), else c is following the table created since.
func (w *Window) dropLimit(c *Cursor) (int64, string) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	limit, table := int64(math.MaxInt64), ""
	for i, d := range w.drops {
		if !c.tables.match(d.Table) || (int32(i) < c.dropBase && c.since >= d.Seq) {
			continue
		}
		if d.Seq < limit {
			limit, table = d.Seq, d.Table
		}
	}
	return limit, table
}

// read appends to dst the window's changes after cursor in tables (nil: all), up to
// the frame limits and no further than seq limit, and returns the new position: the
// seq of the last change examined, so filtered-out changes are skipped once. behind
// reports that cursor is before the window. The returned JSON slices are immutable.
func (w *Window) read(dst []models.Encoded, cursor int64, tables *TableSet, limit int64, maxBytes int) (out []models.Encoded, pos int64, behind bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if cursor >= w.head {
		return dst, cursor, false
	}
	if cursor+1 < w.first {
		return dst, cursor, true
	}
	if maxBytes <= 0 || maxBytes > w.opts.FrameBytes {
		maxBytes = w.opts.FrameBytes
	}
	bytes := 0
	for i := int(cursor + 1 - w.first); i < w.n; i++ {
		e := w.ring[(w.start+i)%len(w.ring)]
		if e.Seq > limit {
			break
		}
		if e.JSON != nil && tables.match(e.Table) { // no JSON: a mark, which holds a seq only
			if len(dst) >= w.opts.FrameChanges || (len(dst) > 0 && bytes+len(e.JSON) > maxBytes) {
				break
			}
			dst = append(dst, e)
			bytes += len(e.JSON)
		}
		cursor = e.Seq
	}
	return dst, cursor, false
}

// inWindow reports whether the window holds the change after cursor, or cursor is at
// or past the head.
func (w *Window) inWindow(cursor int64) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return cursor+1 >= w.first || cursor >= w.head
}

// Stats is a snapshot of the window for metrics.
type Stats struct {
	First int64 // seq of the oldest change held
	Head  int64
	Len   int // changes held
	Bytes int // encoded bytes held
}

// Stats returns a snapshot of the window.
func (w *Window) Stats() Stats {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return Stats{First: w.first, Head: w.head, Len: w.n, Bytes: w.bytes}
}
