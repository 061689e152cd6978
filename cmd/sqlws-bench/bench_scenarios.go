package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/store"
)

// env is where one scenario run happens: a server and the database it serves, with
// the bench table in place and capture triggers installed.
type env struct {
	b        *bencher
	name     string
	debugURL string // the server's pprof base URL with --pprof, else ""
	dir      string // temporary directory ("" in target mode)
	db       string
	srv      *serverProc
	base     int64 // changelog head when the environment was ready
}

// newEnv starts a server on a fresh database (or attaches to --target) with the
// bench table created before the server starts, so its triggers exist at once.
func (b *bencher) newEnv(ctx context.Context, name string, serverArgs ...string) (*env, error) {
	e := &env{b: b, name: name}
	if b.cfg.target != "" {
		e.db = b.cfg.db
		e.srv = &serverProc{url: strings.TrimSuffix(b.cfg.target, "/"), db: e.db}
		e.srv.pid = findListenerPID(strings.TrimPrefix(strings.TrimPrefix(e.srv.url, "http://"), "https://"))
		if err := setupDB(ctx, e.db, benchTable); err != nil {
			return nil, err
		}
		if err := waitTriggers(ctx, e.db, benchTable, 30*time.Second); err != nil {
			return nil, err
		}
	} else {
		dir, err := os.MkdirTemp("", "sqlws-bench-"+name+"-")
		if err != nil {
			return nil, err
		}
		e.dir = dir
		e.db = filepath.Join(dir, "bench.db")
		if err := setupDB(ctx, e.db, benchTable); err != nil {
			e.close()
			return nil, err
		}
		args := append(slices.Clone(serverArgs), b.cfg.serverArgs...)
		if b.cfg.pprofDir != "" {
			args = append(args, "--debug-addr", "127.0.0.1:0")
		}
		e.srv, err = startServer(ctx, b.cfg.sqlws, e.db, filepath.Join(dir, "server.log"), args)
		if err != nil {
			e.close()
			return nil, err
		}
		if b.cfg.pprofDir != "" {
			e.debugURL = waitDebugURL(e.srv.logPath, 10*time.Second)
		}
		b.logf("%s: server pid %d at %s (db %s)", name, e.srv.pid, e.srv.url, e.db)
	}
	head, err := b.head(ctx, e.db)
	if err != nil {
		e.close()
		return nil, err
	}
	e.base = head
	return e, nil
}

var debugAddrRE = regexp.MustCompile(`addr=(http://\S+/debug/pprof/)`)

// waitDebugURL finds the pprof address the server logged (--debug-addr).
func waitDebugURL(logPath string, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		if m := debugAddrRE.FindSubmatch(b); m != nil {
			return string(m[1])
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ""
}

// cpuProfile starts collecting a CPU profile of the server for the given time, into
// --pprof DIR/<scenario>-<what>.pprof, and one of the load generator (this process)
// until the returned function is called, into <scenario>-loadgen-<what>.pprof. The
// returned function waits for both. Without --pprof it does nothing.
func (e *env) cpuProfile(what string, d time.Duration) func() {
	if e.debugURL == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.fetchProfile(fmt.Sprintf("profile?seconds=%d", max(int(d.Seconds()+0.5), 1)), what)
	}()
	var self *os.File
	if f, err := os.Create(filepath.Join(e.b.cfg.pprofDir, e.name+"-loadgen-"+what+".pprof")); err == nil {
		if pprof.StartCPUProfile(f) == nil {
			self = f
		} else {
			f.Close()
		}
	}
	return func() {
		if self != nil {
			pprof.StopCPUProfile()
			self.Close()
		}
		<-done
	}
}

// fetchProfile saves the server's /debug/pprof/<query> into --pprof DIR.
func (e *env) fetchProfile(query, what string) {
	if e.debugURL == "" {
		return
	}
	resp, err := http.Get(e.debugURL + query)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: pprof %s: %v\n", query, err)
		return
	}
	defer resp.Body.Close()
	ext := ".pprof"
	if strings.Contains(query, "debug=") {
		ext = ".txt"
	}
	path := filepath.Join(e.b.cfg.pprofDir, e.name+"-"+what+ext)
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

func (b *bencher) head(ctx context.Context, path string) (int64, error) {
	d, err := openDirect(path)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	return changelogHead(ctx, d)
}

