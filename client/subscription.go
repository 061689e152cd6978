package client

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
)

// SubscribeOptions say what a subscription follows. The zero value follows every
// table, live from the current head.
type SubscribeOptions struct {
	// ID is the protocol subscription id, unique among the client's active
	// subscriptions. Default: a fresh number ("1", "2", …) that no active
	// subscription uses.
	ID string

	// Tables are the tables to follow. Empty: every tracked table, including ones
	// created later.
	Tables []string

	// Since, when set, asks for every matching change after this seq, then live
	// changes: pass the seq your state is current as of (a REST answer carries it).
	// Nil: live from the current head. See Seq.
	Since *int64

	// Stream is the stream id this subscription must continue. Default: the
	// client's (Client.Stream).
	Stream string

	// Where and Select are passed to the server as the subscription's "where" and
	// "select" (row filter and column list, in the syntax the server documents),
	// only when not empty. A server without filters ignores them.
	Where, Select string
}

// Seq returns a pointer to seq, for SubscribeOptions.Since.
func Seq(seq int64) *int64 { return &seq }

// Stats count a subscription's records.
type Stats struct {
	// Received counts records in frames for this subscription.
	Received int64
	// Dropped counts records dropped because their seq was not above the last one
	// received (duplicates after a resume).
	Dropped int64
	// Delivered counts records returned by Next.
	Delivered int64
	// Buffered is how many changes wait for Next: the consumer's lag inside the
	// client (at most about Options.Buffer).
	Buffered int
}

// Sizes of the buffers a subscription stores changes in. They grow from the small
// size with use, so an idle subscription costs little and a busy one allocates
// rarely; a consumer that keeps a Change keeps at most one of each alive.
const (
	minChunk = 16
	maxChunk = 256 // Changes: 16 KiB
	minSlab  = 1 << 10
	maxSlab  = 32 << 10
)

// Subscription is a followed set of tables. Its methods are safe for concurrent
// use, though Next is meant for one consumer goroutine: batches go to whichever
// caller asks first.
type Subscription struct {
	c      *Client
	id     string
	key    string // idKey(id): the wire form, and the key in Client.subs
	tables []string
	stream string
	where  string
	sel    string
	limit  int

	acked chan struct{} // closed at the first subscribed reply
	done  chan struct{} // closed when the subscription has ended
	ready chan struct{} // capacity 1: changes were queued
	space chan struct{} // capacity 1: changes were taken

	// Guarded by c.mu.
	conn    *conn // the connection its latest subscribe went out on
	ackedOn *conn // the connection that acknowledged it

	// stalled is set while the reader waits for this subscription's consumer (for
	// tests: the state is otherwise invisible).
	stalled atomic.Bool

	mu     sync.Mutex
	err    error // why it ended
	wasAck bool
	head   int64
	hasSeq bool
	queued int64 // seq of the last change queued; a resume continues after it
	last   int64 // seq of the last change returned by Next
	// The queue: the oldest unread change is full[0][readPos] if full is not
	// empty, else cur[readPos]. Changes are appended to cur; a full cur moves to
	// full. Raw fields point into slab, the subscription's own copy of the frames.
	full    [][]Change
	cur     []Change
	readPos int
	unread  int
	slab    []byte
	stats   Stats
}

