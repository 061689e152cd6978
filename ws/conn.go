package ws

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/filter"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
	"github.com/sqlws/sqlws/rules"
)

// maxPendingControl bounds queued replies (subscribed, error, …) per connection; a
// client that floods requests without reading replies is disconnected.
const maxPendingControl = 1024

// conn is one WebSocket connection. Its reads run on one goroutine (run) for the
// life of the connection. Live frames are written by its hub's pump (pump.go) when
// the socket takes them at once; replies, history and frames that must wait for the
// socket are written by a writer goroutine that exists only while there is something
// to send. An idle connection costs one goroutine.
type conn struct {
	hub    *Hub
	id     uint64 // for logs
	ws     *websocket.Conn
	fc     *frameConn // the socket under ws; data frames are written here
	shard  int        // the pump that writes its live frames
	ctx    context.Context
	cancel context.CancelFunc
	// writeStart is when the frame being written started (unix ns), 0 when none: the
	// hub's watchdog closes connections whose write has taken longer than WriteTimeout.
	writeStart atomic.Int64
	// Liveness, driven by the hub's watchdog (unix ns): when the next ping is due,
	// when the unanswered ping was sent (0: none outstanding), and when a write last
	// completed. A peer that keeps taking frames is alive even if its pong is still
	// queued behind megabytes of them in the socket.
	nextPing  atomic.Int64
	pingSent  atomic.Int64
	lastWrite atomic.Int64
	// ending is set by the first end; endDone is closed once the socket is closed.
	ending  atomic.Bool
	endDone chan struct{}

	mu      sync.Mutex
	subs    map[string]*subscription // by the id's JSON text
	order   []*subscription          // round-robin order for fairness
	next    int                      // next index in order to serve
	control [][]byte                 // complete frames (replies, pings) waiting to be written, in order
	writing bool                     // a writer goroutine is running
	dirty   bool                     // woken while writing: look again before exiting
	// pending is a frame the hub's pump began (or could not begin) writing without
	// blocking, handed to the writer goroutine with the rest from pendingOff; when
	// pendingLocked the pump wrote part of it and the frameConn's lock is held for
	// the writer, so nothing can come between the two parts.
	pending        *[]byte
	pendingOff     int
	pendingLocked  bool
	pendingChanges int // changes in pending, for the counters
	closed         bool
	overflowed     bool // too many unanswered requests: closing
	// interrupt cancels the history read under way, if any: a read can wait for
	// memory, and replies and pings must not wait behind it.
	interrupt context.CancelFunc
	// acc is what the connection's token may read (nil: authentication off); an auth
	// message replaces it. closeAfter, when set, ends the connection once the replies
	// queued before it are written (token_expired, then 4001).
	acc        *rules.Access
	closeAfter *closeReq

	// expires is the token's exp (unix ns; 0: none); expiring is set once
	// token_expired is sent, after which nothing more is delivered.
	expires  atomic.Int64
	expiring atomic.Bool
	// limiter bounds the client's messages (nil: unlimited); refused counts messages
	// refused since the last one allowed. Only the read goroutine uses them.
	limiter *rate.Limiter
	refused int
	// queued is set while the connection is in its pump's ready queue.
	queued atomic.Bool
}

// closeReq is an end deferred until the replies before it are written.
type closeReq struct {
	reason CloseReason
	code   websocket.StatusCode
	text   string
}

// subscription is one of a connection's subscriptions: its id, as replies echo it,
// and its position in the stream.
type subscription struct {
	id  json.RawMessage
	key string
	cur *fanout.Cursor
	// What the access rules granted, to look again when they or the token change:
	// nil set when the rules do not apply.
	tables []string // as asked
	where  string   // the client's own where
	grant  grant
}

// grant is what the rules allowed a subscription: under which rule set and access,
// with which combined where (rules.Access.ReadWhere) or nothing at all.
type grant struct {
	set     *rules.Set
	acc     *rules.Access
	where   string
	nothing bool
}