func (e *env) close() {
	if e.srv != nil {
		e.srv.stop()
	}
	if e.dir != "" {
		if e.b.cfg.keep {
			fmt.Fprintf(os.Stderr, "bench: kept %s\n", e.dir)
		} else {
			os.RemoveAll(e.dir)
		}
	}
}

// serverLogTail is the end of the server's log, for failures.
// verifyDelivery adds the checks every delivery scenario makes: the writer moved the
// head by what it wrote, every subscriber got every change once and in order, and
// delivery finished; on failure it adds the server log's tail.
func (e *env) verifyDelivery(r *runResult, w writerResult, rep clientReport, complete bool) {
	r.Checks = append(r.Checks, headCheck(e.base, w), verdictCheck("subscribers", rep.verdict))
	if !complete && rep.verdict.ok() {
		r.Checks = append(r.Checks, check{Label: "drain", Detail: "timed out"})
	}
	if !rep.verdict.ok() {
		r.infof("server log: %s", e.serverLogTail())
	}
}

func (e *env) serverLogTail() string {
	if e.srv == nil || e.srv.logPath == "" {
		return ""
	}
	return tailFile(e.srv.logPath, 1500)
}

func errResult(err error) runResult { return runResult{Err: err.Error()} }

func (e *env) writer(s writerSpec) writerSpec {
	s.DB = e.db
	s.Table = benchTable
	s.Payload = e.b.cfg.payload
	return s
}

// headCheck verifies that the writer's rows are exactly the changelog's new seqs: every
// row was captured, once, and nothing else wrote meanwhile.
func headCheck(base int64, w writerResult) check {
	ok := w.Head-base == w.Rows
	return check{Label: "capture", OK: ok,
		Detail: fmt.Sprintf("writer wrote %d rows; changelog head moved %d → %d (%d changes)%s",
			w.Rows, base, w.Head, w.Head-base, map[bool]string{true: " — OK", false: " — FAIL (capture lost rows or another process wrote)"}[ok])}
}

// drainTimeout is how long delivery may stall (no subscriber receiving anything)
// before the missing changes count as lost.
func drainTimeout(d time.Duration) time.Duration { return max(30*time.Second, 3*d) }

// ---------------------------------------------------------------------------
// W1: latency at 100 changes/s

func (b *bencher) w1(ctx context.Context) runResult {
	e, err := b.newEnv(ctx, "W1")
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	var r runResult
	clients, err := dialClients(ctx, e.srv.url, b.cfg.subs, subSpec{table: benchTable, since: e.base}, true)
	if err != nil {
		return errResult(err)
	}
	b.logf("W1: %d subscribed", len(clients))
	srvS, selfS := startSampler(e.srv.pid), startSampler(0)
	prof := e.cpuProfile("cpu", b.cfg.w1Duration())
	w, err := runWriter(ctx, b.exe, e.writer(writerSpec{Duration: b.cfg.w1Duration(), Rate: 100, Txn: 1}))
	if err != nil {
		closeClients(clients)
		return errResult(err)
	}
	complete := waitDelivered(ctx, clients, w.Head-e.base, drainTimeout(b.cfg.duration))
	r.Server, r.Load = srvS.stop(), selfS.stop()
	prof()
	closeClients(clients)
	rep := collect(clients, w.Head)
	lat := rep.lat.summary()
	r.Metrics = []metric{
		{Name: "commit → client p99", Unit: "ms", Value: lat.P99MS, Cmp: "<=", Target: 25},
		{Name: "commit → client p50", Unit: "ms", Value: lat.P50MS},
		{Name: "commit → client p99.9", Unit: "ms", Value: lat.P999MS},
		{Name: "commit → client max", Unit: "ms", Value: lat.MaxMS},
	}
	r.Latency = map[string]latSummary{"commit_to_client": lat}
	r.Writers = map[string]writerResult{"writer": w}
	r.infof("%s", frameCost(r.Server, r.Load, rep))
	r.infof("writer: %d rows in 1-row transactions at %.0f rows/s; deliveries %s; frames %s (%.2f changes/frame)",
		w.Rows, w.RowsPerSec, commas(rep.verdict.Received), commas(rep.frames), float64(rep.verdict.Received)/float64(max(rep.frames, 1)))
	e.verifyDelivery(&r, w, rep, complete)
	return r
}

