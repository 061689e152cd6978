package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
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
	// Liveness, driven by the hub's watchdog (unix ns): when the next ping is due, and
	// when the unanswered ping was sent (0: none outstanding).
	nextPing atomic.Int64
	pingSent atomic.Int64
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
	pending       *[]byte
	pendingOff    int
	pendingLocked bool
	closed        bool
	overflowed    bool // too many unanswered requests: closing
}

type subscription struct {
	id     json.RawMessage
	key    string
	tables *tableFilter // nil: every table
	cursor int64        // seq of the last change delivered or skipped
	since  int64        // cursor at the start
	// Table drops (see dropLimit): how many of the hub's drops were known when the
	// subscription started (dropBase) and when limit was last computed (dropsSeen);
	// limit is the seq where a dropped table it names ends (MaxInt64: none), and
	// dropTable that table.
	dropBase, dropsSeen int32
	limit               int64
	dropTable           string
}

// ServeHTTP upgrades GET /ws and hands the connection to its own goroutine, then
// returns, so net/http releases its per-connection state (buffers, request) while
// the WebSocket lives on.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &conn{hub: h, id: h.connIDs.Add(1), subs: map[string]*subscription{}, endDone: make(chan struct{})}
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
	hello, _ := json.Marshal(models.Hello{Type: models.TypeHello, Version: models.ProtocolVersion,
		Stream: h.src.StreamID(), Head: pos.Head, Oldest: pos.Oldest})
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

func (c *conn) markClosed() {
	c.mu.Lock()
	c.closed = true
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
		c.handle(data)
	}
}

func (c *conn) handle(data []byte) {
	var m models.ClientMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			c.sendError(nil, errors.Errorf(errors.Invalid, "field %q has the wrong type", te.Field))
		case errors.As(err, &te):
			c.sendError(nil, errors.E(errors.Invalid, "a message must be a JSON object"))
		default:
			c.sendError(nil, errors.E(errors.Invalid, "malformed JSON message"))
		}
		return
	}
	id, idErr := parseID(m.ID)
	switch m.Type {
	case models.TypeSubscribe:
		if idErr != nil {
			c.sendError(nil, idErr)
			return
		}
		c.subscribe(id, &m)
	case models.TypeUnsubscribe:
		if idErr != nil {
			c.sendError(nil, idErr)
			return
		}
		c.unsubscribe(id)
	case "":
		c.sendError(id, errors.E(errors.Invalid, `missing "type"`))
	default:
		c.sendError(id, errors.Errorf(errors.Invalid, "unknown message type %q", m.Type))
	}
}

// Bounds on what one request may ask the server to hold or echo.
const (
	maxIDBytes     = 256  // a subscription id is echoed on every reply: keep it short
	maxTableNames  = 1000 // tables in one subscription
	maxEchoedBytes = 128  // of a client-supplied name quoted back in an error message
)

// parseID accepts a JSON string or an integer and returns its compact JSON text.
// Numbers must be plain integers: anything else (1.5, 1e400) has no single canonical
// text to echo back.
func parseID(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.E(errors.Invalid, `missing "id"`)
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, errors.E(errors.Invalid, `"id" must be a string or an integer`)
		}
		out, _ := json.Marshal(s) // canonical form, so "a" and "\u0061" are one id
		if len(out) > maxIDBytes {
			return nil, errors.Errorf(errors.Invalid, `"id" is longer than %d bytes`, maxIDBytes)
		}
		return out, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if len(raw) > maxIDBytes {
			return nil, errors.Errorf(errors.Invalid, `"id" is longer than %d bytes`, maxIDBytes)
		}
		digits := raw
		if digits[0] == '-' {
			digits = digits[1:]
		}
		if len(digits) == 0 || bytes.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return nil, errors.E(errors.Invalid, `"id" must be a string or an integer`)
		}
		return raw, nil
	}
	return nil, errors.E(errors.Invalid, `"id" must be a string or an integer`)
}