// ServeHTTP upgrades GET /ws and hands the connection to its own goroutine, then
// returns, so net/http releases its per-connection state (buffers, request) while
// the WebSocket lives on.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &conn{hub: h, id: h.connIDs.Add(1), subs: map[string]*subscription{}, endDone: make(chan struct{})}
	if acc := rules.FromContext(r.Context()); acc != nil {
		c.acc = acc
		if acc.ID != nil && !acc.ID.Expires.IsZero() {
			c.expires.Store(acc.ID.Expires.UnixNano())
		}
	}
	if h.opts.MessageRate > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(h.opts.MessageRate), h.opts.MessageBurst)
	}
	sb := &smallBuffers{ResponseWriter: w}
	wsc, err := websocket.Accept(sb, r, &websocket.AcceptOptions{
		OriginPatterns: h.opts.OriginPatterns,
		// Off explicitly, not by default: data frames are written around the library
		// (frameConn), uncompressed, and must never follow a negotiated extension.
		CompressionMode: websocket.CompressionDisabled,
		OnPongReceived:  func(context.Context, []byte) { c.pong() },
	})
	if err != nil {
		return // Accept has written the HTTP error
	}
	wsc.SetReadLimit(h.opts.ReadLimit)
	c.ws, c.fc = wsc, sb.fc
	c.ctx, c.cancel = context.WithCancel(h.ctx)
	c.nextPing.Store(time.Now().Add(h.opts.PingInterval).UnixNano())
	if !h.register(c) {
		c.cancel()
		wsc.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	go c.run()
}

// run owns the connection: it sends hello, reads client messages until the
// connection ends, and then makes sure the socket is closed, however it ended.
func (c *conn) run() {
	h := c.hub
	defer h.wg.Done()
	// Runs before wg.Done: once closed is set, wake starts no writer, so no wg.Add
	// can come after this goroutine's Done.
	defer c.markClosed()
	defer c.cancel()
	defer h.unregister(c)

	pos, err := c.position()
	if err != nil {
		h.opts.Logger.Warn("websocket hello: read position", "conn", c.id, "err", err)
		c.end(CloseUnavailable, websocket.StatusTryAgainLater, "database unavailable")
		return
	}
	hello := protocol.HelloMessage(h.src.StreamID(), pos)
	// hello goes through the writer so it cannot interleave with a frame the writer
	// starts because of a Publish that raced with this connection's start.
	c.queue(hello)
	err = c.readLoop()
	c.end(readEnd(err))
}

// position reads the stream position on a short-lived goroutine. The connection's
// own goroutine lives as long as the connection, and a database call (database/sql
// and SQLite are deep) would grow its stack to 8 KB for good: most of what an idle
// subscriber costs.
func (c *conn) position() (models.Position, error) {
	type result struct {
		pos models.Position
		err error
	}
	ch := make(chan result, 1)
	go func() {
		p, err := c.hub.src.Position(c.ctx)
		ch <- result{p, err}
	}()
	r := <-ch
	return r.pos, r.err
}

// waitHead gives a source that trails the stream (fanout.HeadWaiter: an edge) the
// chance to reach since before it counts as the future, on a short-lived goroutine
// for the reason position gives. Other sources, and errors, keep pos.
func (c *conn) waitHead(since int64, pos models.Position) models.Position {
	w, ok := c.hub.src.(fanout.HeadWaiter)
	if !ok {
		return pos
	}
	ch := make(chan models.Position, 1)
	go func() {
		p, err := w.WaitHead(c.ctx, since)
		if err != nil {
			p = pos
		}
		ch <- p
	}()
	return <-ch
}

func (c *conn) markClosed() {
	c.mu.Lock()
	c.closed = true
	// The subscriptions end with the connection: the gauge counts them down, and a
	// filtered one's group in the window is released.
	for _, s := range append([]*subscription(nil), c.order...) {
		c.removeLocked(s)
	}
	c.mu.Unlock()
}

// errInvalidUTF8 ends a connection whose peer sent a text message that is not UTF-8,
// which RFC 6455 answers with 1007.
var errInvalidUTF8 = errors.New("text message is not valid UTF-8")

// readLoop handles client messages until the connection ends, and returns why it
// ended. Reads are bounded only by the hub's hard stop: a graceful close must be able
// to read the peer's answer, so nothing else cancels them (end sets a deadline).
func (c *conn) readLoop() error {
	for {
		typ, data, err := c.ws.Read(c.hub.ctx)
		if err != nil {
			return err
		}
		if c.ending.Load() {
			return net.ErrClosed // closing: handle nothing more
		}
		if typ != websocket.MessageText {
			c.sendError(nil, errors.E(errors.Invalid, "binary frames are not accepted; send JSON text"))
			continue
		}
		if !utf8.Valid(data) {
			return errInvalidUTF8
		}
		if err := c.handle(data); err != nil {
			return err
		}
	}
}