// ---------------------------------------------------------------------------
// W2: delivered changes/s with the writer flat out

func (b *bencher) w2(ctx context.Context) runResult {
	e, err := b.newEnv(ctx, "W2")
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	var r runResult
	clients, err := dialClients(ctx, e.srv.url, b.cfg.subs, subSpec{table: benchTable, since: e.base}, true)
	if err != nil {
		return errResult(err)
	}
	b.logf("W2: %d subscribed", len(clients))
	rows := b.cfg.w2RowCount()
	srvS, selfS := startSampler(e.srv.pid), startSampler(0)
	prof := e.cpuProfile("cpu", b.cfg.duration)
	w, err := runWriter(ctx, b.exe, e.writer(writerSpec{Rows: rows, Txn: 100}))
	if err != nil {
		closeClients(clients)
		return errResult(err)
	}
	b.logf("W2: writer done: %d rows at %.0f/s", w.Rows, w.RowsPerSec)
	complete := waitDelivered(ctx, clients, w.Head-e.base, drainTimeout(b.cfg.duration))
	r.Server, r.Load = srvS.stop(), selfS.stop()
	prof()
	closeClients(clients)
	rep := collect(clients, w.Head)
	span := time.Duration(rep.lastNS - w.StartNS)
	rate := float64(rep.verdict.Received) / span.Seconds()
	r.Metrics = []metric{
		{Name: "delivered changes/s", Unit: "changes/s", Value: rate, Cmp: ">=", Target: 1_000_000},
		{Name: "first commit → last delivery", Unit: "s", Value: span.Seconds()},
	}
	lat := rep.lat.summary()
	r.Latency = map[string]latSummary{"commit_to_client": lat}
	r.Writers = map[string]writerResult{"writer": w}
	r.infof("%s", frameCost(r.Server, r.Load, rep))
	r.infof("writer: %d rows (100-row transactions) at %s rows/s, done in %.2f s; %s deliveries in %s frames (%.0f changes/frame, %.1f MB)",
		w.Rows, commas(int64(w.RowsPerSec)), float64(w.EndNS-w.StartNS)/1e9, commas(rep.verdict.Received), commas(rep.frames),
		float64(rep.verdict.Received)/float64(max(rep.frames, 1)), float64(rep.bytes)/1e6)
	r.infof("commit → client under saturation: %s", lat)
	e.verifyDelivery(&r, w, rep, complete)
	return r
}

// ---------------------------------------------------------------------------
// W3: RSS per idle connection

func (b *bencher) w3(ctx context.Context) runResult {
	n := b.cfg.idle
	if b.nofile < uint64(n+256) {
		return errResult(fmt.Errorf("open-files limit %d is too low for %d connections: raise it (ulimit -n %d)", b.nofile, n, n+1024))
	}
	e, err := b.newEnv(ctx, "W3")
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	var r runResult
	if e.srv.pid == 0 {
		return errResult(fmt.Errorf("cannot find the server's process to read its RSS"))
	}
	if lim := processNoFile(e.srv.pid); lim != 0 && lim < uint64(n+256) {
		return errResult(fmt.Errorf("the server's open-files limit is %d, too low for %d connections", lim, n))
	}
	srvS := startSampler(e.srv.pid)
	// Baseline: the server started and idle. One connection first warms up the code
	// paths (and pools) every connection shares, so they are not charged to the N.
	warm, err := dialClients(ctx, e.srv.url, 1, subSpec{table: benchTable, since: e.base}, false)
	if os.Getenv("NOWARM") != "" {
		warm = nil
	}
	if err != nil {
		return errResult(err)
	}
	closeClients(warm)
	idle := startSampler(e.srv.pid)
	time.Sleep(2 * time.Second)
	idleCPU := idle.stop()
	base := medianRSS(srvS, 5, 100*time.Millisecond)
	e.fetchProfile("heap", "heap-base")
	e.fetchProfile("heap?debug=1", "memstats-base")
	t0 := time.Now()
	selfS := startSampler(0)
	clients, err := dialClients(ctx, e.srv.url, n, subSpec{table: benchTable, since: e.base}, true)
	if err != nil {
		srvS.stop()
		return errResult(err)
	}
	connectTime := time.Since(t0)
	time.Sleep(2 * time.Second)
	withN := medianRSS(srvS, 10, 100*time.Millisecond)
	_, threads, _ := readRSS(e.srv.pid)
	e.fetchProfile("heap", "heap")
	e.fetchProfile("goroutine?debug=1", "goroutines")
	e.fetchProfile("heap?debug=1", "memstats")
	perConn := float64(withN-base) / float64(n) // KiB
	r.Metrics = []metric{
		{Name: "server RSS per connection", Unit: "KB", Value: perConn * 1024 / 1000, Cmp: "<=", Target: 20},
		{Name: "server RSS baseline", Unit: "MB", Value: float64(base) / 1024},
		{Name: fmt.Sprintf("server RSS with %d", n), Unit: "MB", Value: float64(withN) / 1024},
	}
	r.infof("connected and subscribed %d in %.1f s; server threads %d; RSS per connection %.1f KiB", n, connectTime.Seconds(), threads, perConn)
	r.infof("idle server (no connections, 2 s): CPU %.3f cores", idleCPU.CPUCores)

	// Verify the idle subscribers are live: 10 changes must reach every one.
	w, err := runWriter(ctx, b.exe, e.writer(writerSpec{Rows: 10, Txn: 1, Rate: 20}))
	if err != nil {
		closeClients(clients)
		srvS.stop()
		return errResult(err)
	}
	waitDelivered(ctx, clients, w.Head-e.base, drainTimeout(b.cfg.duration))
	r.Server, r.Load = srvS.stop(), selfS.stop()
	closeClients(clients)
	rep := collect(clients, w.Head)
	lat := rep.lat.summary()
	r.Latency = map[string]latSummary{"fanout_to_idle": lat}
	r.infof("10 changes at 20/s fanned out to %d subscribers: %s", n, lat)
	r.Checks = append(r.Checks, headCheck(e.base, w), verdictCheck("subscribers", rep.verdict))
	return r
}

