package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sqlws/sqlws/internal/cluster"
)

// W8: scale-out. A source publishing to a real nats-server (JetStream) and two edges,
// each a process of its own started as `make run-cluster` starts them
// (internal/cluster), with the subscribers split across the edges. Two phases on the
// same subscribers:
//
//   - paced: the writer inserts 100 changes/s (1-row transactions) for --w8-steady.
//     Commit → client latency through source, NATS and edge; and the JetStream hop's
//     CPU per change — the source's and nats-server's CPU time (/proc/PID/stat) over
//     the phase divided by the changes — which is what the source side costs however
//     many edges there are.
//   - flat out: 100-row transactions, --w8-rows rows. Deliveries summed over both
//     edges ÷ (last receipt − first commit), and each process's CPU: the edges' CPU
//     per delivered change is what each added machine would take on.
//
// At the end each edge's lag (sqlws_tailer_lag_changes on its /metrics) must be back
// at 0 with JetStream's last sequence at the database's head, every subscriber must
// have every change exactly once and in order, and every process must stop cleanly.

// w8IdleSpell is how long the source and NATS are measured idle (subscribers
// connected, no writes) before the paced phase, to show what of the hop's cost is
// not per change.
const w8IdleSpell = 2 * time.Second

func (c *benchConfig) w8RowCount() int64 {
	if c.w8Rows > 0 {
		return c.w8Rows
	}
	return c.w2RowCount()
}

// w8Proc is a cluster process the bench samples.
type w8Proc struct {
	name string
	pid  int
	s    *sampler
}

func startW8Samplers(c *cluster.Cluster) []*w8Proc {
	var ps []*w8Proc
	for _, p := range c.Procs() {
		ps = append(ps, &w8Proc{name: p.Name, pid: p.PID, s: startSampler(p.PID)})
	}
	return ps
}

func stopW8Samplers(ps []*w8Proc) map[string]procStats {
	out := map[string]procStats{}
	for _, p := range ps {
		out[p.name] = p.s.stop()
	}
	return out
}

