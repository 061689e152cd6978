package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sqlws/sqlws/internal/testenv"
)

// usedBinary records whether a test built the sqlws binary, so that TestMain removes
// it without building it for the package's other tests.
var usedBinary atomic.Bool

func TestMain(m *testing.M) {
	code := m.Run()
	if usedBinary.Load() {
		if p, err := testenv.BuildBinary(); err == nil {
			os.RemoveAll(filepath.Dir(p))
		}
	}
	os.Exit(code)
}

func tailServer(t *testing.T, schema string, args ...string) (string, *testenv.Server) {
	t.Helper()
	usedBinary.Store(true)
	db := testenv.NewDB(t, schema)
	return db, testenv.StartServer(t, db, args...)
}

// tailProc is a running `sqlws tail`.
type tailProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *lockedBuffer
	done   chan struct{}
	state  *os.ProcessState
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startTail(t *testing.T, args ...string) *tailProc {
	t.Helper()
	p := &tailProc{lines: make(chan string, 1<<16), stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(testenv.Binary(t), append([]string{"tail"}, args...)...)
	p.cmd.Stderr = p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("sqlws tail %s stderr:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	})
	return p
}

// record is the part of a printed line the tests look at.
type record struct {
	Seq   int64           `json:"seq"`
	Table string          `json:"table"`
	Op    string          `json:"op"`
	New   json.RawMessage `json:"new"`
	line  string
}

// next returns the next line, decoded; it fails the test if none comes in time.
func (p *tailProc) next(t *testing.T) record {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.done
			t.Fatalf("sqlws tail exited (%v) while a line was expected; stderr:\n%s", p.state, p.stderr.String())
		}
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Seq == 0 {
			t.Fatalf("tail printed %q, want a change record (%v)", l, err)
		}
		r.line = l
		return r
	case <-time.After(testenv.Timeout):
		t.Fatalf("no line from sqlws tail within %v; stderr:\n%s", testenv.Timeout, p.stderr.String())
	}
	return record{}
}

// until returns the lines up to and including the one with seq ≥ seq.
func (p *tailProc) until(t *testing.T, seq int64) []record {
	t.Helper()
	var got []record
	for len(got) == 0 || got[len(got)-1].Seq < seq {
		got = append(got, p.next(t))
	}
	return got
}

// wait waits for the process to exit and returns its exit code.
func (p *tailProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(testenv.Timeout):
		t.Fatalf("sqlws tail still running after %v; stderr:\n%s", testenv.Timeout, p.stderr.String())
	}
	return p.state.ExitCode()
}