// frameCost is the CPU each side spent per changes frame and per delivered change.
func frameCost(server, load procStats, rep clientReport) string {
	if rep.frames == 0 {
		return "no frames"
	}
	f, c := float64(rep.frames), float64(max(rep.verdict.Received, 1))
	return fmt.Sprintf("%s frames/s over the phase; CPU per frame: server %.1f µs, load generator %.1f µs; per delivered change: server %.2f µs",
		commas(int64(f/max(server.CPUSec/max(server.CPUCores, 1e-9), 1e-9))), server.CPUSec*1e6/f, load.CPUSec*1e6/f, server.CPUSec*1e6/c)
}

// medianRSS samples RSS k times, every interval, and returns the median in KiB.
func medianRSS(s *sampler, k int, every time.Duration) int64 {
	v := make([]float64, 0, k)
	for i := range k {
		if i > 0 {
			time.Sleep(every)
		}
		v = append(v, float64(s.rssNow()))
	}
	return int64(median(v))
}

// ---------------------------------------------------------------------------
// W4: one client resuming far behind

func (b *bencher) w4(ctx context.Context) runResult {
	var args []string
	if b.cfg.short && b.cfg.target == "" {
		// Like the full run (1M changes behind a 100k window), serve 90% from the
		// changelog rather than the in-memory window.
		args = []string{"--window-changes", fmt.Sprint(max(b.cfg.w4Rows/10, 1))}
	}
	e, err := b.newEnv(ctx, "W4", args...)
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	var r runResult
	rows := b.cfg.w4Rows
	w, err := runWriter(ctx, b.exe, e.writer(writerSpec{Rows: rows, Txn: 1000}))
	if err != nil {
		return errResult(err)
	}
	b.logf("W4: wrote %d rows at %.0f/s", w.Rows, w.RowsPerSec)
	time.Sleep(time.Second) // let the tailer publish the tail into the window
	srvS, selfS := startSampler(e.srv.pid), startSampler(0)
	prof := e.cpuProfile("cpu", 5*time.Second)
	t0 := time.Now()
	clients, err := dialClients(ctx, e.srv.url, 1, subSpec{table: benchTable, since: e.base}, false)
	if err != nil {
		srvS.stop()
		selfS.stop()
		return errResult(err)
	}
	waitDelivered(ctx, clients, w.Head-e.base, drainTimeout(b.cfg.duration))
	r.Server, r.Load = srvS.stop(), selfS.stop()
	prof()
	closeClients(clients)
	rep := collect(clients, w.Head)
	span := time.Duration(rep.lastNS - t0.UnixNano())
	rate := float64(rep.verdict.Received) / span.Seconds()
	r.Metrics = []metric{
		{Name: "resume changes/s", Unit: "changes/s", Value: rate, Cmp: ">=", Target: 300_000},
		{Name: "resume time", Unit: "s", Value: span.Seconds()},
	}
	r.Writers = map[string]writerResult{"writer": w}
	if len(args) > 0 {
		r.infof("--short: server started with %s so that, as in the full run, 90%% of the changes come from the changelog, not the window", strings.Join(args, " "))
	}
	r.infof("writer: %d rows in 1000-row transactions at %s rows/s (with capture); resume: %s frames, %.1f MB, %.0f changes/frame",
		w.Rows, commas(int64(w.RowsPerSec)), commas(rep.frames), float64(rep.bytes)/1e6, float64(rep.verdict.Received)/float64(max(rep.frames, 1)))
	r.Checks = append(r.Checks, headCheck(e.base, w), verdictCheck("resuming client", rep.verdict))
	return r
}

