// Package testenv is the shared harness for black-box tests of the sqlws binary: it
// builds the binary, runs `sqlws serve` as a subprocess, drives the real sqlite3 CLI,
// and speaks the WebSocket protocol (docs/protocol.md) through a small client.
//
// It is an ordinary package so that tests of any package (e2e, browser tests, …) can
// import it. Typical use:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestX(t *testing.T) {
//		db := testenv.NewDB(t, `CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT);`)
//		srv := testenv.StartServer(t, db)
//		c := srv.Dial(t)
//		c.Subscribe("a", nil, nil, "")
//		testenv.SQLite(t, db, `INSERT INTO todos(title) VALUES('milk');`)
//		ch := c.WaitChanges("a", 1, testenv.Timeout)
//		…
//	}
//
// Rules the helpers follow, and tests using them should too: every wait is bounded
// (no test can hang), and nothing synchronises with time.Sleep — helpers wait for an
// event or poll a condition until a deadline.
//
// The package is Linux-only in practice: it reads /proc and runs /usr/bin/sqlite3.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// Timeout is the default bound for waits that should complete quickly on a healthy
// server (a change arriving, a reply to a request). It is generous because the test
// machine is small and shared.
const Timeout = 15 * time.Second

// SQLite3Path is the sqlite3 command-line shell the tests write with.
const SQLite3Path = "/usr/bin/sqlite3"

// ListeningPrefix starts the single line `sqlws serve` prints to stdout once ready.
const ListeningPrefix = "sqlws listening on "

// ---------------------------------------------------------------------------
// Building the binary

var (
	buildOnce sync.Once
	buildPath string
	buildDir  string
	buildErr  error
)

// ModuleRoot returns the directory holding go.mod, found by walking up from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// BuildBinary builds ./cmd/sqlws once per process into a temporary directory and
// returns the binary's path. Setting SQLWS_E2E_RACE=1 builds it with -race. Use
// Main to have the directory removed at the end of the run.
func BuildBinary() (string, error) {
	buildOnce.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "sqlws-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(buildDir, "sqlws")
		args := []string{"build", "-o", buildPath}
		if RaceBinary() {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/sqlws")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("testenv: go build ./cmd/sqlws: %v\n%s", err, out)
		}
	})
	return buildPath, buildErr
}

// RaceBinary reports whether the binary is (to be) built with -race
// (SQLWS_E2E_RACE=1); such a server is slower and uses several times more memory.
func RaceBinary() bool { return os.Getenv("SQLWS_E2E_RACE") == "1" }

