// Package ws serves the change stream over WebSocket: it upgrades connections,
// speaks protocol v1 (package protocol) on each, and writes to every subscriber what
// its fanout.Cursor yields, with each change's bytes shared by every frame that
// carries it. It owns the lifecycle of each connection — liveness, slow consumers,
// closes — and the frame layer under the WebSocket library (hijack.go).
package ws

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/models"
)

// Tables is what the hub needs to know of the schema: whether a table is captured,
// so that subscribing to an unknown one fails at once, and its columns, against which
// a filtered subscription's where and select are compiled.
type Tables interface {
	Tracked(table string) bool
	Table(name string) (*capture.Table, bool)
}

// Options configure a Hub. Zero values take the defaults shown.
type Options struct {
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
	// MaxSubscriptions bounds a connection's active subscriptions (default 100); one
	// more is refused with error too_many_subscriptions.
	MaxSubscriptions int
	// MessageRate and MessageBurst bound the messages a client sends (defaults 50 a
	// second, bursts of 100; a negative rate: unlimited). A message over the limit is
	// answered error rate_limited; a client that keeps on past another burst's worth
	// of refusals is closed with 1008. Too low a rate refuses busy dashboards' bursts of
	// subscribes; too high lets one client keep the server parsing.
	MessageRate  float64
	MessageBurst int
	// Verify verifies the token of an auth message, which replaces a connection's
	// token in place (nil: auth messages are refused). The connection's first token
	// is verified before the upgrade, by the HTTP layer, which puts its
	// rules.Access in the request's context.
	Verify func(token string) (*auth.Identity, error)
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
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
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = 100
	}
	if o.MessageRate == 0 {
		o.MessageRate = 50
	}
	if o.MessageBurst <= 0 {
		o.MessageBurst = 100
	}
	if o.Pumps <= 0 {
		o.Pumps = pumpsFor(runtime.GOMAXPROCS(0))
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Hub owns the WebSocket connections of one window.
type Hub struct {
	win    *fanout.Window
	src    fanout.Source
	tables Tables
	opts   Options

	ctx    context.Context // cancelled by Close; parent of every connection
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection goroutines

	mu        sync.RWMutex
	conns     []*conn // registered connections
	nextShard int     // the pump the next connection is given to
	done      bool

	watching     bool          // the watchdog and the pumps run (from the first connection on)
	stopWatchdog chan struct{} // closed by Close
	watchdogDone chan struct{}

	pumpWake  []chan struct{} // one per pump, buffered 1
	stopPumps chan struct{}   // closed by Close
	pumpsWG   sync.WaitGroup

	// clock is the watchdog's time (unix ns) as of its last look: a clock for marks
	// made on every frame (conn.lastWrite) that costs no clock read.
	clock atomic.Int64

	connIDs atomic.Uint64 // the last connection id given out
	closes  closeCounts
	counts  counters
}

// NewHub returns a hub serving win's stream, whose tables are tables.
func NewHub(win *fanout.Window, tables Tables, opts Options) *Hub {
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		win: win, src: win.Source(), tables: tables, opts: opts, ctx: ctx, cancel: cancel,
		stopWatchdog: make(chan struct{}), watchdogDone: make(chan struct{}),
		stopPumps: make(chan struct{}),
	}
	for range opts.Pumps {
		h.pumpWake = append(h.pumpWake, make(chan struct{}, 1))
	}
	return h
}

// Publish appends changes, in seq order, to the window and wakes the subscribers. It
// never blocks on a subscriber.
func (h *Hub) Publish(batch []models.Encoded) {
	if len(batch) == 0 {
		return
	}
	h.win.Publish(batch)
	h.wakePumps()
}

// TableDropped tells the window that captured tables stopped existing and wakes the
// subscribers, so that subscriptions at the head end now, not at the next change.
func (h *Hub) TableDropped(drops []models.Drop) {
	h.win.TableDropped(drops)
	h.wakePumps()
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
		h.clock.Store(now)
		writeLimit := now - int64(h.opts.WriteTimeout)
		for _, c := range conns {
			switch s, p := c.writeStart.Load(), c.pingSent.Load(); {
			case s != 0 && s < writeLimit:
				// A socket that blocked this long cannot carry a close frame either.
				c.endAsync(CloseSlowConsumer, 0, "write timeout")
			case p != 0 && now-p > int64(h.opts.PingTimeout) && c.lastWrite.Load() <= p:
				c.endAsync(ClosePingTimeout, websocket.StatusPolicyViolation, "ping timeout")
			case p != 0 && now-p > int64(h.opts.PingTimeout):
				// No pong yet, but the peer has taken frames since the ping: alive,
				// and slow to reach the pong. Ping again later.
				c.pingSent.Store(0)
				c.nextPing.Store(now + int64(h.opts.PingInterval))
			case p == 0 && now >= c.nextPing.Load():
				c.sendPing(now)
			}
			if e := c.expires.Load(); e != 0 && now >= e && c.expiring.CompareAndSwap(false, true) {
				c.expire()
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

// Stats is a snapshot of the hub for metrics.
type Stats struct {
	Connections   int
	Subscriptions int64
	Window        fanout.Stats
	Pages         fanout.PageStats
	// Closes counts ended connections by reason (index by CloseReason).
	Closes [NumCloseReasons]uint64
	// Written to sockets since the start: frames (replies and pings included), their
	// bytes, and the changes they carried.
	Frames, Bytes, Changes uint64
	Resets                 map[string]uint64 // resets sent, by reason
	Errors                 map[string]uint64 // error replies sent, by code
}

// Stats returns a snapshot of the hub.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	st := Stats{Connections: len(h.conns)}
	h.mu.RUnlock()
	st.Window = h.win.Stats()
	st.Pages = h.win.PageStats()
	st.Subscriptions = h.counts.subscriptions.Load()
	st.Frames, st.Bytes, st.Changes = h.counts.frames.Load(), h.counts.bytes.Load(), h.counts.changes.Load()
	st.Resets = h.counts.snapshot(h.counts.resets)
	st.Errors = h.counts.snapshot(h.counts.errors)
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