// ---------------------------------------------------------------------------
// W5: write throughput with and without capture

func (b *bencher) w5(ctx context.Context) runResult {
	var r runResult
	dir, err := os.MkdirTemp("", "sqlws-bench-W5-")
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
	plain := filepath.Join(dir, "plain.db")
	trig := filepath.Join(dir, "triggers.db")
	naive := filepath.Join(dir, "naive.db")
	for _, p := range []string{plain, trig, naive} {
		if err := setupDB(ctx, p, benchTable); err != nil {
			return errResult(err)
		}
	}
	// Triggers only: install capture as the server would, with no server running.
	if err := installCapture(ctx, trig); err != nil {
		return errResult(err)
	}
	// The reference the targets were set against: a plain json_object trigger into an
	// AUTOINCREMENT log, which loses REAL precision and fails on BLOBs.
	if err := installNaiveCapture(ctx, naive); err != nil {
		return errResult(err)
	}
	// Capture with the server running (its tailer reading beside the writer): the
	// configuration users run, and the headline.
	e, err := b.newEnv(ctx, "W5")
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	srvS := startSampler(e.srv.pid)

	d := b.cfg.w5Duration()
	type variant struct{ name, db string }
	variants := []variant{{"plain", plain}, {"naive", naive}, {"triggers", trig}, {"served", e.db}}
	// Each variant writes for d in w5Slices slices, interleaved, each round in a
	// rotated order: on a shared machine throughput drifts over seconds, and one run
	// per variant in a fixed order let that drift favour whichever ran first.
	const w5Slices = 3
	slice := max(d/w5Slices, 300*time.Millisecond)
	rates := map[string]float64{}
	r.Writers = map[string]writerResult{}
	for _, txn := range []int{1, 1000} {
		for round := range w5Slices {
			for k := range variants {
				v := variants[(k+round)%len(variants)]
				before, err := b.head(ctx, v.db)
				if err != nil {
					return errResult(err)
				}
				spec := writerSpec{DB: v.db, Table: benchTable, Duration: slice, Txn: txn, Payload: b.cfg.payload, Python: b.cfg.w5Python}
				if b.cfg.pprofDir != "" && round == 0 && !spec.Python {
					spec.Profile = filepath.Join(b.cfg.pprofDir, fmt.Sprintf("W5-writer-%s-%d.pprof", v.name, txn))
				}
				w, err := runWriter(ctx, b.exe, spec)
				if err != nil {
					return errResult(err)
				}
				key := fmt.Sprintf("%s/%d", v.name, txn)
				r.Writers[key] = addWriter(r.Writers[key], w)
				b.logf("W5 %s slice %d: %.0f rows/s", key, round+1, w.RowsPerSec)
				if v.name != "plain" && v.name != "naive" {
					c := headCheck(before, w)
					c.Label = fmt.Sprintf("capture %s, slice %d", key, round+1)
					r.Checks = append(r.Checks, c)
				}
			}
		}
	}
	for key, w := range r.Writers {
		rates[key] = w.RowsPerSec
	}
	r.Server = srvS.stop()
	ratio := func(v string, txn int) float64 {
		return rates[fmt.Sprintf("%s/%d", v, txn)] / rates[fmt.Sprintf("plain/%d", txn)]
	}
	r.Metrics = []metric{
		{Name: "1-row txns: with ÷ without", Unit: "ratio", Value: ratio("served", 1), Cmp: ">=", Target: 0.5},
		{Name: "1000-row txns: with ÷ without", Unit: "ratio", Value: ratio("served", 1000), Cmp: ">=", Target: 0.4},
		{Name: "1-row txns: triggers only ÷ without", Unit: "ratio", Value: ratio("triggers", 1)},
		{Name: "1000-row txns: triggers only ÷ without", Unit: "ratio", Value: ratio("triggers", 1000)},
		{Name: "1-row txns: naive json_object trigger ÷ without", Unit: "ratio", Value: ratio("naive", 1)},
		{Name: "1000-row txns: naive json_object trigger ÷ without", Unit: "ratio", Value: ratio("naive", 1000)},
		{Name: "1-row txns without capture", Unit: "rows/s", Value: rates["plain/1"]},
		{Name: "1-row txns with capture (served)", Unit: "rows/s", Value: rates["served/1"]},
		{Name: "1000-row txns without capture", Unit: "rows/s", Value: rates["plain/1000"]},
		{Name: "1000-row txns with capture (served)", Unit: "rows/s", Value: rates["served/1000"]},
	}
	writer := "a Go writer on modernc.org/sqlite (sqlws-bench writer)"
	if b.cfg.w5Python {
		writer = "a Python writer on the C library's SQLite (writer.py, executemany)"
	}
	r.infof("writer: %s", writer)
	r.infof("each variant wrote for %v, in %d interleaved slices; 'served' = triggers installed and sqlws serving the file (tailer reading); 'triggers' = triggers, no server; 'naive' = one trigger writing json_object(id, bench_ns, payload) into an AUTOINCREMENT log, the issue's reference (lossy for REAL, fails on BLOB, no key or timestamp)", d, w5Slices)
	return r
}

