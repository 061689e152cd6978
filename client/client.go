// Package client is the Go client for the sqlws change feed: it speaks protocol v1
// (docs/protocol.md) over one WebSocket and is the twin of the JavaScript client the
// server serves at /sqlws.js.
//
// Dial connects and reads the server's hello. Subscribe follows tables from a seq;
// Next returns the changes that have arrived, in seq order. Behind that API the
// client keeps the feed whole: when the connection drops it reconnects with
// exponential backoff and full jitter and resumes every subscription after the last
// seq it received, against the stream id of the first hello, so a consumer sees
// every change exactly once — no gap, no duplicate — across server restarts. Records
// at or below a subscription's last seq are dropped, whatever the server sends.
//
// What the client cannot repair it reports: a *ResetError when the server cannot
// continue a subscription (retention pruned what it still needed, a restored
// backup, another database), after which the caller reloads its state and
// subscribes again; a *ServerError when a subscription is refused (unknown_table,
// …). Connection trouble is never an error of Next: it is visible through State and
// Options.OnStatus, and ends when the server is back.
//
// Flow control: each subscription buffers at most Options.Buffer changes. When a
// consumer falls that far behind, the client stops reading the socket rather than
// grow without bound; the server then holds the data (it disconnects a consumer that
// stalls past its write timeout, and the client resumes with since once the consumer
// catches up). One socket carries every subscription of a Client, so a stalled
// consumer stalls its siblings: give independent consumers their own Client.
//
// Changes are scanned, not decoded: a Change carries Seq, Table, Op and the record's
// raw JSON, and Decode decodes the rest on demand. This keeps the cost per change to
// a fraction of a microsecond and no allocation in the steady state.
package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/protocol"
)

// Options configure a Client. The zero value (or nil) gives the defaults.
type Options struct {
	// HTTPHeader is sent with every handshake, for example Authorization for a
	// server behind an authenticating proxy. Default: none.
	HTTPHeader http.Header

	// HTTPClient performs the handshakes. Default: a client without keep-alives
	// (every WebSocket needs its own TCP connection anyway) that honours the
	// proxy environment variables. A client with a Timeout bounds each handshake.
	HTTPClient *http.Client

	// MinDelay is the backoff base and MaxDelay its cap: after the n-th consecutive
	// failure the client waits a random time in [0, min(MaxDelay, MinDelay·2^(n-1))).
	// Defaults: 250 ms and 30 s, as /sqlws.js. Smaller values bring a client back
	// sooner but let a fleet of clients hammer a server that is starting up.
	MinDelay, MaxDelay time.Duration

	// OpenTimeout bounds one connection attempt, handshake and hello. Default: 10 s.
	// Too short, and a loaded server is never reached.
	OpenTimeout time.Duration

	// RetryDelay is how long the client waits before asking again for a
	// subscription the server refused as unavailable (a busy database). Default:
	// 1 s.
	RetryDelay time.Duration

	// PingInterval is how often the client pings the server to detect a connection
	// that died silently (a half-open TCP connection after a network change); a
	// ping unanswered for min(PingInterval, 15 s) drops the connection and the
	// client reconnects. Default: 30 s; negative disables pings, and a dead
	// connection is then noticed only when TCP gives up, which may take many
	// minutes. A consumer that does not call Next for longer than that also stops
	// the pongs (the client is not reading), which ends the connection the same way;
	// the server would end it too.
	PingInterval time.Duration

	// Buffer is how many changes each subscription holds for Next before the client
	// stops reading the socket. Default: 4096. A frame is never split, so a
	// subscription may hold up to one frame (1,000 changes by default) more. Larger
	// values absorb longer consumer pauses at the cost of memory (a change is its
	// JSON plus 64 bytes), multiplied by the number of subscriptions.
	Buffer int

	// ReadLimit is the largest frame accepted, in bytes. Default: 64 MiB. A frame
	// holds at least one whole record, so a row larger than this (a big BLOB) can
	// never be received: the connection fails and is retried with backoff, and
	// OnStatus reports the error. Raise it if your rows are that large.
	ReadLimit int64

	// Stream is the stream id subscriptions resume against. Default: the stream of
	// the first hello. Set it when resuming a seq persisted from an earlier run, so
	// that a different or restored database is answered with a reset instead of
	// being silently mistaken for the one the seq came from.
	Stream string

	// OnStatus is called on every change of the connection state, starting with the
	// StateOpen of the connection Dial made. Calls come one at a time from the
	// client's goroutine, which waits for them: return quickly, and do not call
	// Close from it (start a goroutine to).
	OnStatus func(Status)
}