func (b *bencher) w8(ctx context.Context) runResult {
	if b.cfg.target != "" {
		return runResult{Unavailable: "W8 starts its own nats-server, source and edges; it does not run against --target"}
	}
	natsBin, err := findBeside("nats-server", b.cfg.natsServer, b.exe)
	if err != nil && b.cfg.natsServer != "" {
		return errResult(fmt.Errorf("--nats-server: %w", err)) // asked for and missing: an error, as --sqlws
	}
	if err != nil {
		return runResult{Unavailable: fmt.Sprintf("--nats-server: %v; build it with `make nats-server` (go build -o bin/nats-server github.com/nats-io/nats-server/v2)", err)}
	}
	dir, err := os.MkdirTemp("", "sqlws-bench-W8-")
	if err != nil {
		return errResult(err)
	}
	defer func() {
		if b.cfg.keep {
			fmt.Fprintf(os.Stderr, "bench: kept %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	db := filepath.Join(dir, "bench.db")
	if err := setupDB(ctx, db, benchTable); err != nil {
		return errResult(err)
	}
	cl, err := cluster.Start(ctx, cluster.Options{Sqlws: b.cfg.sqlws, NATSServer: natsBin, Dir: filepath.Join(dir, "cluster"),
		DB: db, SourceArgs: b.cfg.serverArgs, Timeout: 60 * time.Second})
	if err != nil {
		return errResult(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cl.Stop()
		}
	}()
	b.logf("W8: nats pid %d at %s, source pid %d at %s, edges %s (pid %d) and %s (pid %d); logs in %s",
		cl.NATS.PID, cl.NATS.URL, cl.Source.PID, cl.Source.URL, cl.Edges[0].URL, cl.Edges[0].PID, cl.Edges[1].URL, cl.Edges[1].PID, dir)
	base, err := b.head(ctx, db)
	if err != nil {
		return errResult(err)
	}
	var r runResult

	// Subscribers: half on each edge, from the head before any write.
	var all []*wsClient
	perEdge := make([][]*wsClient, len(cl.Edges))
	for i, e := range cl.Edges {
		n := b.cfg.subs / len(cl.Edges)
		if i == 0 {
			n += b.cfg.subs % len(cl.Edges)
		}
		cs, err := dialClients(ctx, e.URL, n, subSpec{table: benchTable, since: base}, true)
		if err != nil {
			closeClients(all)
			return errResult(fmt.Errorf("%s: %w", e.Name, err))
		}
		perEdge[i] = cs
		all = append(all, cs...)
	}
	b.logf("W8: %d subscribed (%d on edge1, %d on edge2)", len(all), len(perEdge[0]), len(perEdge[1]))

	// Idle: what the source and NATS spend with nothing to publish.
	idle := startW8Samplers(cl)
	time.Sleep(w8IdleSpell) // a measurement window, not synchronisation
	idleStats := stopW8Samplers(idle)

	// Paced phase.
	procs, selfS := startW8Samplers(cl), startSampler(0)
	w1, err := runWriter(ctx, b.exe, writerSpec{DB: db, Table: benchTable, Payload: b.cfg.payload,
		Duration: b.cfg.w8Steady, Rate: 100, Txn: 1})
	if err != nil {
		closeClients(all)
		return errResult(err)
	}
	complete1 := waitDelivered(ctx, all, w1.Head-base, drainTimeout(b.cfg.w8Steady))
	paced, pacedLoad := stopW8Samplers(procs), selfS.stop()
	b.logf("W8: paced phase: %d rows at %.0f/s, delivered: %v", w1.Rows, w1.RowsPerSec, complete1)
	for _, c := range all {
		c.latUntil.Store(max(w1.Head, 1)) // the flat-out phase's saturation latency is not W8's latency
	}

	// Flat-out phase.
	procs, selfS = startW8Samplers(cl), startSampler(0)
	w2, err := runWriter(ctx, b.exe, writerSpec{DB: db, Table: benchTable, Payload: b.cfg.payload,
		Rows: b.cfg.w8RowCount(), Txn: 100})
	if err != nil {
		closeClients(all)
		return errResult(err)
	}
	complete2 := waitDelivered(ctx, all, w2.Head-base, drainTimeout(b.cfg.duration))
	flat, flatLoad := stopW8Samplers(procs), selfS.stop()
	b.logf("W8: flat out: %d rows at %.0f/s, delivered: %v", w2.Rows, w2.RowsPerSec, complete2)

	// The edges' own account: lag back at 0, JetStream's last sequence at the head.
	lagChecks := make([]check, len(cl.Edges))
	for i, e := range cl.Edges {
		lagChecks[i] = edgeLagCheck(ctx, e, w2.Head, 30*time.Second)
	}

	closeClients(all)
	rep := collect(all, w2.Head)
	stopErr := cl.Stop()
	stopped = true

	// Figures.
	lat := rep.lat.summary()
	hop := func(st map[string]procStats, changes int64) float64 {
		return (st["source"].CPUSec + st["nats"].CPUSec) * 1e6 / float64(max(changes, 1))
	}
	edgeCPU := func(st map[string]procStats) (sec float64) {
		for _, e := range cl.Edges {
			sec += st[e.Name].CPUSec
		}
		return sec
	}
	deliveries2 := w2.Rows * int64(len(all))
	span2 := time.Duration(rep.lastNS - w2.StartNS)
	rate := float64(deliveries2) / span2.Seconds()
	r.Metrics = []metric{
		{Name: "commit → client p99 via edges (100/s)", Unit: "ms", Value: lat.P99MS},
		{Name: "commit → client p50 via edges (100/s)", Unit: "ms", Value: lat.P50MS},
		{Name: "JetStream hop CPU per change (100/s)", Unit: "µs", Value: hop(paced, w1.Rows)},
		{Name: "delivered changes/s, flat out, both edges", Unit: "changes/s", Value: rate},
		{Name: "JetStream hop CPU per change (flat out)", Unit: "µs", Value: hop(flat, w2.Rows)},
		{Name: "edge CPU per delivered change (flat out)", Unit: "µs", Value: edgeCPU(flat) * 1e6 / float64(max(deliveries2, 1))},
	}
	r.Latency = map[string]latSummary{"commit_to_client_via_edges": lat}
	r.Writers = map[string]writerResult{"paced": w1, "flat_out": w2}
	r.Load = pacedLoad
	r.Server = paced["source"]
	r.infof("subscribers: %d on edge1, %d on edge2 (client %s); JetStream on file storage", len(perEdge[0]), len(perEdge[1]), benchClientKind)
	r.infof("paced: %d rows in 1-row transactions at %.0f rows/s; commit → client %s", w1.Rows, w1.RowsPerSec, lat)
	r.infof("paced CPU: %s; load generator %.2f cores", procLine(paced, cl), pacedLoad.CPUCores)
	r.infof("paced per change: source %.0f µs, nats-server %.0f µs; idle (%v, no writes): source %.3f cores, nats-server %.3f cores",
		paced["source"].CPUSec*1e6/float64(max(w1.Rows, 1)), paced["nats"].CPUSec*1e6/float64(max(w1.Rows, 1)),
		w8IdleSpell, idleStats["source"].CPUCores, idleStats["nats"].CPUCores)
	r.infof("paced per delivery: edge1 %.1f µs, edge2 %.1f µs of CPU", perDelivery(paced, cl.Edges[0], w1.Rows, len(perEdge[0])),
		perDelivery(paced, cl.Edges[1], w1.Rows, len(perEdge[1])))
	r.infof("flat out: %d rows in 100-row transactions at %s rows/s; %s deliveries in %.2f s (first commit → last receipt); %s frames (%.0f changes/frame)",
		w2.Rows, commas(int64(w2.RowsPerSec)), commas(deliveries2), span2.Seconds(), commas(rep.frames), float64(rep.verdict.Received)/float64(max(rep.frames, 1)))
	r.infof("flat-out CPU: %s; load generator %.2f cores", procLine(flat, cl), flatLoad.CPUCores)
	r.infof("flat-out per change: source %.1f µs, nats-server %.1f µs; per delivery: edge1 %.2f µs, edge2 %.2f µs",
		flat["source"].CPUSec*1e6/float64(max(w2.Rows, 1)), flat["nats"].CPUSec*1e6/float64(max(w2.Rows, 1)),
		perDelivery(flat, cl.Edges[0], w2.Rows, len(perEdge[0])), perDelivery(flat, cl.Edges[1], w2.Rows, len(perEdge[1])))
	for i := range cl.Edges {
		er := collect(perEdge[i], w2.Head)
		r.infof("edge%d: %s", i+1, er.lat.summary())
	}

	// Checks.
	r.Checks = append(r.Checks, headCheck(base, w1), headCheck(w1.Head, w2), verdictCheck("subscribers (both edges)", rep.verdict))
	if !(complete1 && complete2) && rep.verdict.ok() {
		r.Checks = append(r.Checks, check{Label: "drain", Detail: "timed out"})
	}
	r.Checks = append(r.Checks, lagChecks...)
	stopCheck := check{Label: "cluster stop", OK: stopErr == nil, Detail: "edges, source and nats-server stopped on SIGTERM, exit 0 — OK"}
	if stopErr != nil {
		stopCheck.Detail = "FAIL: " + stopErr.Error()
	}
	r.Checks = append(r.Checks, stopCheck)
	if !rep.verdict.ok() {
		for _, p := range cl.Procs() {
			r.infof("%s log: %s", p.Name, p.LogTail(1000))
		}
	}
	return r
}

func procLine(st map[string]procStats, cl *cluster.Cluster) string {
	s := ""
	for i, p := range cl.Procs() {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %.2f cores (RSS max %.0f MB)", p.Name, st[p.Name].CPUCores, st[p.Name].RSSMaxMB)
	}
	return s
}

// perDelivery is an edge's CPU per change delivered to one of its subscribers, in µs.
func perDelivery(st map[string]procStats, e *cluster.Proc, changes int64, subs int) float64 {
	return st[e.Name].CPUSec * 1e6 / float64(max(changes*int64(subs), 1))
}

// edgeLagCheck waits (bounded) until the edge's /metrics shows it has delivered
// everything JetStream holds — sqlws_tailer_lag_changes 0 — and that JetStream's last
// sequence (sqlws_changelog_head on an edge) is the database's head.
func edgeLagCheck(ctx context.Context, e *cluster.Proc, head int64, timeout time.Duration) check {
	ck := check{Label: e.Name + " lag"}
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	var lag, jsHead float64
	var last error
	for {
		lag, jsHead, last = readEdgeLag(ctx, hc, e.URL)
		if last == nil && lag == 0 && int64(jsHead) == head {
			ck.OK = true
			ck.Detail = fmt.Sprintf("sqlws_tailer_lag_changes 0, JetStream's last sequence %d = the database's head — OK", head)
			return ck
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if last != nil {
		ck.Detail = fmt.Sprintf("FAIL: /metrics: %v", last)
	} else {
		ck.Detail = fmt.Sprintf("FAIL: after %v, sqlws_tailer_lag_changes %.0f and JetStream's last sequence %.0f (database head %d)", timeout, lag, jsHead, head)
	}
	return ck
}

func readEdgeLag(ctx context.Context, hc *http.Client, base string) (lag, head float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	gauge := func(name string) (float64, error) {
		f := fams[name]
		if f == nil || len(f.GetMetric()) != 1 {
			return 0, fmt.Errorf("no %s", name)
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), nil
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), nil
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), nil
		}
		return 0, fmt.Errorf("%s has no value", name)
	}
	if lag, err = gauge("sqlws_tailer_lag_changes"); err != nil {
		return 0, 0, err
	}
	head, err = gauge("sqlws_changelog_head")
	return lag, head, err
}