// Subscribe sends a subscription and waits until the server accepts it, then returns
// it; changes follow through Next. If the client is between connections, the
// subscription goes out when the next connection opens, so ctx bounds the wait.
//
// A refusal is returned as *ServerError (unknown_table, …) or *ResetError (Since
// below what retention kept, above the head, or another stream); unavailable is
// asked again after Options.RetryDelay. When ctx ends first, the subscription is
// withdrawn and ctx's error returned.
func (c *Client) Subscribe(ctx context.Context, o SubscribeOptions) (*Subscription, error) {
	if o.Since != nil && *o.Since < 0 {
		return nil, errors.New("sqlws client: Since must be >= 0")
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	id := o.ID
	if id == "" {
		for {
			c.nextID++
			id = strconv.FormatUint(c.nextID, 10)
			if !c.takenLocked(idKey(id)) {
				break
			}
		}
	}
	key := idKey(id)
	if c.takenLocked(key) {
		c.mu.Unlock()
		// What the server would answer, found without asking it.
		return nil, &ServerError{ID: id, Code: "duplicate_id", Message: "subscription " + key + " is already active"}
	}
	s := &Subscription{
		c: c, id: id, key: key, tables: append([]string(nil), o.Tables...),
		stream: o.Stream, where: o.Where, sel: o.Select, limit: c.opts.Buffer,
		acked: make(chan struct{}), done: make(chan struct{}),
		ready: make(chan struct{}, 1), space: make(chan struct{}, 1),
	}
	if s.stream == "" {
		s.stream = c.stream
	}
	if o.Since != nil {
		s.hasSeq, s.queued, s.last = true, *o.Since, *o.Since
	}
	c.subs[key] = s
	if c.conn != nil {
		c.sendSubscribeLocked(s, c.conn)
	}
	c.mu.Unlock()

	select {
	case <-s.acked:
		return s, nil
	case <-s.done:
	case <-ctx.Done():
	}
	select {
	case <-s.acked:
		return s, nil // accepted, and perhaps already ended: Next says how
	default:
	}
	select {
	case <-s.done:
		return nil, s.endErr()
	default:
	}
	s.withdraw(nil)
	return nil, ctx.Err()
}

// takenLocked reports whether key is in use: by an active subscription, or by one
// whose unsubscribe the server has not confirmed yet.
func (c *Client) takenLocked(key string) bool {
	_, active := c.subs[key]
	_, leaving := c.unsubs[key]
	return active || leaving
}

// ID returns the protocol subscription id.
func (s *Subscription) ID() string { return s.id }

// Tables returns the tables it follows (empty: all).
func (s *Subscription) Tables() []string { return append([]string(nil), s.tables...) }

// LastSeq returns the seq of the last change Next returned, or the Since it started
// from, or, for a subscription started live, the head its subscribe was accepted
// at. Persist it with your state to resume from it later.
func (s *Subscription) LastSeq() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Head returns the server's head when it last accepted this subscription (at
// Subscribe, and again after every reconnect): the subscription has caught up once
// LastSeq reaches it.
func (s *Subscription) Head() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Buffered = s.unread
	return st
}

