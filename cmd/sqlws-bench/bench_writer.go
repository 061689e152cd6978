package main

// The writer of `sqlws-bench` runs as a separate process (`sqlws-bench writer …`, a
// hidden subcommand) that writes to the database file directly through
// modernc.org/sqlite, as any other program would: one connection, WAL,
// synchronous=NORMAL, busy_timeout. Every row carries the wall clock at which it was
// written (unix nanoseconds, in column bench_ns), taken just before its INSERT inside
// the transaction, so a subscriber measures commit → receipt as receipt − stamp.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite"
)

const (
	benchTable  = "bench_rows"
	stampColumn = "bench_ns"
)

// benchSchema is the table every scenario writes. The row images are about 200 bytes
// of JSON with the default 64-byte payload.
func benchSchema(table string) string {
	return `CREATE TABLE IF NOT EXISTS ` + quoteIdent(table) + ` (
	id INTEGER PRIMARY KEY,
	` + stampColumn + ` INTEGER NOT NULL,
	payload TEXT NOT NULL)`
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// openDirect opens path the way an ordinary application would.
func openDirect(path string) (*sql.DB, error) {
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(30000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(NORMAL)")
	d, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+v.Encode())
	if err != nil {
		return nil, err
	}
	d.SetMaxOpenConns(1)
	d.SetMaxIdleConns(1)
	d.SetConnMaxLifetime(0)
	return d, nil
}

// setupDB creates the bench table in path (creating the file if needed).
func setupDB(ctx context.Context, path, table string) error {
	d, err := openDirect(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := d.ExecContext(ctx, benchSchema(table)); err != nil {
		return fmt.Errorf("create %s: %w", table, err)
	}
	return nil
}

// changelogHead reads the last assigned seq (0 when the database has no changelog):
// the newest changelog row, which sqlws never deletes.
func changelogHead(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlws_changes'`).Scan(&n); err != nil || n == 0 {
		return 0, err
	}
	var head int64
	err := q.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM sqlws_changes`).Scan(&head)
	return head, err
}

// writerSpec is one writer run. The run ends after Rows rows or Duration, whichever
// comes first (zero: no bound; at least one must be set).
type writerSpec struct {
	DB       string
	Table    string
	Rows     int64
	Duration time.Duration
	Rate     float64 // rows per second; 0: flat out
	Txn      int     // rows per transaction
	Payload  int     // payload bytes per row
	Profile  string  // write a CPU profile of the writer here
	Python   bool    // write with writer.py: the C library's SQLite (W5 only; Duration, Txn and Payload)
}

// writerPy is the writer on the C library's SQLite (--w5-writer python3).
//
//go:embed writer.py
var writerPy string

func (s writerSpec) args() []string {
	return []string{"writer", "--db", s.DB, "--table", s.Table,
		"--rows", strconv.FormatInt(s.Rows, 10), "--duration", s.Duration.String(),
		"--rate", strconv.FormatFloat(s.Rate, 'f', -1, 64), "--txn", strconv.Itoa(s.Txn),
		"--payload", strconv.Itoa(s.Payload), "--cpuprofile", s.Profile}
}

// writerResult is the writer's report (its last stdout line, JSON).
type writerResult struct {
	Rows       int64   `json:"rows"`
	Txns       int64   `json:"txns"`
	StartNS    int64   `json:"start_ns"`
	EndNS      int64   `json:"end_ns"`
	RowsPerSec float64 `json:"rows_per_sec"`
	Head       int64   `json:"head"`       // changelog head after the last commit (0 without sqlws)
	MaxTxnUS   int64   `json:"max_txn_us"` // slowest transaction, BEGIN to COMMIT
	CPUSec     float64 `json:"cpu_sec"`    // filled in by the parent
	busyNS     int64   // summed writing time when runs are accumulated (addWriter)
}

// benchWriter is the child process: `sqlws-bench writer …`.
func benchWriter(ctx context.Context, args []string, out io.Writer) error {
	var s writerSpec
	fs := flag.NewFlagSet("sqlws-bench writer", flag.ContinueOnError)
	fs.StringVar(&s.DB, "db", "", "database file")
	fs.StringVar(&s.Table, "table", benchTable, "table to insert into")
	fs.Int64Var(&s.Rows, "rows", 0, "rows to write (0: until --duration)")
	fs.DurationVar(&s.Duration, "duration", 0, "how long to write (0: until --rows)")
	fs.Float64Var(&s.Rate, "rate", 0, "rows per second (0: flat out)")
	fs.IntVar(&s.Txn, "txn", 1, "rows per transaction")
	fs.IntVar(&s.Payload, "payload", 64, "payload bytes per row")
	fs.StringVar(&s.Profile, "cpuprofile", "", "write a CPU profile of the writer to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if s.DB == "" || (s.Rows <= 0 && s.Duration <= 0) || s.Txn <= 0 {
		return fmt.Errorf("writer: --db and --rows or --duration are required")
	}
	d, err := openDirect(s.DB)
	if err != nil {
		return err
	}
	defer d.Close()
	conn, err := d.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	ins, err := conn.PrepareContext(ctx, `INSERT INTO `+quoteIdent(s.Table)+` (`+stampColumn+`, payload) VALUES (?, ?)`)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer ins.Close()
	payload := strings.Repeat("x", s.Payload)
	if s.Profile != "" {
		f, err := os.Create(s.Profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	var res writerResult
	start := time.Now()
	res.StartNS = start.UnixNano()
	var deadline time.Time
	if s.Duration > 0 {
		deadline = start.Add(s.Duration)
	}
	var perTxn time.Duration
	if s.Rate > 0 {
		perTxn = time.Duration(float64(s.Txn) / s.Rate * float64(time.Second))
	}
	for (s.Rows <= 0 || res.Rows < s.Rows) && ctx.Err() == nil {
		if perTxn > 0 {
			// Open-loop schedule: transaction i starts at start + i×perTxn, so a slow
			// commit does not lower the offered rate (it is caught up immediately).
			at := start.Add(time.Duration(res.Txns) * perTxn)
			if !deadline.IsZero() && !at.Before(deadline) {
				break
			}
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
		} else if !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		n := int64(s.Txn)
		if s.Rows > 0 {
			n = min(n, s.Rows-res.Rows)
		}
		t0 := time.Now()
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		for range n {
			if _, err := ins.ExecContext(ctx, time.Now().UnixNano(), payload); err != nil {
				conn.ExecContext(context.Background(), "ROLLBACK")
				return fmt.Errorf("insert: %w", err)
			}
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		res.MaxTxnUS = max(res.MaxTxnUS, time.Since(t0).Microseconds())
		res.Rows += n
		res.Txns++
	}
	end := time.Now()
	res.EndNS = end.UnixNano()
	res.RowsPerSec = float64(res.Rows) / end.Sub(start).Seconds()
	if res.Head, err = changelogHead(ctx, conn); err != nil {
		return fmt.Errorf("read head: %w", err)
	}
	b, _ := json.Marshal(res)
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

// writerProc is a running writer child.
type writerProc struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	err    error
	res    writerResult
}

func startWriter(ctx context.Context, exe string, s writerSpec) (*writerProc, error) {
	w := &writerProc{done: make(chan struct{})}
	if s.Python {
		w.cmd = exec.CommandContext(ctx, "python3", "-c", writerPy, "--db", s.DB, "--table", s.Table,
			"--duration", strconv.FormatFloat(s.Duration.Seconds(), 'f', -1, 64),
			"--txn", strconv.Itoa(s.Txn), "--payload", strconv.Itoa(s.Payload))
	} else {
		w.cmd = exec.CommandContext(ctx, exe, s.args()...)
	}
	w.cmd.Stdout = &w.stdout
	w.cmd.Stderr = &w.stderr
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start writer: %w", err)
	}
	go func() {
		defer close(w.done)
		err := w.cmd.Wait()
		if ps := w.cmd.ProcessState; ps != nil {
			w.res.CPUSec = (ps.UserTime() + ps.SystemTime()).Seconds()
		}
		if err != nil {
			w.err = fmt.Errorf("writer: %v: %s", err, strings.TrimSpace(w.stderr.String()))
			return
		}
		sc := bufio.NewScanner(&w.stdout)
		var last string
		for sc.Scan() {
			last = sc.Text()
		}
		cpu := w.res.CPUSec
		if err := json.Unmarshal([]byte(last), &w.res); err != nil {
			w.err = fmt.Errorf("writer output %q: %v", last, err)
		}
		w.res.CPUSec = cpu
	}()
	return w, nil
}

func (w *writerProc) wait() (writerResult, error) {
	<-w.done
	return w.res, w.err
}

func runWriter(ctx context.Context, exe string, s writerSpec) (writerResult, error) {
	w, err := startWriter(ctx, exe, s)
	if err != nil {
		return writerResult{}, err
	}
	return w.wait()
}

// waitTriggers waits until sqlws has installed its insert trigger on table (the
// server's tailer notices a new table and syncs triggers on its own).
func waitTriggers(ctx context.Context, path, table string, timeout time.Duration) error {
	d, err := openDirect(path)
	if err != nil {
		return err
	}
	defer d.Close()
	deadline := time.Now().Add(timeout)
	for {
		var n int
		err := d.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?`, "sqlws_insert_"+table).Scan(&n)
		if err == nil && n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sqlws did not install capture triggers on %s within %v (is the server serving %s?)", table, timeout, path)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