// serverRecords returns the changelog's records as the server serves them
// (GET /api/changes sends them exactly as the WebSocket does).
func serverRecords(t *testing.T, srv *testenv.Server) []string {
	t.Helper()
	resp, err := http.Get(srv.URL + "/api/changes?since=0&limit=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Changes []json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(body.Changes))
	for i, c := range body.Changes {
		out[i] = string(c)
	}
	return out
}

func nValue(t *testing.T, r record) int64 {
	t.Helper()
	var row struct{ N int64 }
	if err := json.Unmarshal(r.New, &row); err != nil {
		t.Fatalf("seq %d: new = %s", r.Seq, r.New)
	}
	return row.N
}

// TestTailResume: `sqlws tail` prints every change as one JSON line, byte for byte
// the record the server serves, and goes on across a server crash and restart on
// the same address while the sqlite3 CLI keeps writing: no gap, no duplicate. It
// exits 0 on SIGINT.
func TestTailResume(t *testing.T) {
	t.Parallel()
	db, srv := tailServer(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT);`)
	testenv.SQLite(t, db, "INSERT INTO items(n) VALUES (1), (2), (3);")
	// The server's root URL: tail adds /ws.
	p := startTail(t, "--db-url", srv.URL, "--table", "items", "--since", "0")
	got := p.until(t, 3)

	// A writer that keeps going while the server is killed and restarted.
	var written atomic.Int64
	written.Store(3)
	stop, writerDone := make(chan struct{}), make(chan error, 1)
	go func() {
		for i := int64(4); ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if _, err := testenv.RunSQLite(db, fmt.Sprintf("INSERT INTO items(n) VALUES(%d);", i)); err != nil {
				writerDone <- err
				return
			}
			written.Store(i)
		}
	}()
	var stopOnce sync.Once
	var writerErr error
	stopWriter := func() int64 {
		stopOnce.Do(func() {
			close(stop)
			writerErr = <-writerDone
		})
		if writerErr != nil {
			t.Fatal(writerErr)
		}
		return written.Load()
	}
	t.Cleanup(func() { stopWriter() })
	waitWritten := func(n int64) {
		testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("the writer to reach row %d", n), func() bool { return written.Load() >= n })
	}

	got = append(got, p.until(t, 15)...)
	srv.Kill()
	waitWritten(written.Load() + 15) // written while the server is down
	args := append(append([]string(nil), srv.Args...), "--addr", srv.Addr)
	srv = testenv.StartServer(t, db, args...)
	testenv.WaitFor(t, testenv.Timeout, "tail to reconnect", func() bool {
		return strings.Contains(p.stderr.String(), "reconnected; resuming after seq")
	})
	waitWritten(written.Load() + 15) // and after the restart
	total := stopWriter()
	got = append(got, p.until(t, total)...)

	want := serverRecords(t, srv)
	if int64(len(got)) != total || len(want) != len(got) {
		t.Fatalf("tail printed %d lines for %d inserts (the server has %d records)", len(got), total, len(want))
	}
	for i, r := range got {
		if r.Seq != int64(i+1) || r.Table != "items" || r.Op != "insert" || nValue(t, r) != int64(i+1) {
			t.Fatalf("line %d = %s, want the insert of n=%d with seq %d", i, r.line, i+1, i+1)
		}
		if r.line != want[i] {
			t.Fatalf("line %d = %s, want the server's record byte for byte: %s", i, r.line, want[i])
		}
	}
	testenv.SQLite(t, db, "INSERT INTO items(n) VALUES(-1);")
	if r := p.next(t); r.Seq != total+1 || nValue(t, r) != -1 {
		t.Fatalf("next line = %s, want the marker with seq %d", r.line, total+1)
	}
	errs := p.stderr.String()
	if !strings.Contains(errs, "following ws://"+srv.Addr+"/ws") || !strings.Contains(errs, "retrying in") {
		t.Errorf("stderr does not report the feed and the reconnect:\n%s", errs)
	}

	p.cmd.Process.Signal(os.Interrupt)
	if code := p.wait(t); code != 0 {
		t.Errorf("tail exited with %d on SIGINT, want 0", code)
	}
}

// TestTailTables: --table repeats or takes a comma-separated list; SIGTERM ends
// tail with status 0.
func TestTailTables(t *testing.T) {
	t.Parallel()
	db, srv := tailServer(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, n INT);
CREATE TABLE b(id INTEGER PRIMARY KEY, n INT);
CREATE TABLE c(id INTEGER PRIMARY KEY, n INT);
CREATE TABLE d(id INTEGER PRIMARY KEY, n INT);`)
	p := startTail(t, "--db-url", srv.WSURL(), "--table", "a", "--table", "b,c")
	testenv.WaitFor(t, testenv.Timeout, "tail to subscribe", func() bool {
		return strings.Contains(p.stderr.String(), "following ")
	})
	testenv.SQLite(t, db, `INSERT INTO d(n) VALUES (1); INSERT INTO a(n) VALUES (2); INSERT INTO d(n) VALUES (3);
INSERT INTO b(n) VALUES (4); INSERT INTO c(n) VALUES (5); INSERT INTO d(n) VALUES (6);`)
	got := p.until(t, 5)
	if len(got) != 3 || got[0].Table != "a" || got[1].Table != "b" || got[2].Table != "c" {
		t.Fatalf("tail --table a --table b,c printed %v", got)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("tail exited with %d on SIGTERM, want 0", code)
	}
}

// TestTailErrors: what tail cannot continue from ends it with status 1 and a
// message that says why.
func TestTailErrors(t *testing.T) {
	t.Parallel()
	db, srv := tailServer(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, n INT);`,
		"--retain-count", "5", "--retain-interval", "50ms")
	testenv.SQLite(t, db, "INSERT INTO t(n) VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10);")
	testenv.WaitFor(t, testenv.Timeout, "retention to prune", func() bool {
		return testenv.SQLiteInt(t, db, "SELECT min(seq) FROM sqlws_changes;") == 6
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--table", "nope"}, `sqlws tail: unknown table "nope" (unknown_table)`},
		{[]string{"--since", "2"}, "sqlws tail: reset (pruned)"},
		{[]string{"--since", "11"}, "sqlws tail: reset (future)"},
		{[]string{"--since", "-2"}, "sqlws tail: --since must be"},
		{[]string{"extra"}, `sqlws tail: unexpected argument "extra"`},
	} {
		p := startTail(t, append([]string{"--db-url", srv.WSURL()}, tc.args...)...)
		if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), tc.want) {
			t.Errorf("tail %s: exit %d, stderr %q; want 1 and %q", strings.Join(tc.args, " "), code, p.stderr.String(), tc.want)
		}
	}
	// Nothing listening: the first connection fails at once.
	srv.Stop()
	p := startTail(t, "--db-url", srv.WSURL())
	if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), "sqlws tail: dial ws://") {
		t.Errorf("tail against a stopped server: exit %d, stderr %q", code, p.stderr.String())
	}
}