// Next returns the changes that have arrived since the last call, at least one and
// at most a few hundred, seq strictly increasing across calls. It waits for them
// until ctx ends.
//
// After the subscription ends, Next returns what is still buffered and then why it
// ended: a *ResetError or *ServerError from the server (the subscription is over;
// reload and subscribe again), or ErrUnsubscribed or ErrClosed (nothing buffered
// is returned then). Lost connections are not errors: the client resumes the
// subscription by itself.
//
// The returned slice and the Raw of its changes stay valid; the client never
// writes to them again.
func (s *Subscription) Next(ctx context.Context) ([]Change, error) {
	for {
		s.mu.Lock()
		if s.unread > 0 {
			b := s.take()
			s.mu.Unlock()
			select {
			case s.space <- struct{}{}:
			default:
			}
			return b, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-s.ready:
		case <-s.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Unsubscribe ends the subscription: Next returns ErrUnsubscribed from now on. It
// waits (bounded by ctx) until the server confirms, so that the id can be used again
// afterwards. It returns nil if the subscription had already ended.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	wait := s.withdraw(make(chan struct{}))
	if wait == nil {
		return nil
	}
	select {
	case <-wait:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withdraw ends s and, if the server may have it, sends unsubscribe. It returns the
// channel that is closed when the server has let go of the id (wait, registered as
// pending), or nil when there is nothing to wait for.
func (s *Subscription) withdraw(wait chan struct{}) chan struct{} {
	c := s.c
	c.mu.Lock()
	if c.subs[s.key] != s {
		c.mu.Unlock()
		s.finish(ErrUnsubscribed, true)
		return nil
	}
	delete(c.subs, s.key)
	cn := s.conn
	if cn == nil || cn != c.conn {
		wait = nil
	} else {
		if wait == nil {
			wait = make(chan struct{})
		}
		c.unsubs[s.key] = wait
		cn.send([]byte(`{"type":"unsubscribe","id":` + s.key + `}`))
	}
	c.mu.Unlock()
	s.finish(ErrUnsubscribed, true)
	return wait
}

func (s *Subscription) endErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// subscribeMsg builds the subscribe for the current connection: since is the last
// change queued, so the server sends exactly what is missing.
func (s *Subscription) subscribeMsg() []byte {
	s.mu.Lock()
	since, has := s.queued, s.hasSeq
	s.mu.Unlock()
	return appendSubscribe(nil, s.key, s.tables, since, has, s.stream, s.where, s.sel)
}

// subscribed records an accepted subscribe.
func (s *Subscription) subscribed(head int64) {
	s.mu.Lock()
	s.head = head
	if !s.hasSeq {
		// Live from head: everything after head follows, so a resume continues
		// from there.
		s.hasSeq, s.queued, s.last = true, head, head
	}
	first := !s.wasAck
	s.wasAck = true
	s.mu.Unlock()
	if first {
		close(s.acked)
	}
}

// finish ends the subscription with err (the first reason wins). discard drops
// what is buffered: the caller asked to stop.
func (s *Subscription) finish(err error, discard bool) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	if discard {
		s.full, s.cur, s.slab = nil, nil, nil
		s.readPos, s.unread = 0, 0
	}
	s.mu.Unlock()
	close(s.done)
}

// deliver queues the records of one frame, dropping those at or below the last seq
// queued. While the queue is full it waits for the consumer: this is where a slow
// consumer stops the socket being read. recs point into the read buffer; what is
// kept is copied.
func (s *Subscription) deliver(recs []Change) {
	s.mu.Lock()
	for s.err == nil && s.unread > 0 && s.unread+len(recs) > s.limit {
		s.mu.Unlock()
		s.stalled.Store(true)
		select {
		case <-s.space:
		case <-s.done:
		}
		s.stalled.Store(false)
		s.mu.Lock()
	}
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	n := 0
	for i := range recs {
		r := &recs[i]
		if s.hasSeq && r.Seq <= s.queued {
			continue
		}
		s.push(r)
		s.hasSeq, s.queued = true, r.Seq
		n++
	}
	s.stats.Received += int64(len(recs))
	s.stats.Dropped += int64(len(recs) - n)
	s.unread += n
	s.mu.Unlock()
	if n > 0 {
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
}

// push appends a copy of r to the queue. s.mu is held.
func (s *Subscription) push(r *Change) {
	n := len(r.Raw)
	if cap(s.slab)-len(s.slab) < n {
		// A new slab; the old one lives on while changes in it are referenced.
		s.slab = make([]byte, 0, max(n, min(maxSlab, max(minSlab, 2*cap(s.slab)))))
	}
	off := len(s.slab)
	s.slab = append(s.slab, r.Raw...)
	c := *r
	c.Raw = s.slab[off:len(s.slab):len(s.slab)]
	if len(s.cur) == cap(s.cur) {
		if s.cur != nil {
			if len(s.full) == 0 && s.readPos == len(s.cur) {
				s.readPos = 0 // cur was read to the end: start afresh
			} else {
				s.full = append(s.full, s.cur)
			}
		}
		s.cur = make([]Change, 0, min(maxChunk, max(minChunk, 2*cap(s.cur))))
	}
	s.cur = append(s.cur, c)
}

// take removes and returns the oldest unread run of changes. s.mu is held and
// s.unread > 0.
func (s *Subscription) take() []Change {
	var b []Change
	if len(s.full) > 0 {
		ch := s.full[0]
		b = ch[s.readPos:len(ch):len(ch)]
		s.full[0] = nil
		s.full = s.full[1:]
		s.readPos = 0
	} else {
		b = s.cur[s.readPos:len(s.cur):len(s.cur)]
		s.readPos = len(s.cur)
	}
	s.unread -= len(b)
	s.last = b[len(b)-1].Seq
	s.stats.Delivered += int64(len(b))
	return b
}