// Defaults, as documented on Options.
const (
	defaultMinDelay     = 250 * time.Millisecond
	defaultMaxDelay     = 30 * time.Second
	defaultOpenTimeout  = 10 * time.Second
	defaultRetryDelay   = time.Second
	defaultPingInterval = 30 * time.Second
	defaultBuffer       = 4096
	defaultReadLimit    = 64 << 20
	maxPingTimeout      = 15 * time.Second
	// writeTimeout bounds one request write: requests are small, so a write that
	// takes this long means the connection is gone.
	writeTimeout = 10 * time.Second
	// stableAfter is how long a connection must have lasted for its loss to count
	// as the first failure again: a server that says hello and then drops every
	// client must not get a reconnect storm.
	stableAfter = 5 * time.Second
)

var defaultHTTPClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// No idle connections (and their goroutines) outliving a failed handshake, and
	// HTTP/1.1 only: a WebSocket upgrade cannot ride HTTP/2.
	t.DisableKeepAlives = true
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return &http.Client{Transport: t}
}()

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.HTTPClient == nil {
		r.HTTPClient = defaultHTTPClient
	}
	if r.MinDelay <= 0 {
		r.MinDelay = defaultMinDelay
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = defaultMaxDelay
	}
	r.MaxDelay = max(r.MaxDelay, r.MinDelay)
	if r.OpenTimeout <= 0 {
		r.OpenTimeout = defaultOpenTimeout
	}
	if r.RetryDelay <= 0 {
		r.RetryDelay = defaultRetryDelay
	}
	if r.PingInterval == 0 {
		r.PingInterval = defaultPingInterval
	}
	if r.Buffer <= 0 {
		r.Buffer = defaultBuffer
	}
	if r.ReadLimit <= 0 {
		r.ReadLimit = defaultReadLimit
	}
	return r
}

// State is the state of a Client's connection.
type State int

// Connection states.
const (
	// StateOpen: connected, hello received, subscriptions (re)sent.
	StateOpen State = iota + 1
	// StateReconnecting: the connection ended or an attempt failed; the client is
	// waiting out its backoff or trying again.
	StateReconnecting
	// StateClosed: Close was called. Nothing reconnects.
	StateClosed
)

