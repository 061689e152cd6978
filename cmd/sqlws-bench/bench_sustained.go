package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// W7: sustained load. The burst of W2 fits in the server's window; a writer that
// keeps going does not, and then every subscriber catches up from the changelog
// while the writer still writes. That is the load sqlws exists for (a bulk import
// while dashboards are open), and where a fan-out that serves each subscriber's
// history on its own collapses. Measured as a user would: the delivered rate over
// the whole write window (not a burst), the server's RSS against its memory budget
// over the whole run, and the rate at which the backlog drains after the writer
// stops (reported over a fixed spell rather than waited out: at 1,000 subscribers the
// backlog is hundreds of millions of deliveries).

// sustainedPayload makes each change about 300 bytes of JSON, as in the issue's
// measurements.
const sustainedPayload = 170

// drainSpell is how long the drain rate is measured after the writer stops.
const drainSpell = 10 * time.Second

// progress samples the subscribers' total deliveries over time.
type progress struct {
	mu      sync.Mutex
	times   []int64 // unix ns
	totals  []int64
	stopc   chan struct{}
	done    chan struct{}
	clients []*wsClient
}

func startProgress(clients []*wsClient) *progress {
	p := &progress{stopc: make(chan struct{}), done: make(chan struct{}), clients: clients}
	go func() {
		defer close(p.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			p.sample()
			select {
			case <-p.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *progress) sample() {
	var total int64
	for _, c := range p.clients {
		total += c.got.Load()
	}
	p.mu.Lock()
	p.times = append(p.times, time.Now().UnixNano())
	p.totals = append(p.totals, total)
	p.mu.Unlock()
}

func (p *progress) stop() {
	close(p.stopc)
	<-p.done
}

// at is the total delivered at unix time ns, interpolated between samples.
func (p *progress) at(ns int64) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 1; i < len(p.times); i++ {
		if p.times[i] >= ns {
			t0, t1 := p.times[i-1], p.times[i]
			f := float64(ns-t0) / float64(max(t1-t0, 1))
			return float64(p.totals[i-1]) + f*float64(p.totals[i]-p.totals[i-1])
		}
	}
	if len(p.totals) == 0 {
		return 0
	}
	return float64(p.totals[len(p.totals)-1])
}

// serverBudget is the memory budget the started server runs with: --memory-budget
// in --server-args, else serve's default.
func (b *bencher) serverBudget() (int64, error) {
	args := b.cfg.serverArgs
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--memory-budget=")
		if !ok && a == "--memory-budget" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			n, err := parseBytes(v)
			if err != nil {
				return 0, fmt.Errorf("--server-args --memory-budget: %w", err)
			}
			return n, nil
		}
	}
	return 256 << 20, nil
}

// parseBytes reads a byte count with an optional binary unit: 268435456, 256MiB,
// 256MB (taken as MiB), 1GiB.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"GB", 1 << 30}, {"MiB", 1 << 20}, {"MB", 1 << 20}, {"KiB", 1 << 10}, {"KB", 1 << 10}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a byte count", s)
	}
	return n * mult, nil
}

func (b *bencher) w7(ctx context.Context) runResult {
	budget, err := b.serverBudget()
	if err != nil {
		return errResult(err)
	}
	e, err := b.newEnv(ctx, "W7")
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	var r runResult
	clients, err := dialClients(ctx, e.srv.url, b.cfg.subs, subSpec{table: benchTable, since: e.base}, false)
	if err != nil {
		return errResult(err)
	}
	b.logf("W7: %d subscribed; writer flat out for %v", len(clients), b.cfg.sustain)
	srvS, selfS := startSampler(e.srv.pid), startSampler(0)
	prog := startProgress(clients)
	prof := e.cpuProfile("cpu", b.cfg.sustain)
	spec := e.writer(writerSpec{Duration: b.cfg.sustain, Txn: 100})
	spec.Payload = sustainedPayload
	w, err := runWriter(ctx, b.exe, spec)
	prof()
	if err != nil {
		prog.stop()
		closeClients(clients)
		return errResult(err)
	}
	e.fetchProfile("heap", "heap") // with --pprof: what the memory holds at the peak of the backlog
	b.logf("W7: writer done: %d rows at %.0f/s; measuring the drain for %v", w.Rows, w.RowsPerSec, drainSpell)
	want := w.Head - e.base
	drainStart := time.Now()
	complete := false
	for time.Since(drainStart) < drainSpell {
		if waitDelivered(ctx, clients, want, 200*time.Millisecond) {
			complete = true
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
	}
	drainEnd := time.Now()
	prog.stop()
	r.Server, r.Load = srvS.stop(), selfS.stop()
	closeClients(clients)

	steady := (prog.at(w.EndNS) - prog.at(w.StartNS)) / (float64(w.EndNS-w.StartNS) / 1e9)
	drain := (prog.at(drainEnd.UnixNano()) - prog.at(drainStart.UnixNano())) / drainEnd.Sub(drainStart).Seconds()
	backlog := float64(want)*float64(len(clients)) - prog.at(drainEnd.UnixNano())
	rssLimit := float64(budget+64<<20) / (1 << 20)
	r.Metrics = []metric{
		{Name: "delivered changes/s while writing", Unit: "changes/s", Value: steady, Cmp: ">=", Target: 1_000_000},
		{Name: "server RSS max", Unit: "MB", Value: r.Server.RSSMaxMB, Cmp: "<=", Target: rssLimit},
	}
	if complete {
		r.infof("every subscriber had everything %.1f s after the writer stopped", drainEnd.Sub(drainStart).Seconds())
	} else {
		r.Metrics = append(r.Metrics, metric{Name: "drain changes/s after the writer stopped", Unit: "changes/s", Value: drain, Cmp: ">=", Target: 1_000_000})
		r.infof("backlog left after the %v drain spell: %s deliveries", drainSpell, commas(int64(backlog)))
	}
	r.Writers = map[string]writerResult{"writer": w}
	r.infof("writer: %d rows in 100-row transactions at %s rows/s for %.1f s (~300-byte changes); memory budget %d MB",
		w.Rows, commas(int64(w.RowsPerSec)), float64(w.EndNS-w.StartNS)/1e9, budget>>20)
	// Every subscriber must have what it received in order, once each, from since on:
	// judged up to what it got (the rest is still on its way, not lost).
	var v verdict
	for _, c := range clients {
		cv := c.ver.judge(c.ver.last)
		if p := c.problemText(); p != "" {
			cv.Disconnected, cv.BadSubs = 1, max(cv.BadSubs, 1)
			cv.FirstProblem = p
		}
		v.add(cv)
	}
	r.Checks = append(r.Checks, verdictCheck("delivery (in order, once each, no gap up to what arrived)", v))
	return r
}
