package main

// `sqlws-bench` runs the load scenarios of docs/performance.md against a server it
// starts (the sqlws binary of --sqlws, `serve`, on a fresh temporary database per
// scenario run) or against a running one (--target URL --db PATH), and prints a table
// and optionally JSON. Writes come from a separate writer process (`sqlws-bench
// writer`, see bench_writer.go). Every scenario verifies what it measures — each subscriber must get
// every change exactly once and in order — and a run with a lost, duplicated or
// out-of-order change fails with a non-zero exit. Missing a performance target does
// not fail the run; it prints MISS.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const benchUsage = `Usage: sqlws-bench [--sqlws PATH] [flags]

Runs the load scenarios and prints figures against the targets (docs/performance.md):

  W1  N subscribers, 100 changes/s from another process: commit → client latency
  W2  N subscribers, writer flat out: delivered changes/s, summed over subscribers
  W3  idle subscribers (connected + subscribed): server RSS per connection
  W4  one client resuming 1,000,000 changes behind (since=0): changes/s
  W5  write throughput with capture ÷ without (1-row and 1,000-row transactions)
  W6  REST create p50 with N subscribers ÷ with none
  W7  N subscribers, writer flat out for --sustain (15 s): delivered changes/s over
      the whole write window, server RSS against its memory budget, and the rate
      at which the backlog drains once the writer stops
  W8  scale-out: a source, a nats-server (JetStream) and two edges, each a process,
      N subscribers split across the edges: commit → client latency at 100 changes/s
      for --w8-steady (30 s), the JetStream hop's CPU per change, and delivered
      changes/s summed over the edges with the writer flat out (--nats-server)

By default each scenario run starts the sqlws binary's 'serve' (--sqlws; default: the
sqlws beside this binary, else sqlws on PATH) on a fresh temporary database at
127.0.0.1:0. With --target URL --db PATH it uses a running server instead
(PATH must be the database that server serves, on this machine; nothing else may write
to it during the run). Lost, duplicated or out-of-order changes fail the run (exit 1);
a missed target only prints MISS.

