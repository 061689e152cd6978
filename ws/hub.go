// Package ws fans changes out to WebSocket subscribers. The Hub keeps a bounded window
// of recent changes, each encoded once; every subscription is only a cursor into it.
// A subscriber that falls behind the window reads the changelog through a Source
// instead and rejoins the window when it catches up, so no change is ever dropped and
// no per-client queue grows. The hub does not care where changes come from: anything
// that calls Publish in seq order can feed it.
package ws

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/models"
)

// Source is the change history behind the window, and the stream's identity.
type Source interface {
	// StreamID identifies the change stream; stable for the life of the database.
	StreamID() string
	// Position is the committed head and oldest retained seq, read fresh.
	Position(ctx context.Context) (models.Position, error)
	// ReadChanges returns up to limit changes with seq > after, in seq order.
	ReadChanges(ctx context.Context, after int64, limit, maxBytes int) ([]models.Encoded, error)
	// Tracked reports whether table is captured.
	Tracked(table string) bool
}

// Options configure a Hub. Zero values take the defaults shown.
type Options struct {
	// WindowChanges and WindowBytes bound the in-memory window (defaults 100,000
	// changes and 64 MiB). A larger window serves more lagging subscribers from memory
	// at the cost of resident memory.
	WindowChanges int
	WindowBytes   int
	// FrameChanges and FrameBytes bound one changes frame (defaults 1,000 and 1 MiB).
	FrameChanges int
	FrameBytes   int
	// PingInterval is how often each connection is pinged (default 30s); PingTimeout is
	// how long a pong may take (default 15s). A peer that misses it is closed.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// WriteTimeout bounds one frame write (default 10s). A client that cannot take a
	// frame in time is disconnected and must resume with since. Too short a value
	// disconnects clients on slow links; too long lets dead peers hold sockets.
	WriteTimeout time.Duration
	// ReadLimit is the largest client message accepted (default 64 KiB); a larger one
	// closes the connection with 1009.
	ReadLimit int64
	// Pumps is how many goroutines write live frames (default: half of GOMAXPROCS, at
	// least 1). Each takes up to a core while changes fan out; the rest stay free for
	// requests. More pumps deliver faster to many subscribers on a big machine, at the
	// cost of request latency while a change fans out.
	Pumps int
	// OriginPatterns are extra hosts allowed to open cross-origin WebSockets (see
	// websocket.AcceptOptions). Same-origin is always allowed.
	OriginPatterns []string
	Logger         *slog.Logger
}

func (o *Options) setDefaults() {
	if o.WindowChanges <= 0 {
		o.WindowChanges = 100_000
	}
	if o.WindowBytes <= 0 {
		o.WindowBytes = 64 << 20
	}
	if o.FrameChanges <= 0 {
		o.FrameChanges = 1000
	}
	if o.FrameBytes <= 0 {
		o.FrameBytes = 1 << 20
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 15 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 64 << 10
	}
	if o.Pumps <= 0 {
		o.Pumps = pumpsFor(runtime.GOMAXPROCS(0))
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Hub owns the window and the connections.
type Hub struct {
	src  Source
	opts Options

	ctx    context.Context // cancelled by Close; parent of every connection
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection goroutines

	mu        sync.RWMutex
	ring      []models.Encoded // circular buffer; ring[start] holds seq first
	start     int
	n         int
	bytes     int
	first     int64   // seq of the oldest change in the window; head+1 when empty
	head      int64   // seq of the newest published change
	conns     []*conn // registered connections
	nextShard int     // the pump the next connection is given to
	done      bool

	watching     bool          // the watchdog and the pumps run (from the first connection on)
	stopWatchdog chan struct{} // closed by Close
	watchdogDone chan struct{}

	pumpWake  []chan struct{} // one per pump, buffered 1
	stopPumps chan struct{}   // closed by Close
	pumpsWG   sync.WaitGroup

	connIDs atomic.Uint64 // the last connection id given out
	closes  closeCounts

	// drops are the captured tables that stopped existing, in the order the hub
	// learned of them (under mu); dropsN is their number, read without the lock on
	// every frame to see whether anything changed.
	drops  []models.Drop
	dropsN atomic.Int32
}

// NewHub returns a hub whose stream is at head: the next change it expects is head+1.
func NewHub(src Source, head int64, opts Options) *Hub {
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		src: src, opts: opts, ctx: ctx, cancel: cancel,
		ring:  make([]models.Encoded, 0, min(opts.WindowChanges, 1024)),
		first: head + 1, head: head,
		stopWatchdog: make(chan struct{}), watchdogDone: make(chan struct{}),
		stopPumps: make(chan struct{}),
	}
	for range opts.Pumps {
		h.pumpWake = append(h.pumpWake, make(chan struct{}, 1))
	}
	return h
}

// watchdog keeps every connection honest, so that no connection needs a timer or a
// goroutine of its own for it: it closes those whose current write has been blocked
// longer than WriteTimeout (their client stopped reading), pings those due a ping,
// and closes those that did not answer a ping within PingTimeout.
func (h *Hub) watchdog() {
	defer close(h.watchdogDone)
	t := time.NewTicker(watchdogTick(h.opts))
	defer t.Stop()
	var conns []*conn
	for {
		select {
		case <-h.stopWatchdog:
			return
		case <-t.C:
		}
		h.mu.RLock()
		conns = append(conns[:0], h.conns...)
		h.mu.RUnlock()
		now := time.Now().UnixNano()
		writeLimit := now - int64(h.opts.WriteTimeout)
		for _, c := range conns {
			switch s, p := c.writeStart.Load(), c.pingSent.Load(); {
			case s != 0 && s < writeLimit:
				// A socket that blocked this long cannot carry a close frame either.
				c.endAsync(CloseSlowConsumer, 0, "write timeout")
			case p != 0 && now-p > int64(h.opts.PingTimeout):
				c.endAsync(ClosePingTimeout, websocket.StatusPolicyViolation, "ping timeout")
			case p == 0 && now >= c.nextPing.Load():
				c.sendPing(now)
			}
		}
		clear(conns)
	}
}

// watchdogTick is how often the watchdog looks: often enough that a write timeout,
// a ping interval and a ping timeout are each kept to within a quarter or so.
func watchdogTick(o Options) time.Duration {
	return max(10*time.Millisecond, min(o.WriteTimeout/4, o.PingInterval/2, o.PingTimeout/4, time.Second))
}

// goTracked runs f on a goroutine that Close waits for, unless the hub is closing
// (Close then ends every connection itself).
func (h *Hub) goTracked(f func()) {
	h.mu.Lock()
	if h.done {
		h.mu.Unlock()
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		f()
	}()
}

// Head is the seq of the newest change published.
func (h *Hub) Head() int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.head
}

