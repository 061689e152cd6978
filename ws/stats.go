package ws

import (
	"sync"
	"sync/atomic"
)

// counters are the hub's running totals, for metrics. Each is bumped once per frame
// or per event, never per change, except changes itself (one add per frame).
type counters struct {
	frames, bytes, changes atomic.Uint64 // written to sockets
	subscriptions          atomic.Int64  // active now

	mu     sync.Mutex
	resets map[string]uint64 // by reason
	errors map[string]uint64 // error replies by code
}

func (k *counters) count(m *map[string]uint64, key string) {
	k.mu.Lock()
	if *m == nil {
		*m = map[string]uint64{}
	}
	(*m)[key]++
	k.mu.Unlock()
}

func (k *counters) snapshot(m map[string]uint64) map[string]uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]uint64, len(m))
	for key, v := range m {
		out[key] = v
	}
	return out
}

// sent counts a frame written whole.
func (k *counters) sent(bytes, changes int) {
	k.frames.Add(1)
	k.bytes.Add(uint64(bytes))
	if changes > 0 {
		k.changes.Add(uint64(changes))
	}
}

// Lags calls fn with every subscription's lag: how many changes the window holds
// beyond its position (0 when caught up). A subscription behind the window counts
// from its position to the window's head.
func (h *Hub) Lags(fn func(lag int64)) {
	head := h.win.Head()
	h.mu.RLock()
	conns := append([]*conn(nil), h.conns...)
	h.mu.RUnlock()
	for _, c := range conns {
		c.mu.Lock()
		for _, s := range c.order {
			fn(max(head-s.cur.Pos(), 0))
		}
		c.mu.Unlock()
	}
}