// errRateLimited ends a connection that kept sending past the message rate limit.
var errRateLimited = errors.New("message rate exceeded")

func (c *conn) handle(data []byte) error {
	r, err := protocol.Parse(data)
	if c.limiter != nil && !c.limiter.Allow() {
		// Refused before any work; a client that goes on regardless is closed.
		if c.refused++; c.refused > c.hub.opts.MessageBurst {
			return errRateLimited
		}
		c.sendError(r.ID, errors.WithCode(errors.RateLimited, errors.CodeRateLimited,
			"too many messages: at most %g a second", c.hub.opts.MessageRate))
		return nil
	}
	c.refused = 0
	if err != nil {
		c.sendError(r.ID, err)
		return nil
	}
	switch r.Type {
	case protocol.TypeSubscribe:
		c.subscribe(&r)
	case protocol.TypeUnsubscribe:
		c.unsubscribe(r.ID)
	case protocol.TypeAuth:
		c.auth(r.Token)
	}
	return nil
}

func (c *conn) subscribe(r *protocol.Request) {
	h := c.hub
	id := r.ID
	c.mu.Lock()
	n, acc := len(c.subs), c.acc
	c.mu.Unlock()
	if n >= h.opts.MaxSubscriptions {
		c.sendError(id, errors.WithCode(errors.TooLarge, errors.CodeTooManySubs,
			"this connection has %d subscriptions, the most it may have", n))
		return
	}
	// The rules before the schema: a table the token may not read is forbidden
	// whether or not it exists, so its name reveals nothing.
	g, err := grantFor(acc, r.Tables, r.Where)
	if err != nil {
		c.sendError(id, err)
		return
	}
	for _, t := range r.Tables {
		if !h.tables.Tracked(t) {
			c.sendError(id, errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "unknown table %q", errors.Clip(t)))
			return
		}
	}
	where := r.Where
	if g.set != nil && len(r.Tables) == 1 {
		where = g.where // the client's where ANDed with the row rule
	}
	// A filter is compiled against the table's schema now; a column it uses that
	// later disappears ends the subscription (fanout.Invalid).
	var f *filter.Filter
	if where != "" || r.Select != "" || g.nothing {
		t, ok := h.tables.Table(r.Tables[0])
		if !ok {
			c.sendError(id, errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "unknown table %q", errors.Clip(r.Tables[0])))
			return
		}
		if g.nothing {
			f, err = filter.Nothing(t, r.Select, h.win.Head())
		} else {
			f, err = filter.Compile(t, where, r.Select, h.win.Head())
		}
		if err != nil {
			c.sendError(id, err)
			return
		}
	}
	c.mu.Lock()
	_, dup := c.subs[string(id)]
	c.mu.Unlock()
	if dup {
		c.sendError(id, errors.WithCode(errors.Conflict, errors.CodeDuplicateID, "subscription %s is already active", id))
		return
	}

	// Positions come from the database, not the window: the tailer may not have read
	// the newest commits yet, and a client that just read rows with seq H (REST) must
	// be able to subscribe with since=H.
	pos, err := c.position()
	if err != nil {
		h.opts.Logger.Warn("subscribe: read position", "conn", c.id, "err", err)
		c.sendError(id, errors.E(errors.Unavailable, "database unavailable; retry", err))
		return
	}
	since := r.Since
	if !r.HasSince {
		since = pos.Head // live from the current head
	}
	if since > pos.Head {
		pos = c.waitHead(since, pos) // scale-out hook: see fanout.HeadWaiter
	}
	if reason := protocol.ResetReason(h.src.StreamID(), r.Stream, pos, since); reason != "" {
		h.counts.count(&h.counts.resets, reason)
		c.queue(protocol.ResetMessageFor(id, reason, h.src.StreamID(), pos.Head))
		return
	}
	var cur *fanout.Cursor
	if f != nil {
		cur = h.win.NewFilteredCursor(f, since, func() { h.markReady(c) })
	} else {
		cur = h.win.NewCursor(r.Tables, since)
		h.loud.Add(1)
	}
	s := &subscription{id: id, key: string(id), cur: cur, tables: r.Tables, where: r.Where, grant: g}
	ack := protocol.SubscribedMessage(id, pos.Head)

	c.mu.Lock()
	// No other subscribe can have taken the id since the check above: requests are
	// handled one at a time on this goroutine.
	// The ack is queued before the subscription becomes visible to the writer, and the
	// writer drains replies first, so "subscribed" precedes the first changes frame.
	c.queueLocked(ack)
	c.subs[s.key] = s
	c.order = append(c.order, s)
	h.counts.subscriptions.Add(1)
	c.mu.Unlock()
	c.wake()
}