// Publish appends changes, which must be in seq order, to the window and wakes the
// subscribers. It never blocks on a subscriber. A batch that does not continue the
// window (seq jumped, e.g. another process pruned changes the tailer never read)
// restarts the window; subscribers before the jump then go to the Source, which
// reports the gap as a reset.
func (h *Hub) Publish(batch []models.Encoded) {
	if len(batch) == 0 {
		return
	}
	h.mu.Lock()
	for _, e := range batch {
		if e.Seq <= h.head {
			continue // already have it
		}
		if e.Seq != h.head+1 {
			h.clearLocked()
			h.first = e.Seq
		}
		h.pushLocked(e)
		h.head = e.Seq
	}
	h.mu.Unlock()
	h.wakePumps()
}

func (h *Hub) clearLocked() {
	clear(h.ring)
	h.ring = h.ring[:0]
	h.start, h.n, h.bytes = 0, 0, 0
}

func (h *Hub) pushLocked(e models.Encoded) {
	for h.n > 0 && (h.n >= h.opts.WindowChanges || h.bytes+len(e.JSON) > h.opts.WindowBytes) {
		old := &h.ring[h.start]
		h.bytes -= len(old.JSON)
		*old = models.Encoded{}
		h.start = (h.start + 1) % len(h.ring)
		h.n--
		h.first++
	}
	if h.n == 0 {
		h.first = e.Seq
	}
	switch {
	case h.n < len(h.ring):
		h.ring[(h.start+h.n)%len(h.ring)] = e
	case len(h.ring) == h.opts.WindowChanges: // full at its bound; eviction made room
		h.ring[(h.start+h.n)%len(h.ring)] = e
	case h.start == 0 && len(h.ring) < cap(h.ring):
		h.ring = append(h.ring, e)
	default:
		// Grow into a new array with start at 0, so no stale entry stays reachable.
		grown := make([]models.Encoded, 0, min(max(2*h.n, 1024), h.opts.WindowChanges))
		grown = append(grown, h.ring[h.start:]...)
		grown = append(grown, h.ring[:h.start]...)
		h.ring = append(grown, e)
		h.start = 0
	}
	h.n++
	h.bytes += len(e.JSON)
}

// tableFilter is the tables a subscription wants. Most name one table, and comparing
// one string is several times cheaper than a map lookup, which had been an eighth of
// the server's CPU when fanning out large batches (W2).
type tableFilter struct {
	one  string          // the table, when there is one
	many map[string]bool // the tables, when there are several
}

func newTableFilter(tables []string) *tableFilter {
	switch len(tables) {
	case 0:
		return nil
	case 1:
		return &tableFilter{one: tables[0]}
	}
	f := &tableFilter{many: map[string]bool{}}
	for _, t := range tables {
		f.many[t] = true
	}
	return f
}

// match reports whether changes of table t pass; a nil filter passes all.
func (f *tableFilter) match(t string) bool {
	switch {
	case f == nil:
		return true
	case f.many != nil:
		return f.many[t]
	}
	return t == f.one
}