// addWriter accumulates writer runs of one variant: rows and time add up, so the
// rate is rows over the time spent writing.
func addWriter(acc, w writerResult) writerResult {
	if acc.Txns == 0 {
		acc.StartNS = w.StartNS
	}
	acc.Rows += w.Rows
	acc.Txns += w.Txns
	acc.CPUSec += w.CPUSec
	acc.MaxTxnUS = max(acc.MaxTxnUS, w.MaxTxnUS)
	acc.Head = w.Head
	acc.EndNS = w.EndNS
	acc.busyNS += w.EndNS - w.StartNS
	if acc.busyNS > 0 {
		acc.RowsPerSec = float64(acc.Rows) / (float64(acc.busyNS) / 1e9)
	}
	return acc
}

// installCapture installs sqlws's changelog and capture triggers in path, exactly as
// `sqlws serve` does at start-up, without serving it.
func installCapture(ctx context.Context, path string) error {
	d, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		return err
	}
	_, err = capture.NewSyncer(capture.NewSchema(d, capture.Options{})).Sync(ctx)
	return err
}

// installNaiveCapture installs the simplest capture there is, for reference: one
// AFTER INSERT trigger writing json_object of the new row into an AUTOINCREMENT log.
func installNaiveCapture(ctx context.Context, path string) error {
	d, err := openDirect(path)
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = d.ExecContext(ctx, `
		CREATE TABLE naive_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, op TEXT NOT NULL, old TEXT, new TEXT);
		CREATE TRIGGER naive_insert AFTER INSERT ON `+quoteIdent(benchTable)+` BEGIN
			INSERT INTO naive_log (tbl, op, new) VALUES ('`+benchTable+`', 'insert',
				json_object('id', NEW.id, '`+stampColumn+`', NEW.`+stampColumn+`, 'payload', NEW.payload));
		END`)
	return err
}

// ---------------------------------------------------------------------------
// W6: REST create latency with and without subscribers

type restResult struct {
	lat     latHist
	rows    int64
	lastSeq int64
	seqErrs int64
}