// echo shortens a client-supplied name for an error message: a message must not
// carry back whatever a client sent.
func echo(s string) string {
	if len(s) <= maxEchoedBytes {
		return s
	}
	cut := maxEchoedBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func (c *conn) subscribe(id json.RawMessage, m *models.ClientMessage) {
	h := c.hub
	var tables []string
	if len(m.Tables) > 0 && string(m.Tables) != "null" {
		if err := json.Unmarshal(m.Tables, &tables); err != nil {
			c.sendError(id, errors.E(errors.Invalid, `"tables" must be an array of table names`))
			return
		}
		if len(tables) > maxTableNames {
			c.sendError(id, errors.Errorf(errors.Invalid, `"tables" names more than %d tables`, maxTableNames))
			return
		}
	}
	for _, t := range tables {
		if !h.src.Tracked(t) {
			c.sendError(id, errors.WithCode(errors.NotFound, "unknown_table", "unknown table %q", echo(t)))
			return
		}
	}
	filter := newTableFilter(tables)
	var stream string
	if len(m.Stream) > 0 && string(m.Stream) != "null" {
		if err := json.Unmarshal(m.Stream, &stream); err != nil {
			c.sendError(id, errors.E(errors.Invalid, `"stream" must be a string`))
			return
		}
	}
	hasSince := len(m.Since) > 0 && string(m.Since) != "null"
	var since int64
	if hasSince {
		v, err := strconv.ParseInt(string(bytes.TrimSpace(m.Since)), 10, 64)
		if err != nil || v < 0 {
			c.sendError(id, errors.E(errors.Invalid, `"since" must be an integer >= 0`))
			return
		}
		since = v
	}

	c.mu.Lock()
	_, dup := c.subs[string(id)]
	c.mu.Unlock()
	if dup {
		c.sendError(id, errors.WithCode(errors.Conflict, "duplicate_id", "subscription %s is already active", id))
		return
	}

	// Positions come from the database, not the window: the tailer may not have read
	// the newest commits yet, and a client that just read rows with seq H (REST) must
	// be able to subscribe with since=H.
	pos, err := c.position()
	if err != nil {
		h.opts.Logger.Warn("subscribe: read position", "err", err)
		c.sendError(id, errors.E(errors.Unavailable, "database unavailable; retry", err))
		return
	}
	if !hasSince {
		since = pos.Head // live from the current head
	}
	if reason := models.ResetReason(h.src.StreamID(), stream, pos, since); reason != "" {
		c.sendReset(id, reason, pos.Head)
		return
	}
	cursor := since
	n := h.dropsN.Load()
	s := &subscription{id: id, key: string(id), tables: filter, cursor: cursor, since: cursor,
		dropBase: n, dropsSeen: -1, limit: math.MaxInt64}
	ack, _ := json.Marshal(models.Subscribed{Type: models.TypeSubscribed, ID: id, Head: pos.Head})

	c.mu.Lock()
	// No other subscribe can have taken the id since the check above: requests are
	// handled one at a time on this goroutine.
	// The ack is queued before the subscription becomes visible to the writer, and the
	// writer drains replies first, so "subscribed" precedes the first changes frame.
	c.queueLocked(ack)
	c.subs[s.key] = s
	c.order = append(c.order, s)
	c.mu.Unlock()
	c.wake()
}

func (c *conn) unsubscribe(id json.RawMessage) {
	ack, _ := json.Marshal(models.Unsubscribed{Type: models.TypeUnsubscribed, ID: id})
	c.mu.Lock()
	s, ok := c.subs[string(id)]
	if ok {
		c.removeLocked(s)
		c.queueLocked(ack)
	}
	c.mu.Unlock()
	if !ok {
		c.sendError(id, errors.WithCode(errors.NotFound, "unknown_subscription", "no active subscription %s", id))
		return
	}
	c.wake()
}

func (c *conn) removeLocked(s *subscription) {
	delete(c.subs, s.key)
	for i, o := range c.order {
		if o == s {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

func (c *conn) sendReset(id json.RawMessage, reason string, head int64) {
	msg, _ := json.Marshal(models.Reset{Type: models.TypeReset, ID: id, Reason: reason, Stream: c.hub.src.StreamID(), Head: head})
	c.queue(msg)
}

// sendError queues an error reply. Only the client-safe part of err is sent.
func (c *conn) sendError(id json.RawMessage, err error) {
	_, code, msg := errors.Public(err)
	if errors.KindOf(err) == errors.Internal {
		c.hub.opts.Logger.Error("websocket request failed", "err", err)
	}
	if id == nil {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(models.ErrorMessage{Type: models.TypeError, ID: id, Code: code, Message: msg})
	c.queue(b)
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
}

// pingFrame is the ping the server sends; its payload is not checked on the pong.
var pingFrame = []byte{0x89, 0}

// sendPing queues a ping and notes when it went out; the watchdog ends the connection
// if no pong follows within the ping timeout.
func (c *conn) sendPing(now int64) {
	c.pingSent.Store(now)
	c.mu.Lock()
	c.control = append(c.control, pingFrame)
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
	var buf *[]byte // taken from the pool only once there is a frame to build
	defer func() {
		if buf != nil {
			framePool.Put(buf)
		}
	}()
	var batch []models.Encoded
	for {
		c.mu.Lock()
		c.dirty = false
		if p := c.pending; p != nil {
			rest, locked := (*p)[c.pendingOff:], c.pendingLocked
			c.pending, c.pendingLocked = nil, false
			c.mu.Unlock()
			c.writeStart.Store(time.Now().UnixNano())
			err := c.fc.finishWrite(rest, locked)
			c.writeStart.Store(0)
			framePool.Put(p)
			if err != nil {
				c.finishWriting()
				c.end(CloseWriteFailed, 0, err.Error())
				return
			}
			continue
		}
		if len(c.control) > 0 {
			msgs := c.control
			c.control = nil
			c.mu.Unlock()
			for _, f := range msgs {
				if !c.write(f) {
					return
				}
			}
			continue
		}
		if buf == nil {
			buf = framePool.Get().(*[]byte)
		}
		sent, err := c.nextFrameLocked(&batch, buf, false)
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
		frame := *buf
		if !c.write(frame[frameHeader(frame, len(frame)-frameHeaderMax):]) {
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
func (c *conn) nextFrameLocked(batch *[]models.Encoded, buf *[]byte, windowOnly bool) (sent bool, err error) {
	h := c.hub
	for range len(c.order) {
		if c.next >= len(c.order) {
			c.next = 0
		}
		s := c.order[c.next]
		c.next++
		for {
			limit := c.dropLimit(s)
			if s.cursor >= limit {
				c.endSubscriptionLocked(s, nil)
				return false, nil
			}
			*batch = (*batch)[:0]
			from := s.cursor
			entries, cursor, res := h.read(*batch, from, s.tables, limit)
			if res == readHistory && windowOnly {
				return false, errNeedsHistory
			}
			if res == readHistory {
				c.mu.Unlock()
				entries, cursor, err = c.readHistory(from, s.tables, limit)
				c.mu.Lock()
				if c.subs[s.key] != s || len(c.control) > 0 {
					// Unsubscribed or replaced meanwhile, or a reply (say, a new
					// subscription's ack) must go out first: start over.
					return false, nil
				}
				if err == errPruned {
					c.endSubscriptionLocked(s, err)
					return false, nil
				}
				if err != nil {
					return false, err
				}
			}
			s.cursor = cursor
			*batch = entries
			if len(entries) > 0 {
				*buf = appendFrame((*buf)[:frameHeaderMax], s.id, entries)
				return true, nil
			}
			if cursor == from {
				break // caught up
			}
			// Skipped changes of other tables without finding one: keep going.
		}
	}
	return false, nil
}

// endSubscriptionLocked removes s and queues why it ended: a reset (pruned) when
// history it needs is gone, else error table_dropped for the table it names that
// was dropped.
func (c *conn) endSubscriptionLocked(s *subscription, why error) {
	c.removeLocked(s)
	var msg []byte
	if why == errPruned {
		msg, _ = json.Marshal(models.Reset{Type: models.TypeReset, ID: s.id, Reason: models.ResetPruned,
			Stream: c.hub.src.StreamID(), Head: c.hub.Head()})
	} else {
		msg, _ = json.Marshal(models.ErrorMessage{Type: models.TypeError, ID: s.id, Code: codeTableDropped,
			Message: fmt.Sprintf("table %q was dropped; this subscription has every change it made", echo(s.dropTable))})
	}
	c.queueLocked(msg)
}

// codeTableDropped ends a subscription whose table was dropped.
const codeTableDropped = "table_dropped"

// dropLimit is the last seq s may read: the seq at which a table it names was
// dropped (its changes end there), or math.MaxInt64. Recomputed only when the hub
// learns of a drop.
func (c *conn) dropLimit(s *subscription) int64 {
	if s.tables == nil {
		return math.MaxInt64 // every table: drops end nothing
	}
	if n := c.hub.dropsN.Load(); n != s.dropsSeen {
		s.dropsSeen = n
		s.limit, s.dropTable = c.hub.dropLimit(s)
	}
	return s.limit
}

var (
	errPruned       = errors.New("changes pruned")
	errNeedsHistory = errors.New("subscription is behind the window")
)

// readHistory reads changes after cursor from the Source for a subscriber that is
// behind the window. It returns as soon as it has matching changes, or once cursor
// reaches the window, where the window serves the rest without touching SQLite.
func (c *conn) readHistory(cursor int64, tables *tableFilter, limit int64) ([]models.Encoded, int64, error) {
	h := c.hub
	for {
		got, err := h.src.ReadChanges(c.ctx, cursor, h.opts.FrameChanges, h.opts.FrameBytes)
		gap := errors.Is(err, models.ErrGap)
		if err != nil && !gap {
			return nil, cursor, err
		}
		if len(got) == 0 {
			// Everything after cursor up to the window should be in the changelog; a
			// hole means retention (or someone by hand, or a restore) removed it.
			if !gap && cursor >= h.Head() {
				return nil, cursor, nil
			}
			return nil, cursor, errPruned
		}
		if i := sort.Search(len(got), func(i int) bool { return got[i].Seq > limit }); i < len(got) {
			got, gap = got[:i], true // a drop ends the subscription there: as good as a gap
			if len(got) == 0 {
				return nil, limit, nil
			}
		}
		out := got[:0]
		for _, e := range got {
			if tables.match(e.Table) {
				out = append(out, e)
			}
		}
		cursor = got[len(got)-1].Seq
		// At a gap, what came before it goes out first; the next read finds the gap
		// at once and resets the subscription.
		if len(out) > 0 || gap || h.inWindow(cursor) {
			return out, cursor, nil
		}
	}
}

func appendFrame(dst []byte, id json.RawMessage, entries []models.Encoded) []byte {
	n := len(`{"type":"changes","id":,"changes":[]}`) + len(id) + len(entries)
	for _, e := range entries {
		n += len(e.JSON)
	}
	dst = slices.Grow(dst, n) // one allocation at most, however large the frame
	dst = append(dst, `{"type":"changes","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"changes":[`...)
	for i, e := range entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e.JSON...)
	}
	return append(dst, "]}"...)
}

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