// readResult says where a cursor stands.
type readResult uint8

const (
	readOK      readResult = iota // entries returned (possibly none: caught up)
	readHistory                   // cursor is before the window: read the Source
)

// TableDropped tells the hub that captured tables stopped existing (see
// models.Drop): a subscription naming one receives its changes up to the drop's seq,
// then error table_dropped, and ends. Subscriptions to every table go on.
func (h *Hub) TableDropped(drops []models.Drop) {
	if len(drops) == 0 {
		return
	}
	h.mu.Lock()
	h.drops = append(h.drops, drops...)
	h.dropsN.Store(int32(len(h.drops)))
	h.mu.Unlock()
	h.wakePumps() // subscriptions at the head end now, not at the next change
}

// dropLimit is where s must stop because a table it names was dropped: the lowest
// seq of the drops that apply to it, and that table; math.MaxInt64 if none. A drop
// the hub learned of after s started applies (s was following the old table); one
// it knew of before applies only if s started before the drop's seq (it resumes
// from the old table's history), else s is following the table created since.
func (h *Hub) dropLimit(s *subscription) (int64, string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	limit, table := int64(math.MaxInt64), ""
	for i, d := range h.drops {
		if !s.tables.match(d.Table) || (int32(i) < s.dropBase && s.since >= d.Seq) {
			continue
		}
		if d.Seq < limit {
			limit, table = d.Seq, d.Table
		}
	}
	return limit, table
}

// read appends to dst the window's changes after cursor in tables (nil: all), up to the
// frame limits and no further than seq limit, and returns the new cursor: the seq of
// the last change examined, so filtered-out changes are skipped once. The returned
// JSON slices are immutable.
func (h *Hub) read(dst []models.Encoded, cursor int64, tables *tableFilter, limit int64) ([]models.Encoded, int64, readResult) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if cursor >= h.head {
		return dst, cursor, readOK
	}
	if cursor+1 < h.first {
		return dst, cursor, readHistory
	}
	bytes := 0
	for i := int(cursor + 1 - h.first); i < h.n; i++ {
		e := h.ring[(h.start+i)%len(h.ring)]
		if e.Seq > limit {
			break
		}
		if tables.match(e.Table) {
			if len(dst) >= h.opts.FrameChanges || (len(dst) > 0 && bytes+len(e.JSON) > h.opts.FrameBytes) {
				break
			}
			dst = append(dst, e)
			bytes += len(e.JSON)
		}
		cursor = e.Seq
	}
	return dst, cursor, readOK
}

// inWindow reports whether the window holds the change after cursor, or cursor is at
// or past the head.
func (h *Hub) inWindow(cursor int64) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return cursor+1 >= h.first || cursor >= h.head
}

// window reports the window's extent, for tests and metrics.
func (h *Hub) window() (first, head int64, n, bytes int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.first, h.head, h.n, h.bytes
}

// Stats is a snapshot of the hub for metrics.
type Stats struct {
	Connections int
	WindowFirst int64
	Head        int64
	WindowLen   int
	WindowBytes int
	// Closes counts ended connections by reason (index by CloseReason).
	Closes [numCloseReasons]uint64
}

// Stats returns a snapshot of the hub.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	st := Stats{Connections: len(h.conns), WindowFirst: h.first, Head: h.head, WindowLen: h.n, WindowBytes: h.bytes}
	h.mu.RUnlock()
	for i := range st.Closes {
		st.Closes[i] = h.closes[i].Load()
	}
	return st
}

// register adds c and counts its goroutine in wg. Both happen under h.mu, which
// Close takes to set done before it waits, so no Add can race with that Wait.
func (h *Hub) register(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return false
	}
	c.shard = h.nextShard
	h.nextShard = (h.nextShard + 1) % h.opts.Pumps
	h.conns = append(h.conns, c)
	h.wg.Add(1)
	if !h.watching {
		h.watching = true
		go h.watchdog()
		for i, w := range h.pumpWake {
			h.pumpsWG.Add(1)
			go h.pump(i, w)
		}
	}
	return true
}

func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	for i, o := range h.conns {
		if o == c {
			last := len(h.conns) - 1
			h.conns[i] = h.conns[last]
			h.conns[last] = nil
			h.conns = h.conns[:last]
			break
		}
	}
	h.mu.Unlock()
}

// Close closes every connection with 1001 (going away) and waits for their
// goroutines, or until ctx is done, after which sockets are dropped.
func (h *Hub) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.watching && !h.done { // Close may be called again
		close(h.stopWatchdog)
		close(h.stopPumps)
		defer func() { <-h.watchdogDone }()
		defer h.pumpsWG.Wait()
	}
	h.done = true
	conns := append([]*conn(nil), h.conns...)
	h.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	h.cancel() // drops whatever did not close politely
	<-done
	return nil
}
