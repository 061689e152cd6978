package ws

import "sync"

// The pump writes live changes. After each Publish it visits every connection and,
// for those whose subscriptions are inside the window and that have no writer
// goroutine running, builds the next frame and writes it without blocking. Whatever
// would wait goes to the connection's writer goroutine instead: replies, reads of
// history behind the window, and the rest of a frame the socket did not take at once.
//
// Why not a goroutine per connection for live frames too: at 1,000 subscribers that
// is 1,000 goroutines started and made runnable per change. They crowded out
// everything else the server does: Go's scheduler polls the network only when a P
// runs out of work, so a REST request waited behind the whole fan-out (a REST
// create's median went from 1.0 ms to 5 ms with 1,000 subscribers). The pump keeps the fan-out's CPU to one core per pump
// (Options.Pumps) and costs no goroutine start, lock hand-off or wake-up per frame.

// pump runs until the hub closes; one per Options.Pumps, each serving the connections
// register gave its shard number. (Not positions in the hub's list: unregister moves
// connections within it, and a connection that moved between two pumps' snapshots
// would be skipped by both.)
func (h *Hub) pump(shard int, wake <-chan struct{}) {
	defer h.pumpsWG.Done()
	f := &frame{buf: framePool.Get().(*[]byte)}
	defer f.free()
	var conns []*conn
	for {
		select {
		case <-h.stopPumps:
			return
		case <-wake:
		}
		full := h.full[shard].Swap(false)
		// The queued connections first, their flags cleared before they are visited:
		// a wake-up after this point queues them again.
		q := &h.ready[shard]
		q.mu.Lock()
		ready := q.conns
		q.conns = q.spare[:0]
		q.mu.Unlock()
		for _, c := range ready {
			c.queued.Store(false)
		}
		if full {
			h.mu.RLock()
			for _, c := range h.conns {
				if c.shard == shard {
					conns = append(conns, c)
				}
			}
			h.mu.RUnlock()
		} else {
			conns = append(conns, ready...)
		}
		clear(ready)
		q.mu.Lock()
		q.spare = ready[:0]
		q.mu.Unlock()
		// One frame per connection per pass, so a connection with much to catch up on
		// does not hold the others back; passes repeat until nothing is left to send,
		// each over only the connections that sent in the one before: the others are
		// caught up (10,000 filtered subscribers, one of which a change concerns, cost
		// one visit each per wake-up, not two).
		for len(conns) > 0 {
			next := conns[:0]
			for _, c := range conns {
				if c.pumpOne(f) {
					next = append(next, c)
				}
			}
			clear(conns[len(next):])
			conns = next
		}
		conns = conns[:0]
	}
}

// wakePumps tells every pump to visit all its connections. It never blocks: a pump
// that is busy has a wake-up pending and makes another pass.
func (h *Hub) wakePumps() {
	for i, w := range h.pumpWake {
		h.full[i].Store(true)
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// readyQueue is the connections a pump must visit though no full pass is due.
type readyQueue struct {
	mu    sync.Mutex
	conns []*conn
	spare []*conn // the last list taken, reused
}

// markReady queues c for its pump: a filtered subscription of c has news.
func (h *Hub) markReady(c *conn) {
	if !c.queued.CompareAndSwap(false, true) {
		return
	}
	q := &h.ready[c.shard]
	q.mu.Lock()
	q.conns = append(q.conns, c)
	q.mu.Unlock()
	select {
	case h.pumpWake[c.shard] <- struct{}{}:
	default:
	}
}

// pumpOne writes c's next live frame if it can without blocking, and reports whether
// it wrote one. Anything it cannot do at once it hands to c's writer goroutine.
func (c *conn) pumpOne(f *frame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed || len(c.order) == 0:
		return false
	case c.writing:
		c.dirty = true // the writer looks again before it exits
		return false
	case len(c.control) > 0: // replies first, in order, from the writer
		c.startWriterLocked()
		return false
	}
	sent, err := c.nextFrameLocked(f, true)
	defer f.done()
	if err != nil || (!sent && len(c.control) > 0) {
		// Behind the window, or a subscription ended and its reply is queued.
		c.startWriterLocked()
		return false
	}
	if !sent {
		return false
	}
	b := *f.buf
	start := frameHeader(b, len(b)-frameHeaderMax)
	frame := b[start:]
	n, locked, err := c.fc.tryWrite(frame)
	switch {
	case err == nil && n == len(frame):
		c.lastWrite.Store(c.hub.clock.Load())
		c.hub.counts.sent(n, len(f.batch))
		return true
	case err == nil || err == errWouldBlock:
		// The writer goroutine finishes the frame; the buffer goes with it.
		c.pending, c.pendingOff, c.pendingLocked, c.pendingChanges = f.buf, start+n, locked, len(f.batch)
		f.buf = framePool.Get().(*[]byte)
		c.startWriterLocked()
		return false
	default:
		// The socket failed: end the connection as a failed write does.
		c.closed = true // no writer will start; run's deferred markClosed agrees
		c.endAsync(CloseWriteFailed, 0, err.Error())
		return false
	}
}

// pumpsFor is the default number of pumps: half the cores, at least one, leaving
// the other half to request handling, the tailer and history reads.
func pumpsFor(procs int) int { return max(1, procs/2) }
