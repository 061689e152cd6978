package main

import (
	"context"
	"os"
	"runtime/debug"
	"time"
)

// Go's collector, left to itself, lets the heap grow to twice what is live before it
// collects (GOGC=100), so a server holding its memory budget in pages and window
// could reach twice the budget in RSS. A soft memory limit tells it to collect
// sooner instead. The limit is the budget (whose last quarter is headroom for the
// collector and frames in flight), plus a small allowance for the runtime and REST
// requests, plus each connection's own few tens of kilobytes, so it moves with the
// number of connections. SQLite's page caches live outside Go's heap, about 2 MB per
// pooled connection. An explicit GOMEMLIMIT wins.
const (
	memoryAllowance = 16 << 20 // beside the budget: runtime, requests
	perConnection   = 24 << 10 // an idle connection measures 18–24 KB
)

// followMemoryLimit keeps the soft memory limit at budget + allowance + connections
// until ctx is done; connections reports the number open.
func followMemoryLimit(ctx context.Context, budget int64, connections func() int) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	last := int64(-1)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		limit := budget + memoryAllowance + int64(connections())*perConnection
		if limit != last {
			debug.SetMemoryLimit(limit)
			last = limit
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