// Binary returns the path of the sqlws binary, building it on first use; it fails the
// test if the build fails. Without Main the binary's temporary directory is left
// behind, so packages that start servers should use Main in TestMain.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Main is a TestMain body: it builds the binary (exiting with status 1 if that fails),
// runs the tests and removes the binary (and nats-server, if a test built it).
func Main(m *testing.M) {
	if _, err := BuildBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(buildDir)
	if natsDir != "" {
		os.RemoveAll(natsDir)
	}
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// The server subprocess

// Server is a running `sqlws serve` subprocess.
type Server struct {
	URL  string   // base URL, "http://127.0.0.1:PORT"
	Addr string   // "127.0.0.1:PORT"
	DB   string   // database path
	Args []string // the extra arguments it was started with

	t      testing.TB
	cmd    *exec.Cmd
	stdout *lineWatcher
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	state  *os.ProcessState
}

// StartServer runs `sqlws serve --db dbPath --addr 127.0.0.1:0 extraArgs...` and waits
// (bounded) until it prints its listening line. A cleanup stops it gracefully (SIGTERM,
// then SIGKILL if it does not exit), and fails the test if its stderr shows a panic or
// a data race. If the test failed, the server's stderr is logged.
func StartServer(t testing.TB, dbPath string, extraArgs ...string) *Server {
	t.Helper()
	return startServer(t, 0, dbPath, extraArgs)
}

// StartServerLimited is StartServer with the server's limit on open file
// descriptors (soft and hard) set to nofile, through util-linux's prlimit.
func StartServerLimited(t testing.TB, nofile int, dbPath string, extraArgs ...string) *Server {
	t.Helper()
	return startServer(t, nofile, dbPath, extraArgs)
}

func startServer(t testing.TB, nofile int, dbPath string, extraArgs []string) *Server {
	t.Helper()
	bin := Binary(t)
	args := append([]string{"serve", "--db", dbPath, "--addr", "127.0.0.1:0"}, extraArgs...)
	s := &Server{
		DB:     dbPath,
		Args:   append([]string(nil), extraArgs...),
		t:      t,
		stderr: &syncBuffer{},
		done:   make(chan struct{}),
	}
	ready := make(chan string, 1)
	s.cmd = exec.Command(bin, args...)
	if nofile > 0 {
		lim := fmt.Sprintf("--nofile=%d:%d", nofile, nofile)
		s.cmd = exec.Command("prlimit", append([]string{lim, "--", bin}, args...)...)
	}
	s.stdout = &lineWatcher{prefix: ListeningPrefix, found: ready}
	s.cmd.Stdout = s.stdout
	s.cmd.Stderr = s.stderr
	s.cmd.WaitDelay = 5 * time.Second
	// Do not leave orphaned servers on a shared machine if the test binary dies.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sqlws: %v", err)
	}
	go func() {
		s.cmd.Wait()
		s.state = s.cmd.ProcessState
		close(s.done)
	}()
	t.Cleanup(func() {
		s.shutdown()
		errs := s.Stderr()
		if strings.Contains(errs, "panic:") || strings.Contains(errs, "WARNING: DATA RACE") {
			t.Errorf("sqlws server stderr shows a panic or data race:\n%s", tail(errs, 8000))
		} else if t.Failed() {
			t.Logf("sqlws server (%s) stderr:\n%s", strings.Join(args, " "), tail(errs, 8000))
		}
	})
	select {
	case u := <-ready:
		s.URL = strings.TrimSpace(u)
		s.Addr = strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://") // https with --tls-cert
	case <-s.done:
		t.Fatalf("sqlws serve exited before listening (%v); stderr:\n%s", s.state, tail(s.Stderr(), 8000))
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("sqlws serve did not print %q within 30s; stderr:\n%s", ListeningPrefix, tail(s.Stderr(), 8000))
	}
	return s
}

func (s *Server) shutdown() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// PID returns the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// WSURL returns the WebSocket endpoint, "ws://127.0.0.1:PORT/ws".
func (s *Server) WSURL() string { return "ws://" + s.Addr + "/ws" }

// Stdout returns everything the server has written to stdout so far.
func (s *Server) Stdout() string { return s.stdout.String() }

// Stderr returns everything the server has written to stderr so far.
func (s *Server) Stderr() string { return s.stderr.String() }

// Exited is closed once the process has exited.
func (s *Server) Exited() <-chan struct{} { return s.done }

// WaitExit waits up to timeout for the server to exit by itself and returns its exit
// code (-1 if it died of a signal). It fails the test on timeout.
func (s *Server) WaitExit(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.t.Fatalf("sqlws still running after %v; stderr:\n%s", timeout, tail(s.Stderr(), 8000))
	}
	return s.state.ExitCode()
}

// Kill kills the server with SIGKILL (a crash) and waits for it to be gone.
func (s *Server) Kill() {
	s.t.Helper()
	s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Fatalf("sqlws did not die within 10s of SIGKILL")
	}
}

// Signal sends sig to the server and waits up to timeout for it to exit, returning
// its exit code (-1 if it died of a signal). It fails the test on timeout.
func (s *Server) Signal(sig os.Signal, timeout time.Duration) int {
	s.t.Helper()
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Fatalf("sqlws did not exit within %v of %v; stderr:\n%s", timeout, sig, tail(s.Stderr(), 8000))
	}
	return s.state.ExitCode()
}

// Stop shuts the server down gracefully (SIGTERM, bounded at 10s) and returns its
// exit code.
func (s *Server) Stop() int {
	s.t.Helper()
	return s.Signal(syscall.SIGTERM, 10*time.Second)
}