// String returns the state's name, as /sqlws.js spells it.
func (s State) String() string {
	switch s {
	case StateOpen:
		return "open"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Status describes a change of connection state, for Options.OnStatus.
type Status struct {
	State State
	// Attempt counts consecutive failed attempts; 0 while a connection is open.
	Attempt int
	// Delay is, in StateReconnecting, the wait before the next attempt.
	Delay time.Duration
	// Err is, in StateReconnecting, why the connection ended or the last attempt
	// failed.
	Err error
	// Code is the close code of the connection that ended (1001: the server shut
	// down; 1008: ping timeout; …), or -1 if it ended without a close frame (a
	// crashed server, a network failure, or the server dropping a slow consumer).
	Code websocket.StatusCode
	// Hello is, in StateOpen, the server's hello on the new connection.
	Hello protocol.Hello
}

// Client is a connection to a sqlws server that reconnects by itself. Its methods
// are safe for concurrent use.
type Client struct {
	url  string
	opts Options

	// ctx is cancelled by Close; it ends a dial or a backoff wait in progress.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned

	// The reader's scratch space; only run's goroutine touches them.
	in      interner
	scratch []Change

	mu      sync.Mutex
	state   State
	attempt int
	hello   protocol.Hello
	stream  string
	conn    *conn                    // the open connection, nil between connections
	subs    map[string]*Subscription // active subscriptions by id key (the id's JSON)
	unsubs  map[string]chan struct{} // unsubscribes awaiting the server's reply
	nextID  uint64
	closed  bool
}

// Dial connects to the sqlws WebSocket at url and reads the server's hello. url is
// a ws:// or wss:// URL, or an http(s):// one (see WebSocketURL). ctx bounds this
// first connection only.
//
// Dial does not retry: a wrong URL, a refused handshake or an unreachable server is
// reported at once, as are servers that speak another protocol version. Once Dial
// has returned a Client, the client reconnects by itself until Close.
func Dial(ctx context.Context, url string, opts *Options) (*Client, error) {
	u, err := WebSocketURL(url)
	if err != nil {
		return nil, err
	}
	c := &Client{
		url:    u,
		opts:   opts.withDefaults(),
		done:   make(chan struct{}),
		subs:   make(map[string]*Subscription),
		unsubs: make(map[string]chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cn, hello, err := c.dialConn(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.state, c.hello, c.conn = StateOpen, hello, cn
	c.stream = c.opts.Stream
	if c.stream == "" {
		c.stream = hello.Stream
	}
	go c.run(cn)
	return c, nil
}

// Hello returns the hello of the current (or, between connections, the last)
// connection: the server's stream id, head and oldest retained seq.
func (c *Client) Hello() protocol.Hello {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello
}

// Stream returns the stream id new subscriptions resume against: Options.Stream, or
// the first hello's, replaced by the server's after a reset.
func (c *Client) Stream() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream
}

// State returns the connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Close ends every subscription (their Next returns ErrClosed), closes the
// connection with a close handshake (code 1000) and waits until every goroutine the
// client started has returned. It waits at most about 10 s for an unresponsive
// server (the handshake's bound), then drops the connection. Calling it again
// waits for the first call and returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	c.state = StateClosed
	subs := make([]*Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	clear(c.subs)
	c.settleUnsubsLocked()
	cn := c.conn
	c.mu.Unlock()

	for _, s := range subs {
		s.finish(ErrClosed, true)
	}
	var err error
	if cn != nil {
		err = cn.ws.Close(websocket.StatusNormalClosure, "client closed")
		if errors.Is(err, net.ErrClosed) || websocket.CloseStatus(err) != -1 {
			err = nil // it was already gone, or the server closed first
		}
	}
	c.cancel()
	<-c.done
	c.emit(Status{State: StateClosed, Code: -1})
	return err
}

func (c *Client) emit(s Status) {
	if c.opts.OnStatus != nil {
		c.opts.OnStatus(s)
	}
}

// conn is one WebSocket connection. Its reader is the client's run goroutine; its
// writer is a goroutine of its own, so that requests never wait for the reader and
// the reader never waits for a request (a thousand re-subscribes after a reconnect
// go out while the replies come in).
type conn struct {
	ws     *websocket.Conn
	ctx    context.Context // cancelled when the connection is shut down
	cancel context.CancelFunc
	opened time.Time
	wake   chan struct{} // capacity 1: there is something to write
	wdone  chan struct{} // closed when the writer has returned

	mu    sync.Mutex
	out   [][]byte  // requests to write, in order
	later []delayed // requests to write after a delay
}

// delayed is a subscribe to send again later (after an unavailable reply), if the
// subscription is still waiting for its ack on the same connection.
type delayed struct {
	due time.Time
	sub *Subscription
	msg []byte
}

// dialConn makes one connection attempt: handshake, then hello, within
// OpenTimeout and ctx. It starts the connection's writer.
func (c *Client) dialConn(ctx context.Context) (*conn, protocol.Hello, error) {
	var hello protocol.Hello
	dctx, cancel := context.WithTimeout(ctx, c.opts.OpenTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, c.url, &websocket.DialOptions{
		HTTPClient: c.opts.HTTPClient,
		HTTPHeader: c.opts.HTTPHeader,
	})
	if err != nil {
		return nil, hello, fmt.Errorf("sqlws client: dial %s: %w", c.url, err)
	}
	ws.SetReadLimit(c.opts.ReadLimit)
	typ, data, err := ws.Read(dctx)
	if err != nil {
		ws.CloseNow()
		return nil, hello, fmt.Errorf("sqlws client: waiting for hello from %s: %w", c.url, err)
	}
	if typ != websocket.MessageText || json.Unmarshal(data, &hello) != nil || hello.Type != protocol.TypeHello {
		ws.Close(websocket.StatusProtocolError, "expected hello")
		return nil, hello, fmt.Errorf("sqlws client: %s: first frame is not a hello: %.200q", c.url, data)
	}
	if hello.Version != protocol.Version {
		ws.Close(websocket.StatusProtocolError, "unsupported protocol version")
		return nil, hello, fmt.Errorf("sqlws client: %s speaks protocol version %d; this client speaks %d",
			c.url, hello.Version, protocol.Version)
	}
	cn := &conn{ws: ws, opened: time.Now(), wake: make(chan struct{}, 1), wdone: make(chan struct{})}
	cn.ctx, cn.cancel = context.WithCancel(c.ctx)
	go c.writeLoop(cn)
	return cn, hello, nil
}

// shutdown ends the connection and waits for its writer.
func (cn *conn) shutdown() {
	cn.cancel()
	cn.ws.CloseNow()
	<-cn.wdone
}

// send queues a request.
func (cn *conn) send(msg []byte) {
	cn.mu.Lock()
	cn.out = append(cn.out, msg)
	cn.mu.Unlock()
	cn.poke()
}

func (cn *conn) sendLater(d delayed) {
	cn.mu.Lock()
	cn.later = append(cn.later, d)
	cn.mu.Unlock()
	cn.poke()
}

func (cn *conn) poke() {
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes cn's requests and pings the server until cn is shut down.
func (c *Client) writeLoop(cn *conn) {
	defer close(cn.wdone)
	var ping <-chan time.Time
	if c.opts.PingInterval > 0 {
		t := time.NewTicker(c.opts.PingInterval)
		defer t.Stop()
		ping = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		cn.mu.Lock()
		msgs := cn.out
		cn.out = nil
		var due []delayed
		now := time.Now()
		next := time.Duration(-1)
		keep := cn.later[:0]
		for _, d := range cn.later {
			if !d.due.After(now) {
				due = append(due, d)
				continue
			}
			keep = append(keep, d)
			if w := d.due.Sub(now); next < 0 || w < next {
				next = w
			}
		}
		clear(cn.later[len(keep):])
		cn.later = keep
		cn.mu.Unlock()
		for _, d := range due {
			if c.awaitingAck(d.sub, cn) {
				msgs = append(msgs, d.msg)
			}
		}
		for _, m := range msgs {
			wctx, cancel := context.WithTimeout(cn.ctx, writeTimeout)
			err := cn.ws.Write(wctx, websocket.MessageText, m)
			cancel()
			if err != nil {
				cn.ws.CloseNow() // the reader sees the end and reconnects
				return
			}
		}
		if next >= 0 {
			retry.Reset(next)
		}
		select {
		case <-cn.ctx.Done():
			return
		case <-cn.wake:
		case <-retry.C:
		case <-ping:
			timeout := min(c.opts.PingInterval, maxPingTimeout)
			pctx, cancel := context.WithTimeout(cn.ctx, timeout)
			err := cn.ws.Ping(pctx)
			cancel()
			if err != nil {
				cn.ws.CloseNow()
				return
			}
		}
	}
}

// run owns the connection: it reads frames from cn until the connection ends, then
// reconnects with backoff and resubscribes, until Close.
func (c *Client) run(cn *conn) {
	defer close(c.done)
	c.emit(Status{State: StateOpen, Code: -1, Hello: c.Hello()})
	for {
		err := c.readLoop(cn)
		c.mu.Lock()
		c.conn = nil
		for _, s := range c.subs {
			s.conn, s.ackedOn = nil, nil
		}
		c.settleUnsubsLocked()
		if time.Since(cn.opened) >= stableAfter {
			c.attempt = 0
		}
		c.mu.Unlock()
		cn.shutdown()
		if cn = c.reconnect(err); cn == nil {
			return
		}
	}
}

// reconnect waits out the backoff and dials until a connection says hello, which
// it returns with every subscription re-sent; nil once the client is closed.
func (c *Client) reconnect(err error) *conn {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil
		}
		c.attempt++
		attempt := c.attempt
		c.state = StateReconnecting
		c.mu.Unlock()
		delay := fullJitter(attempt, c.opts.MinDelay, c.opts.MaxDelay)
		c.emit(Status{State: StateReconnecting, Attempt: attempt, Delay: delay, Err: err, Code: websocket.CloseStatus(err)})
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil
		}
		cn, hello, derr := c.dialConn(c.ctx)
		if derr != nil {
			err = derr
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			cn.ws.Close(websocket.StatusNormalClosure, "client closed")
			cn.shutdown()
			return nil
		}
		c.state, c.hello, c.conn = StateOpen, hello, cn
		for _, s := range c.subs {
			c.sendSubscribeLocked(s, cn)
		}
		c.mu.Unlock()
		c.emit(Status{State: StateOpen, Code: -1, Hello: hello})
		return cn
	}
}

// bufPool holds read buffers. Frames are copied out of them (into the
// subscriptions' own buffers) before the next read, so a buffer is only held while
// a frame is processed, and a thousand mostly idle clients share a few.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// maxPooledBuf keeps one huge frame from pinning its buffer in the pool.
const maxPooledBuf = 4 << 20

// readLoop reads and handles frames until the connection ends, and returns why.
func (c *Client) readLoop(cn *conn) error {
	for {
		// No context: a cancellable one costs a timer registration per frame.
		// Shutting the connection down ends the read.
		typ, r, err := cn.ws.Reader(context.Background())
		if err != nil {
			return err
		}
		bp := bufPool.Get().(*[]byte)
		*bp, err = readAll(r, (*bp)[:0])
		if err == nil && typ != websocket.MessageText {
			err = errors.New("sqlws client: protocol violation: binary frame")
		}
		if err == nil {
			err = c.handle(cn, *bp)
		}
		if cap(*bp) <= maxPooledBuf {
			bufPool.Put(bp)
		}
		if err != nil {
			// A malformed frame cannot be skipped (its records would be a gap):
			// drop the connection and resume from the last good seq.
			cn.ws.CloseNow()
			return err
		}
	}
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// ctrlMsg is every server frame other than changes; they are rare, so
// encoding/json decodes them.
type ctrlMsg struct {
	Type    string `json:"type"`
	Head    int64  `json:"head"`
	Reason  string `json:"reason"`
	Stream  string `json:"stream"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// handle processes one frame. It returns an error only for a frame that breaks the
// protocol.
func (c *Client) handle(cn *conn, data []byte) error {
	f, changes, err := parseFrame(c.scratch[:0], data, &c.in)
	if err != nil {
		return err
	}
	if f.typ == protocol.TypeChanges {
		if !f.hasChanges || f.id == nil {
			return errors.New(`sqlws client: protocol violation: changes frame without "id" or "changes"`)
		}
		c.scratch = changes[:0]
		defer clear(changes) // no references into the read buffer outlive the frame
		s := c.lookup(f.id)
		if s != nil && len(changes) > 0 {
			s.deliver(changes)
		}
		return nil
	}
	if f.typ == "" || f.typ == protocol.TypeHello {
		return nil // unknown types are ignored, as /sqlws.js does (forward compatibility)
	}
	var m ctrlMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("sqlws client: malformed %s frame: %w", f.typ, err)
	}
	key := idKeyFromReply(f.id)
	c.mu.Lock()
	s := c.subs[key]
	switch f.typ {
	case protocol.TypeSubscribed:
		c.mu.Unlock()
		if s != nil {
			c.acked(s, cn, m.Head)
		}
	case protocol.TypeReset:
		// The server's stream is the one to follow from now on: the caller
		// reloads from this server and subscribes again.
		if m.Stream != "" {
			c.stream = m.Stream
		}
		if s != nil {
			delete(c.subs, key)
		} else {
			c.settleUnsubLocked(key) // the server has no such subscription
		}
		c.mu.Unlock()
		if s != nil {
			s.finish(&ResetError{ID: s.id, Reason: m.Reason, Head: m.Head, Stream: m.Stream}, false)
		}
	case protocol.TypeUnsubscribed:
		c.settleUnsubLocked(key)
		c.mu.Unlock()
	case protocol.TypeError:
		if s == nil {
			// The server has no such subscription (unknown_subscription, or the
			// refusal of a subscribe given up since).
			c.settleUnsubLocked(key)
			c.mu.Unlock()
			return nil
		}
		if s.conn != cn || s.ackedOn == cn {
			// No request of this subscription is outstanding: nothing in protocol
			// v1 answers so; ignore it rather than guess.
			c.mu.Unlock()
			return nil
		}
		if m.Code == "unavailable" || m.Code == "internal" {
			// Transient: ask again shortly, on this connection if it survives (a new
			// one re-sends every subscription anyway).
			c.mu.Unlock()
			cn.sendLater(delayed{due: time.Now().Add(c.opts.RetryDelay), sub: s, msg: s.subscribeMsg()})
			return nil
		}
		delete(c.subs, key)
		c.mu.Unlock()
		s.finish(&ServerError{ID: s.id, Code: m.Code, Message: m.Message}, false)
	default:
		c.mu.Unlock()
	}
	return nil
}

// lookup returns the active subscription a changes frame is for.
func (c *Client) lookup(id []byte) *Subscription {
	c.mu.Lock()
	s := c.subs[string(id)] // the server echoes ids in canonical form: no allocation
	if s == nil {
		s = c.subs[idKeyFromReply(id)]
	}
	c.mu.Unlock()
	return s
}

// idKeyFromReply returns the map key of an id as a reply carries it. The server
// sends string ids back as encoding/json writes them, which is how the keys are
// made; anything else is canonicalised the same way.
func idKeyFromReply(raw []byte) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return idKey(s)
	}
	return string(raw)
}

// idKey is the map key, and the wire form, of a subscription id.
func idKey(id string) string {
	b, _ := json.Marshal(id)
	return string(b)
}

func (c *Client) awaitingAck(s *Subscription, cn *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[s.key] == s && s.conn == cn && s.ackedOn != cn
}

// acked records a subscribed reply.
func (c *Client) acked(s *Subscription, cn *conn, head int64) {
	c.mu.Lock()
	if c.subs[s.key] != s || s.conn != cn {
		c.mu.Unlock()
		return
	}
	s.ackedOn = cn
	c.mu.Unlock()
	s.subscribed(head)
}

// sendSubscribeLocked sends s's subscribe on cn. c.mu is held.
func (c *Client) sendSubscribeLocked(s *Subscription, cn *conn) {
	s.conn, s.ackedOn = cn, nil
	cn.send(s.subscribeMsg())
}

func (c *Client) settleUnsubLocked(key string) {
	if ch, ok := c.unsubs[key]; ok {
		delete(c.unsubs, key)
		close(ch)
	}
}

// settleUnsubsLocked releases every pending Unsubscribe: without a connection the
// server has forgotten every subscription.
func (c *Client) settleUnsubsLocked() {
	for k, ch := range c.unsubs {
		close(ch)
		delete(c.unsubs, k)
	}
}
