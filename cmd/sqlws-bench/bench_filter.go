package main

import (
	"context"
	"strconv"
	"time"
)

// ---------------------------------------------------------------------------
// F1, F2: filtered subscriptions (docs/protocol.md, "Filtered subscriptions")

// f1 is 10,000 subscribers (--filter-subs), each with its own equality filter
// (id=eq.K), while another process inserts 1,000 rows/s: each change matches one
// subscriber, found through the server's index. Targets: commit → client p99 ≤ 25 ms
// and server CPU ≤ 0.5 core.
func (b *bencher) f1(ctx context.Context) runResult {
	e, err := b.newEnv(ctx, "F1")
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	var r runResult
	n := b.cfg.filterSubs
	const rate = 1000
	// The writer runs until every subscriber has had its row: n rows at 1,000/s.
	d := time.Duration(float64(n)/rate*float64(time.Second)) + time.Second
	clients := make([]*wsClient, 0, n)
	for i := 0; i < n; i += 1000 {
		k := min(1000, n-i)
		batch, err := dialFiltered(ctx, e.srv.url, k, e.base, func(j int) string {
			return "id=eq." + strconv.Itoa(i+j+1)
		})
		if err != nil {
			closeClients(clients)
			return errResult(err)
		}
		clients = append(clients, batch...)
	}
	b.logf("F1: %d filtered subscribers", len(clients))
	srvS, selfS := startSampler(e.srv.pid), startSampler(0)
	prof := e.cpuProfile("cpu", d)
	w, err := runWriter(ctx, b.exe, e.writer(writerSpec{Rows: int64(n), Duration: d, Rate: rate, Txn: 1}))
	if err != nil {
		closeClients(clients)
		return errResult(err)
	}
	complete := waitDelivered(ctx, clients, 1, drainTimeout(d))
	r.Server, r.Load = srvS.stop(), selfS.stop()
	prof()
	closeClients(clients)
	rep := collect(clients, w.Head)
	lat := rep.lat.summary()
	r.Metrics = []metric{
		{Name: "commit → client p99", Unit: "ms", Value: lat.P99MS, Cmp: "<=", Target: 25},
		{Name: "server CPU", Unit: "cores", Value: r.Server.CPUCores, Cmp: "<=", Target: 0.5},
		{Name: "commit → client p50", Unit: "ms", Value: lat.P50MS},
		{Name: "server RSS max", Unit: "MB", Value: r.Server.RSSMaxMB},
	}
	r.Latency = map[string]latSummary{"commit_to_client": lat}
	r.Writers = map[string]writerResult{"writer": w}
	r.infof("writer: %d rows at %.0f rows/s; %s deliveries in %s frames", w.Rows, w.RowsPerSec,
		commas(rep.verdict.Received), commas(rep.frames))
	e.verifyDelivery(&r, w, rep, complete)
	return r
}

// f2 is W2 with every subscriber on the same filter that no index can serve
// (payload=like.*x*, which every row matches): the filter is evaluated once per
// change, and the records are shared. Target: at least 80 % of W2's rate (run W2
// in the same invocation for the ratio).
func (b *bencher) f2(ctx context.Context) runResult {
	e, err := b.newEnv(ctx, "F2")
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	var r runResult
	clients, err := dialFiltered(ctx, e.srv.url, b.cfg.subs, e.base, func(int) string { return "payload=like.*x*" })
	if err != nil {
		return errResult(err)
	}
	b.logf("F2: %d subscribed", len(clients))
	rows := b.cfg.w2RowCount()
	srvS, selfS := startSampler(e.srv.pid), startSampler(0)
	w, err := runWriter(ctx, b.exe, e.writer(writerSpec{Rows: rows, Txn: 100}))
	if err != nil {
		closeClients(clients)
		return errResult(err)
	}
	complete := waitDelivered(ctx, clients, w.Head-e.base, drainTimeout(b.cfg.duration))
	r.Server, r.Load = srvS.stop(), selfS.stop()
	closeClients(clients)
	rep := collect(clients, w.Head)
	span := time.Duration(rep.lastNS - w.StartNS)
	rate := float64(rep.verdict.Received) / span.Seconds()
	r.Metrics = []metric{{Name: "delivered changes/s", Unit: "changes/s", Value: rate}}
	if w2 := b.results["W2"]; len(w2) > 0 && w2[0].Value > 0 {
		ratio := rate / w2[0].Value
		r.Metrics = append(r.Metrics, metric{Name: "÷ W2 (unfiltered) in this run", Unit: "ratio", Value: ratio, Cmp: ">=", Target: 0.8})
	}
	r.Writers = map[string]writerResult{"writer": w}
	r.infof("%s", frameCost(r.Server, r.Load, rep))
	r.infof("writer: %d rows (100-row transactions) at %s rows/s; %s deliveries in %s frames",
		w.Rows, commas(int64(w.RowsPerSec)), commas(rep.verdict.Received), commas(rep.frames))
	e.verifyDelivery(&r, w, rep, complete)
	return r
}

// dialFiltered connects n subscribers, subscriber j with where(j), each expecting
// only the changes its filter passes: with an equality on id, the one change whose
// seq is since + the id (a fresh table, one row per change).
func dialFiltered(ctx context.Context, base string, n int, since int64, where func(j int) string) ([]*wsClient, error) {
	specs := make([]subSpec, n)
	for j := range specs {
		specs[j] = subSpec{table: benchTable, since: since, where: where(j)}
	}
	return dialClientSpecs(ctx, base, specs, true)
}