Flags:
`

type benchConfig struct {
	scenarios  []string
	short      bool
	subs       int
	idle       int
	duration   time.Duration
	jsonPath   string
	target     string
	db         string
	runs       int
	payload    int
	w2Rows     int64
	w4Rows     int64
	filterSubs int // F1's subscribers
	sustain    time.Duration
	serverArgs []string
	sqlws      string
	keep       bool
	verbose    bool
	pprofDir   string
	w5Python   bool          // --w5-writer python3
	natsServer string        // W8's nats-server binary (--nats-server)
	w8Steady   time.Duration // W8's paced phase
	w8Rows     int64         // W8's flat-out rows
}

// derived sizes
func (c *benchConfig) w1Duration() time.Duration { return c.duration }
func (c *benchConfig) w5Duration() time.Duration {
	return max(c.duration/3, time.Second)
}
func (c *benchConfig) w2RowCount() int64 {
	if c.w2Rows > 0 {
		return c.w2Rows
	}
	// Enough rows that, at the 1,000,000/s target, delivery takes about --duration.
	return max(int64(1e6*c.duration.Seconds())/int64(c.subs), 1000)
}

var allScenarios = []string{"W1", "W1R", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "F1", "F2"}

func bench(ctx context.Context, args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "writer" {
		return benchWriter(ctx, args[1:], out)
	}
	if len(args) > 0 && args[0] == "rest" {
		return benchRest(ctx, args[1:], out)
	}
	if len(args) > 0 && args[0] == "refserver" {
		return benchRefServer(ctx, args[1:], out)
	}
	var c benchConfig
	var scen, serverArgs string
	fs := flag.NewFlagSet("sqlws-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run")
	fs.BoolVar(&c.short, "short", false, "small sizes for a quick run (make bench): 100 subscribers, 1,000 idle, 100k-change W4, 3s phases, 5s paced W8")
	fs.IntVar(&c.subs, "subs", 0, "subscribers in W1, W2 and W6 (default 1000; 100 with --short)")
	fs.IntVar(&c.idle, "idle", 0, "idle subscribers in W3 (default 10000; 1000 with --short)")
	fs.DurationVar(&c.duration, "duration", 0, "length of W1 and of each W6 phase; W5 runs each writer for a third of it (default 10s; 3s with --short)")
	fs.StringVar(&c.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&c.target, "target", "", "URL of a running server (e.g. http://127.0.0.1:8080) instead of starting one")
	fs.StringVar(&c.db, "db", "", "with --target: the database file that server serves")
	fs.IntVar(&c.runs, "runs", 1, "run each scenario this many times and report the median")
	fs.IntVar(&c.payload, "payload", 64, "payload bytes per written row")
	fs.Int64Var(&c.w2Rows, "w2-rows", 0, "rows the W2 writer writes (default: 1e6 × duration ÷ subs)")
	fs.Int64Var(&c.w4Rows, "w4-rows", 0, "changes W4 resumes over (default 1,000,000; 100,000 with --short)")
	fs.IntVar(&c.filterSubs, "filter-subs", 0, "subscribers in F1, each with its own equality filter (default 10000; 1000 with --short)")
	fs.DurationVar(&c.sustain, "sustain", 0, "how long the W7 writer writes flat out (default 15s; 4s with --short)")
	fs.StringVar(&c.natsServer, "nats-server", "", "W8's nats-server binary (default: nats-server in this binary's directory, else on PATH; make nats-server builds it)")
	fs.DurationVar(&c.w8Steady, "w8-steady", 0, "how long W8's writer inserts 100 changes/s (default 30s; 5s with --short)")
	fs.Int64Var(&c.w8Rows, "w8-rows", 0, "rows W8's flat-out writer writes (default as W2's)")
	fs.StringVar(&c.sqlws, "sqlws", "", "the sqlws binary whose serve the scenarios start (default: sqlws in this binary's directory, else on PATH)")
	fs.StringVar(&serverArgs, "server-args", "", "extra space-separated flags for the started server (e.g. \"--window-changes 200000\")")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary databases and server logs")
	fs.BoolVar(&c.verbose, "v", false, "print progress")
	fs.StringVar(&c.pprofDir, "pprof", "", "save server CPU profiles of each measured phase (and W3 heap and goroutine profiles) into this directory; starts servers with --debug-addr")
	fs.BoolVar(&eagerSubscribe, "eager-subscribe", false, "subscribe as soon as the socket opens instead of after hello (reproduces a lost-first-byte race in the server's upgrade)")
	fs.StringVar(&benchClientKind, "client", defaultClientKind, "subscribers' WebSocket client: coder (github.com/coder/websocket, a reader goroutine per connection, as a stock Go client) or epoll (Linux: a minimal RFC 6455 client read by one epoll loop per core, a quarter less CPU per frame here)")
	w5Writer := fs.String("w5-writer", "go", "W5's writer: go (modernc.org/sqlite, as a Go application writes) or python3 (the C library's SQLite through Python's sqlite3 module, as most other programs and the sqlite3 shell write)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *w5Writer {
	case "go":
	case "python3":
		if _, err := exec.LookPath("python3"); err != nil {
			return fmt.Errorf("--w5-writer python3: %w", err)
		}
		c.w5Python = true
	default:
		return fmt.Errorf("--w5-writer: want go or python3, not %q", *w5Writer)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if benchClientKind != "epoll" && benchClientKind != "coder" {
		return fmt.Errorf("--client: want epoll or coder, not %q", benchClientKind)
	}
	defer stopPollers()
	for _, s := range splitList(scen) {
		s = strings.ToUpper(s)
		if !slices.Contains(allScenarios, s) {
			return fmt.Errorf("--scenarios: unknown scenario %q (want %s)", s, strings.Join(allScenarios, ","))
		}
		c.scenarios = append(c.scenarios, s)
	}
	if (c.target == "") != (c.db == "") {
		return fmt.Errorf("--target and --db go together")
	}
	if c.target != "" && serverArgs != "" {
		return fmt.Errorf("--server-args applies only to a server the bench starts")
	}
	if c.target != "" && c.sqlws != "" {
		return fmt.Errorf("--sqlws applies only to a server the bench starts")
	}
	c.serverArgs = strings.Fields(serverArgs)
	if c.subs <= 0 {
		c.subs = pick(c.short, 100, 1000)
	}
	if c.idle <= 0 {
		c.idle = pick(c.short, 1000, 10000)
	}
	if c.duration <= 0 {
		c.duration = pick(c.short, 3*time.Second, 10*time.Second)
	}
	if c.sustain <= 0 {
		c.sustain = pick(c.short, 4*time.Second, 15*time.Second)
	}
	if c.w8Steady <= 0 {
		c.w8Steady = pick(c.short, 5*time.Second, 30*time.Second)
	}
	if c.filterSubs <= 0 {
		c.filterSubs = pick(c.short, 1000, 10000)
	}
	if c.w4Rows <= 0 {
		c.w4Rows = int64(pick(c.short, 100_000, 1_000_000))
	}
	c.runs = max(c.runs, 1)
	if c.pprofDir != "" {
		if c.target != "" {
			return fmt.Errorf("--pprof needs a server the bench starts (use the server's own --debug-addr with --target)")
		}
		if err := os.MkdirAll(c.pprofDir, 0o755); err != nil {
			return err
		}
	}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	if c.target == "" {
		if c.sqlws, err = findSqlws(c.sqlws, exe); err != nil {
			return err
		}
	}
	b := &bencher{cfg: &c, exe: exe, out: out, started: time.Now()}
	b.logf("server binary %s", c.sqlws)
	b.nofile = raiseNoFile()
	b.machine = readMachine()
	if c.target != "" {
		abs, err := filepath.Abs(c.db)
		if err != nil {
			return err
		}
		c.db = abs
		if _, err := os.Stat(c.db); err != nil {
			return fmt.Errorf("--db: %w", err)
		}
	}
	return b.run(ctx, args)
}

func pick[T any](short bool, s, full T) T {
	if short {
		return s
	}
	return full
}

type bencher struct {
	cfg     *benchConfig
	exe     string // this binary, re-executed as the writer and REST helpers
	out     io.Writer
	started time.Time
	machine machineInfo
	nofile  uint64
	// results are the medians of the scenarios run so far, for ratios (F2 ÷ W2).
	results map[string][]metric
}

func (b *bencher) logf(format string, a ...any) {
	if b.cfg.verbose {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
	}
}

// ---------------------------------------------------------------------------
// Results

// metric is one figure. A metric with Cmp set is judged against Target.
type metric struct {
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Value  float64   `json:"value"`
	Cmp    string    `json:"cmp,omitempty"` // "<=" or ">="
	Target float64   `json:"target,omitempty"`
	Runs   []float64 `json:"runs,omitempty"` // every run's value (the Value is their median)
}

func (m metric) judged() bool { return m.Cmp != "" }

func (m metric) pass() bool {
	switch m.Cmp {
	case "<=":
		return m.Value <= m.Target
	case ">=":
		return m.Value >= m.Target
	}
	return true
}

// check is one verification of a run.
type check struct {
	Label   string   `json:"label"`
	OK      bool     `json:"ok"`
	Detail  string   `json:"detail"`
	Verdict *verdict `json:"verdict,omitempty"`
}

func verdictCheck(label string, v verdict) check {
	return check{Label: label, OK: v.ok(), Detail: v.String(), Verdict: &v}
}

// runResult is one run of one scenario.
type runResult struct {
	Metrics     []metric                `json:"metrics"`
	Checks      []check                 `json:"checks"`
	Server      procStats               `json:"server"`
	Load        procStats               `json:"load_generator"`
	Writers     map[string]writerResult `json:"writers,omitempty"`
	Latency     map[string]latSummary   `json:"latency,omitempty"`
	Info        []string                `json:"info,omitempty"`
	Unavailable string                  `json:"unavailable,omitempty"`
	Err         string                  `json:"error,omitempty"`
	Seconds     float64                 `json:"seconds"`
}

func (r *runResult) failed() bool {
	if r.Err != "" {
		return true
	}
	for _, c := range r.Checks {
		if !c.OK {
			return true
		}
	}
	return false
}

func (r *runResult) infof(format string, a ...any) {
	r.Info = append(r.Info, fmt.Sprintf(format, a...))
}

// scenarioResult is all runs of a scenario; Metrics hold the medians.
type scenarioResult struct {
	ID      string      `json:"id"`
	Title   string      `json:"title"`
	Status  string      `json:"status"` // PASS, MISS, FAIL, ERROR, UNAVAILABLE
	Metrics []metric    `json:"metrics"`
	Runs    []runResult `json:"runs"`
}

type benchReport struct {
	Date      string           `json:"date"`
	Command   string           `json:"command"`
	Machine   machineInfo      `json:"machine"`
	Mode      string           `json:"mode"`
	Scenarios []scenarioResult `json:"scenarios"`
	OK        bool             `json:"ok"`
}

var scenarioTitles = map[string]string{
	"W1":  "%d subscribers, 100 changes/s from another process: commit → client latency",
	"W1R": "W1's physical reference: %d subscribers of a bare coder/websocket broadcast server (no SQLite), 100 records/s",
	"W2":  "%d subscribers, writer flat out: delivered changes/s (sum across subscribers)",
	"W3":  "%d idle subscribers: server RSS per connection",
	"W4":  "one client resuming %d changes behind (since=0)",
	"W5":  "write throughput with capture ÷ without (1-row and 1,000-row transactions)",
	"W6":  "REST create p50 with %d subscribers ÷ with none",
	"W7":  "%d subscribers, writer flat out for %v: delivered changes/s, RSS against the budget, drain",
	"W8":  "scale-out: source + nats-server + 2 edges, %d subscribers across the edges: latency at 100 changes/s for %v, JetStream hop CPU, flat-out delivery",
	"F1":  "%d subscribers each on its own equality filter, 1,000 changes/s: latency and server CPU",
	"F2":  "%d subscribers on one non-indexable filter, writer flat out: delivered changes/s against W2",
}

func (b *bencher) title(id string) string {
	t := scenarioTitles[id]
	switch id {
	case "W1", "W1R", "W2", "W6", "F2":
		return fmt.Sprintf(t, b.cfg.subs)
	case "F1":
		return fmt.Sprintf(t, b.cfg.filterSubs)
	case "W3":
		return fmt.Sprintf(t, b.cfg.idle)
	case "W4":
		return fmt.Sprintf(t, b.cfg.w4Rows)
	case "W7":
		return fmt.Sprintf(t, b.cfg.subs, b.cfg.sustain)
	case "W8":
		return fmt.Sprintf(t, b.cfg.subs, b.cfg.w8Steady)
	}
	return t
}

func (b *bencher) runScenario(ctx context.Context, id string) runResult {
	t0 := time.Now()
	var r runResult
	switch id {
	case "W1":
		r = b.w1(ctx)
	case "W1R":
		r = b.w1r(ctx)
	case "W2":
		r = b.w2(ctx)
	case "W3":
		r = b.w3(ctx)
	case "W4":
		r = b.w4(ctx)
	case "W5":
		r = b.w5(ctx)
	case "W6":
		r = b.w6(ctx)
	case "W7":
		r = b.w7(ctx)
	case "W8":
		r = b.w8(ctx)
	case "F1":
		r = b.f1(ctx)
	case "F2":
		r = b.f2(ctx)
	}
	r.Seconds = time.Since(t0).Seconds()
	return r
}

func (b *bencher) run(ctx context.Context, args []string) error {
	rep := benchReport{Date: b.started.UTC().Format(time.RFC3339), Machine: b.machine,
		Command: "sqlws-bench " + strings.Join(args, " "), Mode: "self-started server per scenario run", OK: true}
	if b.cfg.target != "" {
		rep.Mode = "target " + b.cfg.target + " (" + b.cfg.db + ")"
	}
	m := b.machine
	fmt.Fprintf(b.out, "sqlws-bench  %s\nmachine: nproc %d, %s, %.1f GiB, kernel %s, %s, loadavg %s, nofile %d\n\n",
		rep.Date, m.NProc, m.CPUModel, m.MemTotalG, m.Kernel, m.GoVersion, m.LoadStart, b.nofile)

	for _, id := range b.cfg.scenarios {
		if ctx.Err() != nil {
			break
		}
		sr := scenarioResult{ID: id, Title: b.title(id)}
		fmt.Fprintf(b.out, "%s  %s\n", id, sr.Title)
		for i := range b.cfg.runs {
			r := b.runScenario(ctx, id)
			sr.Runs = append(sr.Runs, r)
			b.printRun(id, i, r)
			if r.Unavailable != "" {
				break
			}
		}
		sr.Metrics, sr.Status = summarize(sr.Runs)
		if b.results == nil {
			b.results = map[string][]metric{}
		}
		b.results[id] = sr.Metrics
		if sr.Status == "FAIL" || sr.Status == "ERROR" {
			rep.OK = false
		}
		if b.cfg.runs > 1 {
			for _, mm := range sr.Metrics {
				fmt.Fprintf(b.out, "    median %-34s %s   (runs: %s)\n", mm.Name, fmtValue(mm.Value, mm.Unit), fmtRuns(mm.Runs, mm.Unit))
			}
		}
		fmt.Fprintf(b.out, "    => %s\n\n", sr.Status)
		rep.Scenarios = append(rep.Scenarios, sr)
	}
	rep.Machine.LoadEnd = loadavg()
	b.printTable(rep)
	if b.cfg.jsonPath != "" {
		js, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(b.cfg.jsonPath, append(js, '\n'), 0o644); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !rep.OK {
		return errors.New("FAILED: a scenario lost, duplicated or reordered changes, or could not run (see above)")
	}
	return nil
}

// summarize takes the median of every metric over the runs that completed and judges
// the scenario: FAIL if any run failed verification, ERROR if none completed,
// UNAVAILABLE if the feature is missing, else PASS or MISS on the medians.
func summarize(runs []runResult) ([]metric, string) {
	var ok []runResult
	status := ""
	for _, r := range runs {
		switch {
		case r.Unavailable != "":
			return nil, "UNAVAILABLE"
		case r.failed() && r.Err == "":
			status = "FAIL"
		case r.Err != "" && status == "":
			status = "ERROR"
		}
		if r.Err == "" {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return nil, "ERROR"
	}
	out := slices.Clone(ok[0].Metrics)
	for i := range out {
		var vals []float64
		for _, r := range ok {
			if i < len(r.Metrics) {
				vals = append(vals, r.Metrics[i].Value)
			}
		}
		out[i].Runs = vals
		out[i].Value = median(vals)
	}
	if status != "" {
		return out, status
	}
	status = "PASS"
	for _, m := range out {
		if m.judged() && !m.pass() {
			status = "MISS"
		}
	}
	return out, status
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtValue(v float64, unit string) string {
	switch {
	case unit == "changes/s" || unit == "rows/s":
		return fmt.Sprintf("%s %s", commas(int64(v+0.5)), unit)
	case unit == "ratio":
		return fmt.Sprintf("%.2f", v)
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

func fmtRuns(v []float64, unit string) string {
	var s []string
	for _, x := range v {
		s = append(s, strings.TrimSuffix(fmtValue(x, unit), " "+unit))
	}
	return strings.Join(s, ", ")
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + commas(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (m metric) targetText() string {
	if !m.judged() {
		return ""
	}
	c := "≤"
	if m.Cmp == ">=" {
		c = "≥"
	}
	switch m.Unit {
	case "changes/s", "rows/s":
		return c + " " + commas(int64(m.Target)) + " " + m.Unit
	case "ratio":
		return c + " " + strconv.FormatFloat(m.Target, 'g', -1, 64)
	}
	return c + " " + strconv.FormatFloat(m.Target, 'g', -1, 64) + " " + m.Unit
}

func (b *bencher) printRun(id string, i int, r runResult) {
	w := b.out
	prefix := "   "
	if b.cfg.runs > 1 {
		prefix = fmt.Sprintf("  #%d", i+1)
	}
	if r.Unavailable != "" {
		fmt.Fprintf(w, "%s unavailable: %s\n", prefix, r.Unavailable)
		return
	}
	if r.Err != "" {
		fmt.Fprintf(w, "%s ERROR: %s\n", prefix, r.Err)
	}
	for _, m := range r.Metrics {
		res := ""
		if m.judged() {
			res = "MISS"
			if m.pass() {
				res = "PASS"
			}
			res = fmt.Sprintf("target %-14s %s", m.targetText(), res)
		}
		fmt.Fprintf(w, "%s %-36s %-22s %s\n", prefix, m.Name, fmtValue(m.Value, m.Unit), res)
	}
	for _, s := range r.Info {
		fmt.Fprintf(w, "%s   %s\n", prefix, s)
	}
	switch {
	case r.Server != (procStats{}) && r.Load != (procStats{}):
		fmt.Fprintf(w, "%s   server: %s; load generator: %s\n", prefix, r.Server, r.Load)
	case r.Server != (procStats{}):
		fmt.Fprintf(w, "%s   server: %s\n", prefix, r.Server)
	}
	for _, c := range r.Checks {
		fmt.Fprintf(w, "%s   verify %s: %s\n", prefix, c.Label, c.Detail)
	}
	fmt.Fprintf(w, "%s   (%.1f s)\n", prefix, r.Seconds)
}

func (b *bencher) printTable(rep benchReport) {
	w := b.out
	fmt.Fprintf(w, "| scenario | metric | value | target | result |\n|---|---|---|---|---|\n")
	for _, s := range rep.Scenarios {
		if len(s.Metrics) == 0 {
			fmt.Fprintf(w, "| %s | %s | — | — | %s |\n", s.ID, s.Title, s.Status)
			continue
		}
		// A scenario without targets (W8) lists its figures; the others their
		// judged ones.
		judged := slices.ContainsFunc(s.Metrics, metric.judged)
		for _, m := range s.Metrics {
			if judged && !m.judged() {
				continue
			}
			res := "MISS"
			if m.pass() {
				res = "PASS"
			}
			if !m.judged() {
				res = s.Status
			}
			if s.Status == "FAIL" || s.Status == "ERROR" {
				res = s.Status
			}
			target := m.targetText()
			if target == "" {
				target = "—"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", s.ID, m.Name, fmtValue(m.Value, m.Unit), target, res)
		}
	}
	fmt.Fprintf(w, "\nloadavg start %s, end %s\n", rep.Machine.LoadStart, rep.Machine.LoadEnd)
	if rep.OK {
		fmt.Fprintln(w, "verification: every subscriber received every change exactly once, in order")
	} else {
		fmt.Fprintln(w, "VERIFICATION FAILED or a scenario could not run — see above")
	}
}