// Restart stops the server if it is still running (gracefully) and starts a new one
// on the same database with the same arguments. The new server listens on a new port.
func (s *Server) Restart(t testing.TB) *Server {
	t.Helper()
	select {
	case <-s.done:
	default:
		s.Stop()
	}
	return StartServer(t, s.DB, s.Args...)
}

// Sockets counts the server process's open socket descriptors (its listener
// included), from /proc/PID/fd.
func (s *Server) Sockets() int {
	s.t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", s.PID())
	ents, err := os.ReadDir(dir)
	if err != nil {
		s.t.Fatalf("list server descriptors: %v", err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// RSS returns the server's resident set size in bytes, from /proc/PID/status.
func (s *Server) RSS() int64 {
	s.t.Helper()
	return s.procStatus("VmRSS:")
}

func (s *Server) procStatus(key string) int64 {
	s.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.PID()))
	if err != nil {
		s.t.Fatalf("read server status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(v) // "12345 kB"
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil || len(f) != 2 || f[1] != "kB" {
				s.t.Fatalf("parse %s line %q", key, line)
			}
			return n * 1024
		}
	}
	s.t.Fatalf("no %s in /proc/%d/status", key, s.PID())
	return 0
}

// PeakRSS returns the server's peak resident set size (VmHWM) in bytes.
func (s *Server) PeakRSS() int64 {
	s.t.Helper()
	return s.procStatus("VmHWM:")
}

// Dial connects a protocol client to this server (see Dial).
func (s *Server) Dial(t testing.TB) *Client {
	t.Helper()
	return Dial(t, s.WSURL())
}

// lineWatcher is the server's stdout: it keeps everything and reports the first line
// starting with prefix (minus the prefix) on found.
type lineWatcher struct {
	prefix string
	found  chan<- string
	mu     sync.Mutex
	all    []byte
	next   int // start of the first line not yet examined
	done   bool
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all = append(w.all, p...)
	for !w.done {
		i := bytes.IndexByte(w.all[w.next:], '\n')
		if i < 0 {
			break
		}
		line := string(w.all[w.next : w.next+i])
		w.next += i + 1
		if rest, ok := strings.CutPrefix(line, w.prefix); ok {
			w.found <- rest
			w.done = true
		}
	}
	return len(p), nil
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.all)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// RunBinary runs the sqlws binary with args (e.g. "uninstall", "--db", path), bounded
// at 60s, and returns its stdout, stderr and exit code.
func RunBinary(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run sqlws %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// ---------------------------------------------------------------------------
// The sqlite3 CLI

// RunSQLite runs sql through the sqlite3 CLI (`sqlite3 -bail -cmd ".timeout 5000"
// dbPath`, SQL on stdin) and returns its stdout. It does not touch a testing.T, so it
// may be called from any goroutine.
func RunSQLite(dbPath, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, SQLite3Path, "-bail", "-cmd", ".timeout 5000", dbPath)
	cmd.Stdin = strings.NewReader(sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil && stderr.Len() > 0 {
		err = errors.New("wrote to stderr")
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("sqlite3 %s: %v\nstderr: %s\nsql: %s", dbPath, err, stderr.String(), tail(sql, 2000))
	}
	return stdout.String(), nil
}

// SQLite runs sql through the sqlite3 CLI (see RunSQLite), fails the test on any
// error, and returns stdout.
func SQLite(t testing.TB, dbPath, sql string) string {
	t.Helper()
	out, err := RunSQLite(dbPath, sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SQLiteInt runs a query returning one integer through the CLI.
func SQLiteInt(t testing.TB, dbPath, sql string) int64 {
	t.Helper()
	out := strings.TrimSpace(SQLite(t, dbPath, sql))
	n, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		t.Fatalf("query %q: want one integer, got %q", sql, out)
	}
	return n
}

// NewDB creates a database file in a fresh temporary directory, runs schema on it
// with the CLI (if not empty) and returns its path.
func NewDB(t testing.TB, schema string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test.db")
	if schema == "" {
		schema = "PRAGMA user_version;"
	}
	SQLite(t, p, schema)
	return p
}

// Unwritable makes path (a file or a directory) unwritable and returns a function
// that undoes it; the undo also runs at cleanup (before t.TempDir's removal, which an
// immutable file would defeat), and running it twice is harmless.
//
// Root's permission checks ignore file modes (CI runs as root), so as root it makes
// path immutable (see Immutable), which stops root too. Otherwise it removes the
// write bits.
func Unwritable(t testing.TB, path string) (undo func()) {
	t.Helper()
	if os.Geteuid() == 0 {
		return Immutable(t, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, st.Mode().Perm()&^0o222); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	undo = func() {
		once.Do(func() {
			if err := os.Chmod(path, st.Mode().Perm()); err != nil {
				t.Errorf("chmod %s: %v", path, err)
			}
		})
	}
	t.Cleanup(undo)
	return undo
}

// Immutable sets path's immutable attribute (chattr +i) and returns a function that
// clears it, which also runs at cleanup. Unlike a file mode, the attribute stops root,
// and it stops writes through descriptors opened before it was set (on ext4, xfs and
// btrfs), which is how a disk that starts failing under a running server looks:
// SQLite's writes fail with SQLITE_IOERR_WRITE. It skips the test, saying why, where
// chattr, the capability (CAP_LINUX_IMMUTABLE, so in practice root) or the file
// system's support is missing.
func Immutable(t testing.TB, path string) (undo func()) {
	t.Helper()
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("cannot make %s immutable: chattr +i: %v: %s (needs chattr, CAP_LINUX_IMMUTABLE and a file system with the attribute, e.g. ext4, xfs, btrfs)",
			path, err, strings.TrimSpace(string(out)))
	}
	var once sync.Once
	undo = func() {
		once.Do(func() {
			if out, err := exec.Command("chattr", "-i", path).CombinedOutput(); err != nil {
				t.Errorf("chattr -i %s: %v: %s", path, err, out)
			}
		})
	}
	t.Cleanup(undo)
	return undo
}

// QuoteLiteral quotes s as an SQL string literal.
func QuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// QuoteIdent quotes s as an SQL identifier.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// WaitTriggers waits (bounded) until the table has at least three triggers — sqlws
// installs one each for INSERT, UPDATE and DELETE — i.e. until writes to it are
// captured. Use it before writing to a table created while the server runs (for a
// table without triggers of its own).
func WaitTriggers(t testing.TB, dbPath, table string) {
	t.Helper()
	q := "SELECT count(*) FROM sqlite_master WHERE type='trigger' AND tbl_name=" + QuoteLiteral(table) + ";"
	WaitFor(t, Timeout, "capture triggers on "+table, func() bool {
		return SQLiteInt(t, dbPath, q) >= 3
	})
}

// WaitFor polls cond every 20ms until it returns true, failing the test with what if
// it has not within timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// ---------------------------------------------------------------------------
// Change assertions

// AssertContiguous fails the test unless the changes' seq values are contiguous and
// strictly increasing (each is the previous + 1), starting at first (first < 0: any
// start).
func AssertContiguous(t testing.TB, changes []models.Change, first int64) {
	t.Helper()
	if len(changes) == 0 {
		return
	}
	if first >= 0 && changes[0].Seq != first {
		t.Fatalf("first seq = %d, want %d", changes[0].Seq, first)
	}
	for i := 1; i < len(changes); i++ {
		if changes[i].Seq != changes[i-1].Seq+1 {
			t.Fatalf("seq not contiguous at index %d: %d follows %d (of %d changes)",
				i, changes[i].Seq, changes[i-1].Seq, len(changes))
		}
	}
}

// AssertIncreasing fails the test unless seq values strictly increase.
func AssertIncreasing(t testing.TB, changes []models.Change) {
	t.Helper()
	for i := 1; i < len(changes); i++ {
		if changes[i].Seq <= changes[i-1].Seq {
			t.Fatalf("seq not increasing at index %d: %d follows %d", i, changes[i].Seq, changes[i-1].Seq)
		}
	}
}

// ---------------------------------------------------------------------------
// WebSocket client

// Msg is one server frame other than changes.
type Msg struct {
	Type    string          `json:"type"`
	RawID   json.RawMessage `json:"id"` // as sent: a JSON string, number, or null
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Reason  string          `json:"reason"`
	Stream  string          `json:"stream"`
	Head    int64           `json:"head"`
	Oldest  int64           `json:"oldest"`
	Version int             `json:"version"`
	Raw     json.RawMessage `json:"-"` // the whole frame
}

// ID is the id as a string: a JSON string's value, otherwise the raw JSON text ("7",
// "null"); "" when absent.
func (m Msg) ID() string { return idKey(m.RawID) }

func idKey(raw json.RawMessage) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// Client is a protocol client. A goroutine reads every frame as it arrives (unless
// paused) and queues it: change records per subscription id, other messages in one
// queue. Methods are for the test goroutine.
type Client struct {
	Hello protocol.Hello

	t    testing.TB
	conn *websocket.Conn

	gate   sync.Mutex // held by Pause to stop the reader
	paused atomic.Bool

	mu      sync.Mutex
	changes map[string][]models.Change
	msgs    []Msg
	err     error         // why the reader stopped; nil while it runs
	notify  chan struct{} // closed and replaced on every queue change
	stopped chan struct{} // closed when the reader stopped
}

// Dial connects to url (a ws:// URL, or a server base URL to which "/ws" is added),
// waits for hello and returns the client; Hello holds the hello frame. The connection
// is closed at cleanup. There is no read limit on incoming frames.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	c, err := DialErr(t, url)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// DialErr is Dial returning an error instead of failing the test.
func DialErr(t testing.TB, url string) (*Client, error) {
	t.Helper()
	return DialWith(t, url, nil)
}

// DialWith is DialErr with the handshake's options (a wss:// URL's HTTP client,
// say, that trusts a test certificate).
func DialWith(t testing.TB, url string, opts *websocket.DialOptions) (*Client, error) {
	t.Helper()
	if rest, ok := strings.CutPrefix(url, "http://"); ok {
		url = "ws://" + rest
		if !strings.Contains(rest, "/") {
			url += "/ws"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(-1)
	c := &Client{
		t:       t,
		conn:    conn,
		changes: map[string][]models.Change{},
		notify:  make(chan struct{}),
		stopped: make(chan struct{}),
	}
	t.Cleanup(func() {
		c.conn.CloseNow()
		if c.paused.Load() {
			c.Resume()
		}
	})
	go c.readLoop()
	m, err := c.next(Timeout)
	if err != nil {
		return nil, fmt.Errorf("waiting for hello: %w", err)
	}
	if m.Type != protocol.TypeHello {
		return nil, fmt.Errorf("first frame is not hello: %s", m.Raw)
	}
	if err := json.Unmarshal(m.Raw, &c.Hello); err != nil {
		return nil, fmt.Errorf("decode hello %s: %v", m.Raw, err)
	}
	return c, nil
}

func (c *Client) readLoop() {
	var err error
	defer func() {
		c.mu.Lock()
		c.err = err
		c.wake()
		c.mu.Unlock()
		close(c.stopped)
	}()
	for {
		// Pause holds gate to stop reading; taking it here waits until Resume.
		c.gate.Lock()
		c.gate.Unlock() //lint:ignore SA2001 the critical section is the wait itself
		var typ websocket.MessageType
		var data []byte
		typ, data, err = c.conn.Read(context.Background())
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			err = fmt.Errorf("protocol violation: binary frame (%d bytes)", len(data))
			c.conn.CloseNow()
			return
		}
		var m Msg
		// Fast path for the bulk of the traffic: skip the generic decode of frames
		// that are obviously changes frames.
		if bytes.HasPrefix(data, []byte(`{"type":"changes",`)) {
			m.Type = protocol.TypeChanges
		} else if err = json.Unmarshal(data, &m); err != nil {
			err = fmt.Errorf("undecodable frame %q: %v", tail(string(data), 500), err)
			c.conn.CloseNow()
			return
		}
		m.Raw = data
		if m.Type == protocol.TypeChanges {
			var f protocol.ChangesFrame
			if err = json.Unmarshal(data, &f); err != nil {
				err = fmt.Errorf("undecodable changes frame %q: %v", tail(string(data), 500), err)
				c.conn.CloseNow()
				return
			}
			if len(f.Changes) == 0 {
				err = fmt.Errorf("changes frame without changes: %s", data)
				c.conn.CloseNow()
				return
			}
			id := idKey(f.ID)
			c.mu.Lock()
			c.changes[id] = append(c.changes[id], f.Changes...)
			c.wake()
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.wake()
		c.mu.Unlock()
	}
}

// wake must be called with mu held.
func (c *Client) wake() {
	close(c.notify)
	c.notify = make(chan struct{})
}

// wait blocks until ready returns true (called with mu held), the reader stops, or
// timeout. It returns false on timeout, and the reader's error if it stopped first.
func (c *Client) wait(timeout time.Duration, ready func() bool) (bool, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		if ready() {
			c.mu.Unlock()
			return true, nil
		}
		select {
		case <-c.stopped:
			err := c.err
			c.mu.Unlock()
			return false, err
		default:
		}
		n := c.notify
		c.mu.Unlock()
		select {
		case <-n:
		case <-c.stopped:
		case <-timer.C:
			return false, nil
		}
	}
}

func (c *Client) next(timeout time.Duration) (Msg, error) {
	var m Msg
	ok, err := c.wait(timeout, func() bool {
		if len(c.msgs) == 0 {
			return false
		}
		m = c.msgs[0]
		c.msgs = c.msgs[1:]
		return true
	})
	if ok {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("connection ended while waiting for a message: %w", err)
	}
	return m, fmt.Errorf("no message within %v", timeout)
}

// Next returns the next message that is not a changes frame, failing the test if
// none arrives within timeout.
func (c *Client) Next(timeout time.Duration) Msg {
	c.t.Helper()
	m, err := c.next(timeout)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// WaitChanges waits until n change records for subscription id have arrived that no
// earlier call returned, and returns exactly those n (further records stay queued).
// It fails the test on timeout or if the connection ends first.
func (c *Client) WaitChanges(id string, n int, timeout time.Duration) []models.Change {
	c.t.Helper()
	got, err := c.WaitChangesErr(id, n, timeout)
	if err != nil {
		c.t.Fatal(err)
	}
	return got
}

// WaitChangesErr is WaitChanges returning an error instead of failing the test; on
// error it returns (and removes from the queue) whatever records did arrive.
func (c *Client) WaitChangesErr(id string, n int, timeout time.Duration) ([]models.Change, error) {
	var got []models.Change
	ok, err := c.wait(timeout, func() bool {
		q := c.changes[id]
		if len(q) < n {
			return false
		}
		got = append([]models.Change(nil), q[:n]...)
		c.changes[id] = q[n:]
		return true
	})
	if ok {
		return got, nil
	}
	c.mu.Lock()
	got = c.changes[id]
	delete(c.changes, id)
	c.mu.Unlock()
	if err != nil {
		return got, fmt.Errorf("subscription %q: got %d of %d changes, then the connection ended: %w", id, len(got), n, err)
	}
	return got, fmt.Errorf("subscription %q: got %d of %d changes within %v", id, len(got), n, timeout)
}

// WaitSeq waits until a change with seq ≥ seq has arrived for subscription id and
// returns every queued change up to and including it (the rest stay queued).
func (c *Client) WaitSeq(id string, seq int64, timeout time.Duration) []models.Change {
	c.t.Helper()
	var got []models.Change
	ok, err := c.wait(timeout, func() bool {
		q := c.changes[id]
		for i := range q {
			if q[i].Seq >= seq {
				got = append([]models.Change(nil), q[:i+1]...)
				c.changes[id] = q[i+1:]
				return true
			}
		}
		return false
	})
	if !ok {
		c.mu.Lock()
		n := len(c.changes[id])
		var last int64
		if n > 0 {
			last = c.changes[id][n-1].Seq
		}
		c.mu.Unlock()
		c.t.Fatalf("subscription %q: no change with seq ≥ %d within %v (%d queued, last seq %d; connection error: %v)",
			id, seq, timeout, n, last, err)
	}
	return got
}

// Take removes and returns every change queued for subscription id, without waiting.
func (c *Client) Take(id string) []models.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.changes[id]
	delete(c.changes, id)
	return q
}

// Send writes one text frame.
func (c *Client) Send(raw string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(raw)); err != nil {
		c.t.Fatalf("send %s: %v", tail(raw, 200), err)
	}
}

// SendJSON marshals v and sends it.
func (c *Client) SendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.Send(string(b))
}

// Int64 returns a pointer to n, for Subscribe's since.
func Int64(n int64) *int64 { return &n }

// SubscribeMsg builds a subscribe message; nil tables, nil since and "" stream are
// omitted.
func SubscribeMsg(id string, tables []string, since *int64, stream string) string {
	m := map[string]any{"type": protocol.TypeSubscribe, "id": id}
	if tables != nil {
		m["tables"] = tables
	}
	if since != nil {
		m["since"] = *since
	}
	if stream != "" {
		m["stream"] = stream
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// SubscribeReply sends a subscribe message and returns the server's reply (the next
// non-changes message), failing the test unless it carries the same id.
func (c *Client) SubscribeReply(id string, tables []string, since *int64, stream string) Msg {
	c.t.Helper()
	c.Send(SubscribeMsg(id, tables, since, stream))
	m := c.Next(Timeout)
	if m.ID() != id {
		c.t.Fatalf("reply to subscribe %q has another id: %s", id, m.Raw)
	}
	return m
}

// Subscribe subscribes (see SubscribeMsg) and fails the test unless the reply is
// subscribed. It returns the reply.
func (c *Client) Subscribe(id string, tables []string, since *int64, stream string) Msg {
	c.t.Helper()
	m := c.SubscribeReply(id, tables, since, stream)
	if m.Type != protocol.TypeSubscribed {
		c.t.Fatalf("subscribe %q: want subscribed, got %s", id, m.Raw)
	}
	return m
}

// Unsubscribe sends unsubscribe and fails the test unless the reply is unsubscribed.
func (c *Client) Unsubscribe(id string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]string{"type": protocol.TypeUnsubscribe, "id": id})
	c.Send(string(b))
	m := c.Next(Timeout)
	if m.Type != protocol.TypeUnsubscribed || m.ID() != id {
		c.t.Fatalf("unsubscribe %q: want unsubscribed, got %s", id, m.Raw)
	}
}

// Pause stops the reader goroutine from reading the socket (after at most the frame
// it is reading now), so the server sees a stalled peer. Resume undoes it.
func (c *Client) Pause() {
	c.gate.Lock()
	c.paused.Store(true)
}

// Resume lets a paused reader read again.
func (c *Client) Resume() {
	c.paused.Store(false)
	c.gate.Unlock()
}

// WaitClosed waits until the connection has ended and returns the close code the
// server sent (-1 if the connection ended without a close frame) and the error.
func (c *Client) WaitClosed(timeout time.Duration) (websocket.StatusCode, error) {
	c.t.Helper()
	select {
	case <-c.stopped:
	case <-time.After(timeout):
		c.t.Fatalf("connection still open after %v", timeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return websocket.CloseStatus(c.err), c.err
}

// Closed reports whether the connection has ended, and why.
func (c *Client) Closed() (bool, error) {
	select {
	case <-c.stopped:
		c.mu.Lock()
		defer c.mu.Unlock()
		return true, c.err
	default:
		return false, nil
	}
}

// Close closes the connection normally (bounded) and waits for the reader to stop.
func (c *Client) Close() {
	done := make(chan struct{})
	go func() {
		c.conn.Close(websocket.StatusNormalClosure, "")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.conn.CloseNow()
	}
	select {
	case <-c.stopped:
	case <-time.After(5 * time.Second):
		c.conn.CloseNow()
	}
}

// Drop closes the TCP connection abruptly, without a close handshake. A paused
// client is resumed so that its reader can stop.
func (c *Client) Drop() {
	c.conn.CloseNow()
	if c.paused.Load() {
		c.Resume()
	}
	select {
	case <-c.stopped:
	case <-time.After(5 * time.Second):
	}
}