func (c *conn) unsubscribe(id json.RawMessage) {
	ack := protocol.UnsubscribedMessage(id)
	c.mu.Lock()
	s, ok := c.subs[string(id)]
	if ok {
		c.removeLocked(s)
		c.queueLocked(ack)
	}
	c.mu.Unlock()
	if !ok {
		c.sendError(id, errors.WithCode(errors.NotFound, errors.CodeUnknownSubscription, "no active subscription %s", id))
		return
	}
	c.wake()
}

func (c *conn) removeLocked(s *subscription) {
	c.hub.counts.subscriptions.Add(-1)
	if s.cur.Filter() == nil {
		c.hub.loud.Add(-1)
	}
	c.hub.win.CloseCursor(s.cur)
	delete(c.subs, s.key)
	for i, o := range c.order {
		if o == s {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

// sendError queues an error reply. Only the client-safe part of err is sent.
func (c *conn) sendError(id json.RawMessage, err error) {
	kind, code, msg := errors.Public(err)
	if kind == errors.Internal {
		c.hub.opts.Logger.Error("websocket request failed", "conn", c.id, "err", err)
	}
	c.hub.counts.count(&c.hub.counts.errors, string(code))
	c.queue(protocol.ErrorMessageFor(id, string(code), msg))
}

func (c *conn) queue(msg []byte) {
	c.mu.Lock()
	c.queueLocked(msg)
	c.mu.Unlock()
	c.wake()
}

// queueLocked queues a reply (a JSON message) to be written as a text frame.
func (c *conn) queueLocked(msg []byte) {
	if len(c.control) >= maxPendingControl {
		// The client sends requests without reading the replies. The read loop stops
		// handling messages once the close begins, so nothing more is queued.
		if !c.overflowed {
			c.overflowed = true
			c.endAsync(CloseFlood, websocket.StatusPolicyViolation, "too many unanswered requests")
		}
		return
	}
	c.control = append(c.control, textFrame(msg))
	c.interruptLocked()
}

// interruptLocked stops a history read that may be waiting for memory, so that what
// was just queued goes out first.
func (c *conn) interruptLocked() {
	if c.interrupt != nil {
		c.interrupt()
		c.interrupt = nil
	}
}

// pingFrame is the ping the server sends; its payload is not checked on the pong.
var pingFrame = []byte{0x89, 0}

// sendPing queues a ping and notes when it went out; the watchdog ends the connection
// if no pong follows within the ping timeout.
func (c *conn) sendPing(now int64) {
	c.pingSent.Store(now)
	c.mu.Lock()
	c.control = append(c.control, pingFrame)
	c.interruptLocked()
	c.mu.Unlock()
	c.wake()
}

// pong notes a pong: the peer is alive, and the next ping is due an interval later.
func (c *conn) pong() {
	c.pingSent.Store(0)
	c.nextPing.Store(time.Now().Add(c.hub.opts.PingInterval).UnixNano())
}

// wake makes sure a writer goroutine will look for work.
func (c *conn) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.writing {
		c.dirty = true
		return
	}
	c.startWriterLocked()
}

func (c *conn) startWriterLocked() {
	c.writing = true
	c.hub.wg.Add(1)
	go c.writeLoop()
}

// writeLoop writes replies and changes until there is nothing left, then exits.
// Replies always go first, so a subscription's ack precedes its first changes and an
// unsubscribe's ack follows its last.
func (c *conn) writeLoop() {
	defer c.hub.wg.Done()
	f := &frame{head: make([]byte, 0, frameHeaderMax+64)}
	defer f.free()
	for {
		c.mu.Lock()
		c.dirty = false
		if p := c.pending; p != nil {
			rest, locked, changes := (*p)[c.pendingOff:], c.pendingLocked, c.pendingChanges
			c.pending, c.pendingLocked, c.pendingChanges = nil, false, 0
			c.mu.Unlock()
			c.writeStart.Store(time.Now().UnixNano())
			err := c.fc.finishWrite(rest, locked)
			c.writeStart.Store(0)
			framePool.Put(p)
			if !c.wrote(err) {
				return
			}
			c.hub.counts.sent(len(rest), changes)
			continue
		}
		if len(c.control) > 0 {
			msgs := c.control
			c.control = nil
			c.mu.Unlock()
			for _, m := range msgs {
				if !c.write(m) {
					return
				}
				c.hub.counts.sent(len(m), 0)
			}
			continue
		}
		if ca := c.closeAfter; ca != nil {
			// Every reply queued before the close is written: close now.
			c.writing = false
			c.mu.Unlock()
			c.endAsync(ca.reason, ca.code, ca.text)
			return
		}
		sent, err := c.nextFrameLocked(f, false)
		if err != nil {
			c.mu.Unlock()
			c.hub.opts.Logger.Warn("websocket: read history; will retry", "conn", c.id, "err", err)
			// The database is busy or closed; try again shortly rather than lose data.
			select {
			case <-c.ctx.Done():
				c.finishWriting()
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !sent {
			if c.dirty || len(c.control) > 0 {
				c.mu.Unlock()
				continue
			}
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		var ok bool
		var n int
		if f.gathered() {
			ok = c.writeGathered(f.vec)
			for _, b := range f.vec {
				n += len(b)
			}
		} else {
			b := *f.buf
			n = len(b) - frameHeader(b, len(b)-frameHeaderMax)
			ok = c.write(b[len(b)-n:])
		}
		if ok {
			c.hub.counts.sent(n, len(f.batch))
		}
		f.done()
		if !ok {
			return
		}
	}
}

func (c *conn) finishWriting() {
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
}

// nextFrameLocked builds the next changes frame into buf, serving subscriptions
// round-robin so one busy subscription does not starve the others. It returns
// sent=false when every subscription is caught up or replies are waiting. A
// subscription that cannot go on — history it needs was pruned, or a table it names
// was dropped and it has everything up to the drop — is removed, and its reset or
// error queued as a reply. c.mu is held; it is released around history reads, which
// touch the database, and anything that changed meanwhile is looked at again. With
// windowOnly (the pump) it never reads history: it returns errNeedsHistory instead.
func (c *conn) nextFrameLocked(f *frame, windowOnly bool) (sent bool, err error) {
	win := c.hub.win
	if c.expiring.Load() || c.closeAfter != nil {
		return false, nil // the token expired: nothing more goes out under it
	}
	for range len(c.order) {
		if c.next >= len(c.order) {
			c.next = 0
		}
		s := c.order[c.next]
		c.next++
		if !c.regrantLocked(s) {
			return false, nil
		}
		maxBytes := 0 // the writer: a frame's worth, gathered
		if windowOnly {
			maxBytes = pumpFrameBytes
		}
		entries, st := win.Next(s.cur, f.batch[:0], maxBytes)
		if st == fanout.Behind {
			if windowOnly {
				return false, errNeedsHistory
			}
			ctx, cancel := context.WithCancel(c.ctx)
			c.interrupt = cancel
			c.mu.Unlock()
			var pos int64
			var lease fanout.Lease
			entries, pos, st, lease, err = win.History(ctx, s.cur, f.batch[:0])
			c.mu.Lock()
			c.interrupt = nil
			cancel()
			if err != nil && c.ctx.Err() == nil && ctx.Err() != nil {
				err = nil // interrupted for a reply: send it, then read again
			}
			if c.subs[s.key] != s || len(c.control) > 0 || err != nil || c.grantMovedLocked(s) {
				// Unsubscribed or replaced meanwhile, a reply (say, a new
				// subscription's ack) must go out first, or the rules or the token
				// changed during the read: start over.
				lease.Release()
				c.dirty = true
				return false, err
			}
			before := s.cur.Pos()
			s.cur.Advance(pos)
			f.batch = entries
			if len(entries) > 0 {
				f.gatherChanges(s.id, entries, lease)
				return true, nil
			}
			if pos > before && st == fanout.Ready {
				// Caught up to the window with nothing to send from history: what the
				// window holds for this subscription must go out now, not at the next
				// publish that concerns it (for a filtered one that may be never).
				c.dirty = true
			}
		}
		f.batch = entries
		switch st {
		case fanout.Pruned, fanout.Dropped, fanout.Invalid:
			c.endSubscriptionLocked(s, st)
			return false, nil
		}
		if len(entries) > 0 {
			if windowOnly {
				f.copyChanges(s.id, entries) // the pump: small, written without blocking
			} else {
				// The writer may block on the socket for as long as the write timeout:
				// it holds no copy meanwhile, only the window's shared entries.
				f.gatherChanges(s.id, entries, fanout.Lease{})
			}
			return true, nil
		}
	}
	return false, nil
}

// endSubscriptionLocked removes s and queues why it ended: a reset (pruned) when
// history it needs is gone, or error table_dropped for a table it names that was
// dropped.
func (c *conn) endSubscriptionLocked(s *subscription, st fanout.Status) {
	c.removeLocked(s)
	src := c.hub.src
	if st == fanout.Pruned {
		c.hub.counts.count(&c.hub.counts.resets, protocol.ResetPruned)
		c.queueLocked(protocol.ResetMessageFor(s.id, protocol.ResetPruned, src.StreamID(), c.hub.win.Head()))
		return
	}
	if st == fanout.Invalid {
		_, code, msg := errors.Public(s.cur.Filter().StaleError())
		c.hub.counts.count(&c.hub.counts.errors, string(code))
		c.queueLocked(protocol.ErrorMessageFor(s.id, string(code), msg))
		return
	}
	c.hub.counts.count(&c.hub.counts.errors, string(errors.CodeTableDropped))
	c.queueLocked(protocol.ErrorMessageFor(s.id, string(errors.CodeTableDropped),
		fmt.Sprintf("table %q was dropped; this subscription has every change it made", errors.Clip(s.cur.DroppedTable()))))
}

var errNeedsHistory = errors.New("subscription is behind the window")

// grantFor is what acc's rules allow a subscription to tables with the client's where
// (rules.Access.ReadWhere): a zero grant when the rules do not apply (no
// authentication, or an admin), a forbidden error when they refuse it. A table with
// a row rule must be subscribed alone: its rule becomes the subscription's filter.
func grantFor(acc *rules.Access, tables []string, where string) (grant, error) {
	if acc.Admin() {
		// No rule applies, but the access is remembered: a token replaced by one
		// that is no admin must be checked again.
		return grant{acc: acc}, nil
	}
	g := grant{set: acc.InForce(), acc: acc}
	switch {
	case len(tables) == 1:
		combined, nothing, err := acc.ReadWhere(tables[0], where)
		if err != nil {
			return grant{}, err
		}
		g.where, g.nothing = combined, nothing
	case len(tables) == 0:
		if !acc.ReadsUnrestricted() {
			return grant{}, errors.WithCode(errors.Forbidden, errors.CodeForbidden,
				"the access rules restrict what this token reads: subscribe to the tables by name")
		}
	default:
		for _, t := range tables {
			d := acc.Read(t)
			if !d.Allowed {
				return grant{}, errors.WithCode(errors.Forbidden, errors.CodeForbidden, "the access rules do not allow reading table %q", errors.Clip(t))
			}
			if !d.AllRows() {
				return grant{}, errors.WithCode(errors.Forbidden, errors.CodeForbidden,
					"table %q is read under a row rule: subscribe to it on its own", errors.Clip(t))
			}
		}
	}
	return g, nil
}

// grantMovedLocked reports whether the rules were reloaded or the token replaced
// since s was granted.
func (c *conn) grantMovedLocked(s *subscription) bool {
	return s.grant.acc != c.acc || (s.grant.set != nil && s.grant.set != c.acc.InForce())
}

// regrantLocked checks s's grant again if it moved; false (s ended with forbidden)
// when it no longer holds as given. Nothing more goes out for s until it has.
func (c *conn) regrantLocked(s *subscription) bool {
	if !c.grantMovedLocked(s) {
		return true
	}
	g, err := grantFor(c.acc, s.tables, s.where)
	if err != nil || g.where != s.grant.where || g.nothing != s.grant.nothing || (g.set == nil) != (s.grant.set == nil) {
		c.endForbiddenLocked(s)
		return false
	}
	s.grant = g
	return true
}

// endForbiddenLocked ends s because the access rules no longer grant what it was
// granted (a reload, or a replaced token): error forbidden, its id echoed. A client
// that still may read subscribes again and gets what the rules now allow.
func (c *conn) endForbiddenLocked(s *subscription) {
	c.removeLocked(s)
	c.hub.counts.count(&c.hub.counts.errors, string(errors.CodeForbidden))
	c.queueLocked(protocol.ErrorMessageFor(s.id, string(errors.CodeForbidden),
		"the access rules changed and no longer allow this subscription as it was granted; subscribe again"))
}

// expire tells the client its token expired and closes with 4001 once that is
// written, unless an auth message replaced the token first (then expires moved on
// and the watchdog never calls this).
func (c *conn) expire() {
	c.mu.Lock()
	c.queueLocked(protocol.ErrorMessageFor(nil, string(errors.CodeTokenExpired),
		"the token expired; reconnect with a new one (send auth before expiry to keep the connection)"))
	c.closeAfter = &closeReq{CloseTokenExpired, StatusTokenExpired, "token expired"}
	c.mu.Unlock()
	c.hub.counts.count(&c.hub.counts.errors, string(errors.CodeTokenExpired))
	c.wake()
}

// StatusTokenExpired is the close code for a connection whose token expired: an
// application code (4000–4999), so clients can tell it from a policy close and
// reconnect with a fresh token.
const StatusTokenExpired websocket.StatusCode = 4001

// auth replaces the connection's token in place: verified, for the same subject,
// answered authed with its expiry.
func (c *conn) auth(token string) {
	c.mu.Lock()
	acc := c.acc
	c.mu.Unlock()
	verify := c.hub.opts.Verify
	if verify == nil || acc == nil || acc.ID == nil {
		c.sendError(nil, errors.E(errors.Invalid, "this server does not use tokens"))
		return
	}
	if c.expiring.Load() {
		c.sendError(nil, errors.WithCode(errors.Unauthorized, errors.CodeTokenExpired, "the token already expired"))
		return
	}
	id, err := verify(token)
	if err != nil {
		c.sendError(nil, err)
		return
	}
	if id.Subject != acc.ID.Subject {
		c.sendError(nil, errors.WithCode(errors.Forbidden, errors.CodeForbidden, "the new token is for another subject"))
		return
	}
	var exp int64
	if !id.Expires.IsZero() {
		exp = id.Expires.Unix()
	}
	c.mu.Lock()
	c.acc = acc.With(id)
	var expires int64 // 0: never (one store: the watchdog reads it without the lock)
	if !id.Expires.IsZero() {
		expires = id.Expires.UnixNano()
	}
	c.expires.Store(expires)
	c.queueLocked(protocol.AuthedMessage(exp))
	c.mu.Unlock()
	c.wake()
}

// pumpFrameBytes bounds a frame the pump builds. The pump copies what it writes, and
// hands a frame the socket did not take whole to the connection's writer; live frames
// are small, and a subscriber with more to catch up on within the window is served
// by its writer, which gathers instead of copying.
const pumpFrameBytes = 16 << 10

// framePool holds frame buffers; they start small (most live frames carry a few
// changes) and grow to the frames they build.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// write sends one complete frame (see frameHeader). On failure the connection is
// closed and the writer stops.
//
// The write timeout is enforced by the hub's watchdog, which closes a connection
// whose write has been blocked longer than WriteTimeout (a slow consumer). A context
// or socket deadline per frame would cost timers per frame: a context's timer and the
// library's AfterFunc were a seventh of the fan-out's CPU, socket deadlines still 7 %.
func (c *conn) write(frame []byte) bool {
	c.writeStart.Store(time.Now().UnixNano())
	err := c.fc.writeData(frame)
	c.writeStart.Store(0)
	return c.wrote(err)
}

// writeGathered writes a gathered frame (see frame) as write does.
func (c *conn) writeGathered(vec net.Buffers) bool {
	c.writeStart.Store(time.Now().UnixNano())
	err := c.fc.writeGathered(vec)
	c.writeStart.Store(0)
	return c.wrote(err)
}

// wrote ends the connection and the writer if a write failed.
func (c *conn) wrote(err error) bool {
	if err == nil {
		c.lastWrite.Store(c.hub.clock.Load())
	}
	if err != nil {
		c.finishWriting()
		c.end(CloseWriteFailed, 0, err.Error())
		return false
	}
	return true
}

// goAway closes the connection politely for shutdown.
func (c *conn) goAway() {
	c.hub.wg.Add(1) // the conn's own goroutine still holds the count, so no race with Wait
	go func() {
		defer c.hub.wg.Done()
		c.end(CloseShutdown, websocket.StatusGoingAway, "server shutting down")
	}()
}