// restPhaseRecord POSTs rows at rate for d, one request at a time, and records
// latencies (also appended to lats, in microseconds, when lats is not nil).
func restPhaseRecord(ctx context.Context, hc *http.Client, url string, d time.Duration, rate float64, payload string, prevSeq int64, lats *[]int64) (restResult, error) {
	res := restResult{lastSeq: prevSeq}
	start := time.Now()
	every := time.Duration(float64(time.Second) / rate)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * every)
		if at.Sub(start) >= d || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Until(at))
		body := `{"` + stampColumn + `":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `,"payload":"` + payload + `"}`
		t0 := time.Now()
		resp, err := hc.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return res, err
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		el := time.Since(t0)
		if resp.StatusCode != http.StatusCreated {
			return res, fmt.Errorf("POST %s: %s: %.200s", url, resp.Status, rb)
		}
		res.lat.add(el.Microseconds())
		if lats != nil {
			*lats = append(*lats, el.Microseconds())
		}
		res.rows++
		var out struct {
			Seq int64 `json:"seq"`
		}
		if json.Unmarshal(rb, &out) != nil || out.Seq != res.lastSeq+1 {
			res.seqErrs++
		}
		res.lastSeq = out.Seq
	}
	return res, nil
}

func (b *bencher) w6(ctx context.Context) runResult {
	e, err := b.newEnv(ctx, "W6")
	if err != nil {
		return errResult(err)
	}
	defer e.close()
	var r runResult
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	url := e.srv.url + "/api/tables/" + benchTable + "/rows"

	// Probe: does REST create exist in this build?
	probe := `{"` + stampColumn + `":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `,"payload":"probe"}`
	resp, err := hc.Post(url, "application/json", strings.NewReader(probe))
	if err != nil {
		return errResult(err)
	}
	pb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return runResult{Unavailable: fmt.Sprintf("POST /api/tables/%s/rows answers %s: REST create is not in this build", benchTable, resp.Status)}
	case resp.StatusCode != http.StatusCreated:
		return errResult(fmt.Errorf("probe POST %s: %s: %.200s", url, resp.Status, bytes.TrimSpace(pb)))
	}
	base, err := b.head(ctx, e.db)
	if err != nil {
		return errResult(err)
	}
	const rate = 100
	d := b.cfg.duration
	srvS, selfS := startSampler(e.srv.pid), startSampler(0)
	none, err := runRestChild(ctx, b.exe, url, d, rate, b.cfg.payload, base)
	if err != nil {
		return errResult(err)
	}
	base = none.lastSeq
	clients, err := dialClients(ctx, e.srv.url, b.cfg.subs, subSpec{table: benchTable, since: base}, true)
	if err != nil {
		return errResult(err)
	}
	prof := e.cpuProfile("cpu-with-subs", d)
	with, err := runRestChild(ctx, b.exe, url, d, rate, b.cfg.payload, base)
	prof()
	if err != nil {
		closeClients(clients)
		return errResult(err)
	}
	waitDelivered(ctx, clients, with.rows, drainTimeout(d))
	r.Server, r.Load = srvS.stop(), selfS.stop()
	closeClients(clients)
	rep := collect(clients, with.lastSeq)
	p50n, p50w := float64(none.lat.quantile(0.5))/1000, float64(with.lat.quantile(0.5))/1000
	r.Metrics = []metric{
		{Name: "REST create p50 ratio", Unit: "ratio", Value: p50w / p50n, Cmp: "<=", Target: 1.5},
		{Name: "REST create p50, no subscribers", Unit: "ms", Value: p50n},
		{Name: fmt.Sprintf("REST create p50, %d subscribers", b.cfg.subs), Unit: "ms", Value: p50w},
	}
	r.Latency = map[string]latSummary{"rest_none": none.lat.summary(), "rest_with": with.lat.summary(), "rest_to_client": rep.lat.summary()}
	r.infof("REST create, no subscribers: %s", none.lat.summary())
	r.infof("REST create, %d subscribers: %s", b.cfg.subs, with.lat.summary())
	r.infof("REST commit → client: %s", rep.lat.summary())
	r.infof("%s (both phases)", frameCost(r.Server, r.Load, rep))
	seqOK := none.seqErrs == 0 && with.seqErrs == 0
	r.Checks = append(r.Checks,
		check{Label: "REST seq", OK: seqOK, Detail: fmt.Sprintf("%d + %d creates, each answered with the next seq: %d mismatches%s",
			none.rows, with.rows, none.seqErrs+with.seqErrs, map[bool]string{true: " — OK", false: " — FAIL"}[seqOK])},
		verdictCheck("subscribers", rep.verdict))
	return r
}
